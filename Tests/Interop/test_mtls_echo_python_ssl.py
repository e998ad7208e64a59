"""An independent TLS client: Python's ssl module, holding an SVID fetched with py-spiffe, calls the
Swift mtls-echo example server, which must accept it by SPIFFE ID; and Python checks the server's
SVID against the bundle with ordinary X.509 path validation."""

import os
import re
import socket
import ssl
import subprocess
import tempfile

from cryptography.hazmat.primitives import serialization
from cryptography.x509 import SubjectAlternativeName, UniformResourceIdentifier, load_der_x509_certificate
from spiffe import WorkloadApiClient

from conftest import HALLMARK, wait_for, wait_until

MTLS_ECHO = os.path.join(os.path.dirname(HALLMARK), "mtls-echo")


def pem(certificates):
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certificates)


def test_python_ssl_with_a_py_spiffe_svid_calls_the_swift_server(stack):
    stack.register("/echo-server", "unix:uid:0")
    stack.register("/py-client", "unix:uid:0")

    def both():
        try:
            with WorkloadApiClient(socket_path=stack.endpoint) as client:
                ids = {str(s.spiffe_id) for s in client.fetch_x509_context().x509_svids}
                return {"spiffe://example.org/echo-server", "spiffe://example.org/py-client"} <= ids
        except Exception:
            return False
    wait_until(both)

    log = os.path.join(stack.server.root, "echo.log")
    with open(log, "w") as out:
        server = subprocess.Popen(
            [MTLS_ECHO, "serve", "--socket", stack.socket, "--allow", "spiffe://example.org/py-client"],
            stdout=out, stderr=out, stdin=subprocess.DEVNULL,
        )
    try:
        wait_for(log, "mtls-echo listening on", server)
        with open(log) as text:
            host, port = re.search(r"listening on ([0-9.]+):([0-9]+)", text.read()).groups()

        with WorkloadApiClient(socket_path=stack.endpoint) as client:
            context = client.fetch_x509_context()
        svid = next(s for s in context.x509_svids if str(s.spiffe_id) == "spiffe://example.org/py-client")
        bundle = context.x509_bundle_set.get_bundle_for_trust_domain(svid.spiffe_id.trust_domain)
        work = tempfile.mkdtemp(prefix="pyssl-")
        chain_path, key_path, bundle_path = (os.path.join(work, n) for n in ("chain.pem", "key.pem", "bundle.pem"))
        with open(chain_path, "wb") as f:
            f.write(pem(svid.cert_chain))
        with open(key_path, "wb") as f:
            f.write(svid.private_key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
        with open(bundle_path, "wb") as f:
            f.write(pem(bundle.x509_authorities))

        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        tls.check_hostname = False  # SVIDs name a SPIFFE ID, not a host; the ID is checked below
        tls.verify_mode = ssl.CERT_REQUIRED
        tls.load_verify_locations(bundle_path)
        tls.load_cert_chain(chain_path, key_path)
        with socket.create_connection((host, int(port)), timeout=10) as raw:
            with tls.wrap_socket(raw) as conn:
                server_leaf = load_der_x509_certificate(conn.getpeercert(binary_form=True))
                uris = server_leaf.extensions.get_extension_for_class(SubjectAlternativeName).value.get_values_for_type(UniformResourceIdentifier)
                assert uris == ["spiffe://example.org/echo-server"]
                conn.sendall(b"from python\n")
                reply = conn.recv(4096).decode()
        assert "echo to spiffe://example.org/py-client from spiffe://example.org/echo-server: from python" in reply
    finally:
        server.terminate()
        server.wait(timeout=10)
