#!/usr/bin/env python3
"""Writes the seed corpora in Fuzz/Corpus/<target>/ from scratch: valid inputs made with
Python's `cryptography`, openssl's certificate layout, the NVIDIA fixture report, and TPM
structures from a software TPM (swtpm + tpm2-tools, see make-tpm-seeds.sh). Seeds only need to
be well-formed starting points; the fuzzer mutates them."""

import base64, datetime, json, os, pathlib, subprocess
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa, utils
from cryptography.x509.oid import NameOID, ExtendedKeyUsageOID

root = pathlib.Path(__file__).resolve().parent
corpus = root / "Corpus"

def seed(target, name, data):
    folder = corpus / target
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(data if isinstance(data, bytes) else data.encode())

def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

# SPIFFE IDs and trust domains, valid and nearly valid.
for i, text in enumerate([
    "spiffe://example.org/model/llama", "spiffe://example.org", "spiffe://a.b-c_d/x/y.z/~",
    "example.org", "spiffe://EXAMPLE.org/x", "spiffe://example.org//x", "spiffe://example.org/x%20y",
    "spiffe://user@host:8080/p", "spiffe://example.org/./x", "spiffe://example.org/x/",
]):
    seed("FuzzSPIFFEID", f"id-{i}", text)

# The CA of FuzzX509SVID (its PEM is in that target) and a leaf under it.
ca_pem = (root / "Sources/FuzzX509SVID/ca.pem").read_bytes()
ca_key = serialization.load_pem_private_key((root / "seed-keys/x509-ca.key").read_bytes(), None)
ca = x509.load_pem_x509_certificate(ca_pem)
leaf_key = ec.generate_private_key(ec.SECP256R1())
start = datetime.datetime(2027, 1, 1, tzinfo=datetime.timezone.utc)
leaf = (
    x509.CertificateBuilder()
    .subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Fuzz")]))
    .issuer_name(ca.subject).public_key(leaf_key.public_key()).serial_number(2)
    .not_valid_before(start).not_valid_after(start + datetime.timedelta(days=3650))
    .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
    .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True)
    .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
    .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier("spiffe://example.org/model/llama")]), critical=False)
    .sign(ca_key, hashes.SHA256())
)
der = lambda cert: cert.public_bytes(serialization.Encoding.DER)
seed("FuzzX509SVID", "leaf", der(leaf))
seed("FuzzX509SVID", "leaf-ca", der(leaf) + der(ca))

# CSRs: P-256, P-384 and RSA-2048, as agents and admins send them.
for name, key, digest in [
    ("p256", ec.generate_private_key(ec.SECP256R1()), hashes.SHA256()),
    ("p384", ec.generate_private_key(ec.SECP384R1()), hashes.SHA384()),
    ("rsa2048", rsa.generate_private_key(65537, 2048), hashes.SHA256()),
]:
    csr = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([])).sign(key, digest)
    seed("FuzzCSR", name, csr.public_bytes(serialization.Encoding.DER))

# A bundle with an X.509 authority and a JWT authority.
jwt_key = ec.derive_private_key(int.from_bytes(bytes([7] * 32), "big"), ec.SECP256R1())
numbers = jwt_key.public_key().public_numbers()
bundle = {
    "spiffe_sequence": 3, "spiffe_refresh_hint": 60,
    "keys": [
        {"use": "x509-svid", "kty": "EC", "crv": "P-256", "x5c": [base64.b64encode(der(ca)).decode()],
         "x": b64url(numbers.x.to_bytes(32, "big")), "y": b64url(numbers.y.to_bytes(32, "big"))},
        {"use": "jwt-svid", "kty": "EC", "crv": "P-256", "kid": "fuzz",
         "x": b64url(numbers.x.to_bytes(32, "big")), "y": b64url(numbers.y.to_bytes(32, "big"))},
    ],
}
seed("FuzzBundle", "bundle", json.dumps(bundle))
seed("FuzzBundle", "empty", '{"keys": []}')

# JWT-SVIDs signed with FuzzJWTSVID's fixed key (private scalar 0x07 repeated).
def token(claims, header={"alg": "ES256", "kid": "fuzz", "typ": "JWT"}):
    signing_input = b64url(json.dumps(header).encode()) + "." + b64url(json.dumps(claims).encode())
    r, s = utils.decode_dss_signature(jwt_key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
    return signing_input + "." + b64url(r.to_bytes(32, "big") + s.to_bytes(32, "big"))
valid = {"sub": "spiffe://example.org/model/llama", "aud": ["fuzz"], "exp": 1_900_000_000, "iat": 1_800_000_000}
seed("FuzzJWTSVID", "valid", token(valid))
seed("FuzzJWTSVID", "audience-string", token(dict(valid, aud="fuzz")))
seed("FuzzJWTSVID", "expired", token(dict(valid, exp=1_700_000_000)))

# NVIDIA's Hopper report from the test fixtures (hex text in the fixture).
report = (root.parent / "Tests/Fixtures/nvidia/hopper-2023/attestationReport.txt").read_text()
seed("FuzzSPDMReport", "hopper-2023", bytes.fromhex("".join(report.split())))

# Protobuf messages, encoded by hand: a selector byte, then the message.
def field(number, payload):
    key, length = (number << 3) | 2, len(payload)
    out = bytes([key])
    while True:
        byte, length = length & 0x7F, length >> 7
        out += bytes([byte | (0x80 if length else 0)])
        if not length:
            return out + payload
def string(number, text):
    return field(number, text.encode())
entry = string(2, "spiffe://example.org/model/llama") + string(3, "spiffe://example.org/hallmark/agent/x") \
    + field(4, string(1, "unix") + string(2, "uid:1000")) + string(7, "llama.example.org")
seed("FuzzAPIMessages", "create-entry", b"\x00" + field(1, entry))
csr = (corpus / "FuzzCSR/p256").read_bytes()
seed("FuzzAPIMessages", "batch-csr", b"\x01" + field(1, string(1, "entry-1") + field(2, csr)))
seed("FuzzAPIMessages", "attest", b"\x02" + field(1, string(1, "join_token") + string(2, "token") + field(3, csr)))
seed("FuzzAPIMessages", "update-entry", b"\x03" + field(1, string(1, "id-1") + entry))
print("seeds written under", corpus)
