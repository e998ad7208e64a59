"""A JWT-SVID minted by Hallmark, checked by PyJWT against the SPIFFE bundle: an implementation
other than ours decides whether the signature, algorithm and claims are right."""

import json

import jwt
import pytest
from jwt.algorithms import ECAlgorithm


def jwt_keys(server):
    bundle = json.loads(server.cli("bundle", "show", "--format", "spiffe").stdout)
    return {key["kid"]: key for key in bundle["keys"] if key.get("use") == "jwt-svid"}


def test_pyjwt_verifies_a_minted_jwt_svid(server):
    token = server.cli("jwt", "mint", "--spiffe-id", "spiffe://example.org/model/llama",
                       "--audience", "inference").stdout.strip()
    header = jwt.get_unverified_header(token)
    assert header["alg"] == "ES256"
    assert header["typ"] == "JWT"
    key = ECAlgorithm.from_jwk(json.dumps(jwt_keys(server)[header["kid"]]))
    claims = jwt.decode(token, key=key, algorithms=["ES256"], audience="inference",
                        options={"require": ["exp", "sub", "aud"]})
    assert claims["sub"] == "spiffe://example.org/model/llama"
    assert claims["exp"] - claims["iat"] == 300


def test_pyjwt_refuses_the_token_for_another_audience(server):
    token = server.cli("jwt", "mint", "--spiffe-id", "spiffe://example.org/svc", "--audience", "a").stdout.strip()
    key = ECAlgorithm.from_jwk(json.dumps(jwt_keys(server)[jwt.get_unverified_header(token)["kid"]]))
    with pytest.raises(jwt.InvalidAudienceError):
        jwt.decode(token, key=key, algorithms=["ES256"], audience="b")


def test_pyjwt_refuses_a_tampered_payload(server):
    token = server.cli("jwt", "mint", "--spiffe-id", "spiffe://example.org/svc", "--audience", "a").stdout.strip()
    key = ECAlgorithm.from_jwk(json.dumps(jwt_keys(server)[jwt.get_unverified_header(token)["kid"]]))
    header, payload, signature = token.split(".")
    forged = jwt.utils.base64url_encode(
        json.dumps({**json.loads(jwt.utils.base64url_decode(payload)), "sub": "spiffe://example.org/admin"}).encode()
    ).decode()
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(f"{header}.{forged}.{signature}", key=key, algorithms=["ES256"], audience="a")
