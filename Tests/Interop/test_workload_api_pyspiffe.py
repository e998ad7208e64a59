"""py-spiffe, unchanged, against a real Hallmark agent: the Workload API as the specification
defines it is what an off-the-shelf SPIFFE client sees."""

import grpc
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from spiffe import JwtSource, WorkloadApiClient, X509Source
from spiffe._proto import workload_pb2, workload_pb2_grpc

from conftest import wait_until

HEADER = (("workload.spiffe.io", "true"),)


def wait_for_svid(stack, spiffe_id):
    def ready():
        try:
            with WorkloadApiClient(socket_path=stack.endpoint) as client:
                return str(client.fetch_x509_svid().spiffe_id) == spiffe_id
        except Exception:
            return False
    wait_until(ready)


def test_workload_api_client_fetches_everything(stack):
    stack.register("/model/llama", "unix:uid:0")
    wait_for_svid(stack, "spiffe://example.org/model/llama")
    with WorkloadApiClient(socket_path=stack.endpoint) as client:
        svid = client.fetch_x509_svid()
        assert str(svid.spiffe_id) == "spiffe://example.org/model/llama"
        bundles = client.fetch_x509_bundles()
        bundle = bundles.get_bundle_for_trust_domain(svid.spiffe_id.trust_domain)
        # The leaf is signed by an authority of the bundle the API returned.
        authority = next(iter(bundle.x509_authorities))
        authority.public_key().verify(svid.leaf.signature, svid.leaf.tbs_certificate_bytes,
                                      ec.ECDSA(svid.leaf.signature_hash_algorithm))
        jwt_svid = client.fetch_jwt_svid(audience={"inference"})
        assert str(jwt_svid.spiffe_id) == "spiffe://example.org/model/llama"
        jwt_bundles = client.fetch_jwt_bundles()
        assert jwt_bundles.get_bundle_for_trust_domain(svid.spiffe_id.trust_domain) is not None
        validated = client.validate_jwt_svid(jwt_svid.token, "inference")
        assert str(validated.spiffe_id) == "spiffe://example.org/model/llama"
        with pytest.raises(Exception):
            client.validate_jwt_svid(jwt_svid.token, "someone-else")


def test_jwt_source_parses_the_bundle_and_token(stack):
    stack.register("/pipeline/etl", "unix:uid:0")
    wait_for_svid(stack, "spiffe://example.org/pipeline/etl")
    with JwtSource(socket_path=stack.endpoint) as source:
        token = source.fetch_svid(audience={"warehouse"})
        assert str(token.spiffe_id) == "spiffe://example.org/pipeline/etl"


def test_x509_source_observes_a_rotation(stack):
    stack.register("/model/rotating", "unix:uid:0", ttl=6)
    wait_for_svid(stack, "spiffe://example.org/model/rotating")
    with X509Source(socket_path=stack.endpoint) as source:
        first = source.get_x509_context().default_svid.leaf.serial_number
        # A real rotation: the agent renews at half of the 6 s life.
        wait_until(lambda: source.get_x509_context().default_svid.leaf.serial_number != first, timeout=30)
        assert str(source.get_x509_context().default_svid.spiffe_id) == "spiffe://example.org/model/rotating"


def test_entry_changes_reach_an_open_stream(stack):
    stack.register("/a", "unix:uid:0")
    wait_for_svid(stack, "spiffe://example.org/a")
    latest = {}
    with WorkloadApiClient(socket_path=stack.endpoint) as client:
        # The raw stream: X509Source keeps only the default SVID, this sees every one.
        handler = client.stream_x509_contexts(
            on_success=lambda context: latest.update(ids={str(svid.spiffe_id) for svid in context.x509_svids}),
            on_error=lambda error: latest.update(error=error),
        )
        try:
            wait_until(lambda: latest.get("ids") == {"spiffe://example.org/a"})
            entry = stack.register("/b", "unix:uid:0")
            added = wait_until(lambda: latest.get("ids") == {"spiffe://example.org/a", "spiffe://example.org/b"})
            stack.server.cli("entry", "delete", "--id", entry)
            removed = wait_until(lambda: latest.get("ids") == {"spiffe://example.org/a"})
            print(f"propagation: create {added * 1000:.0f} ms, delete {removed * 1000:.0f} ms")
        finally:
            handler.cancel()
        assert "error" not in latest


def test_a_call_without_the_security_header_is_invalid_argument(stack):
    with grpc.insecure_channel(stack.endpoint) as channel:
        stub = workload_pb2_grpc.SpiffeWorkloadAPIStub(channel)
        with pytest.raises(grpc.RpcError) as error:
            next(stub.FetchX509SVID(workload_pb2.X509SVIDRequest()))
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        with pytest.raises(grpc.RpcError) as error:
            stub.FetchJWTSVID(workload_pb2.JWTSVIDRequest(audience=["a"]))
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_a_caller_with_no_entry_is_permission_denied(stack):
    stack.register("/someone-else", "unix:uid:4242")
    with grpc.insecure_channel(stack.endpoint) as channel:
        stub = workload_pb2_grpc.SpiffeWorkloadAPIStub(channel)
        with pytest.raises(grpc.RpcError) as error:
            next(stub.FetchX509SVID(workload_pb2.X509SVIDRequest(), metadata=HEADER))
        assert error.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_a_spoofed_credentials_header_is_ignored(stack):
    stack.register("/uid-4242-only", "unix:uid:4242")
    spoofed = HEADER + (("x-hallmark-peer-credentials", "1,4242,4242,"),)
    with grpc.insecure_channel(stack.endpoint) as channel:
        stub = workload_pb2_grpc.SpiffeWorkloadAPIStub(channel)
        with pytest.raises(grpc.RpcError) as error:
            next(stub.FetchX509SVID(workload_pb2.X509SVIDRequest(), metadata=spoofed))
        assert error.value.code() == grpc.StatusCode.PERMISSION_DENIED
