// The SPIFFE bundle format: parse, emit, the key rules, and the round trip.

import Crypto
import _CryptoExtras
import Foundation
import Testing
import X509
import SPIFFE
import HallmarkTestSupport

@Suite("SPIFFE bundle (JWKS)")
struct SPIFFEBundleTests {
    let td = try! TrustDomain("example.org")

    private func code(_ json: String) -> SPIFFEError.Code? {
        do {
            _ = try SPIFFEBundle(trustDomain: td, json: Data(json.utf8))
            return nil
        } catch let error as SPIFFEError {
            return error.code
        } catch {
            return nil
        }
    }

    private func x5c(_ certificate: Certificate) throws -> String {
        Data(try TestPEM.der(certificate)).base64EncodedString()
    }

    @Test("a bundle round-trips through JSON")
    func roundTrip() throws {
        let root = try TestCA.root()
        let rsa = try _RSA.Signing.PrivateKey(keySize: .bits2048)
        let bundle = SPIFFEBundle(
            trustDomain: td, x509Authorities: [root.certificate],
            jwtAuthorities: [
                JWTAuthority(keyID: "ec", publicKey: P256.Signing.PrivateKey().publicKey),
                JWTAuthority(keyID: "rsa", publicKey: rsa.publicKey),
            ],
            sequenceNumber: 7, refreshHint: 300
        )
        let json = try bundle.json()
        let text = String(decoding: json, as: UTF8.self)
        #expect(text.contains(#""use" : "x509-svid""#))
        #expect(text.contains(#""spiffe_sequence" : 7"#))
        let parsed = try SPIFFEBundle(trustDomain: td, json: json)
        #expect(parsed.x509Authorities == [root.certificate])
        #expect(parsed.jwtAuthorities.map(\.keyID) == ["ec", "rsa"])
        #expect(parsed.jwtAuthorities.map(\.publicKeyDER) == bundle.jwtAuthorities.map(\.publicKeyDER))
        #expect(parsed.sequenceNumber == 7)
        #expect(parsed.refreshHint == 300)
        #expect(try parsed.json() == json)
    }

    @Test("the x509-svid key has no kid")
    func x509KeyHasNoKid() throws {
        let bundle = SPIFFEBundle(trustDomain: td, x509Authorities: [try TestCA.root().certificate])
        let object = try JSONSerialization.jsonObject(with: Data(try bundle.json())) as? [String: Any]
        let key = (object?["keys"] as? [[String: Any]])?.first
        #expect(key?["kid"] == nil)
        #expect((key?["x5c"] as? [String])?.count == 1)
    }

    @Test("unknown kty and use are ignored")
    func unknownIgnored() throws {
        let json = """
            {"keys":[{"kty":"OKP","use":"jwt-svid","kid":"x","crv":"Ed25519","x":"AA"},
                     {"kty":"EC","use":"something-else","kid":"y"}], "spiffe_sequence": 1}
            """
        let bundle = try SPIFFEBundle(trustDomain: td, json: Data(json.utf8))
        #expect(bundle.x509Authorities.isEmpty)
        #expect(bundle.jwtAuthorities.isEmpty)
    }

    @Test("duplicate JWT key IDs are refused")
    func duplicateKid() throws {
        let key = P256.Signing.PrivateKey().publicKey.rawRepresentation
        let x = Base64URL.encode(key.prefix(32)), y = Base64URL.encode(key.suffix(32))
        let jwk = #"{"kty":"EC","use":"jwt-svid","kid":"a","crv":"P-256","x":"\#(x)","y":"\#(y)"}"#
        #expect(code(#"{"keys":[\#(jwk)]}"#) == nil)
        #expect(code(#"{"keys":[\#(jwk),\#(jwk)]}"#) == .duplicateBundleKey)
    }

    @Test("duplicate X.509 authorities are refused")
    func duplicateX509() throws {
        let cert = try x5c(try TestCA.root().certificate)
        let jwk = #"{"kty":"EC","use":"x509-svid","x5c":["\#(cert)"]}"#
        #expect(code(#"{"keys":[\#(jwk),\#(jwk)]}"#) == .duplicateBundleKey)
    }

    @Test("key rules", arguments: [
        #"{"keys":[{"kty":"EC","use":"jwt-svid","crv":"P-256","x":"AA","y":"AA"}]}"#,
        #"{"keys":[{"kty":"EC","use":"jwt-svid","kid":"a","crv":"P-256","x":"AA","y":"AA"}]}"#,
        #"{"keys":[{"kty":"EC","use":"jwt-svid","kid":"a","crv":"P-999","x":"AA","y":"AA"}]}"#,
        #"{"keys":[{"kty":"RSA","use":"jwt-svid","kid":"a","n":"AQAB","e":"AQAB"}]}"#,
        #"{"keys":[{"kty":"EC","use":"x509-svid"}]}"#,
        #"{"keys":[{"kty":"EC","use":"x509-svid","x5c":["AAAA"]}]}"#,
    ])
    func keyRules(_ json: String) {
        #expect(code(json) == .invalidBundleKey)
    }

    @Test("two certificates in one x5c are refused, and so is a kid on an X.509 key")
    func x5cCount() throws {
        let cert = try x5c(try TestCA.root().certificate)
        #expect(code(#"{"keys":[{"kty":"EC","use":"x509-svid","x5c":["\#(cert)","\#(cert)"]}]}"#) == .invalidBundleKey)
        #expect(code(#"{"keys":[{"kty":"EC","use":"x509-svid","kid":"a","x5c":["\#(cert)"]}]}"#) == .invalidBundleKey)
    }

    @Test("not a JWK Set", arguments: ["", "[]", "{}", #"{"keys":{}}"#, "{\"keys\":[1]}"])
    func malformed(_ json: String) {
        #expect(code(json) == .malformedBundle)
    }

    @Test("an empty key list is a valid bundle that trusts nothing")
    func emptyKeys() throws {
        let bundle = try SPIFFEBundle(trustDomain: td, json: Data(#"{"keys":[]}"#.utf8))
        #expect(bundle.x509Bundle.authorities.isEmpty)
    }
}
