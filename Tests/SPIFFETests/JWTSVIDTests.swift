// JWT-SVID validation by the JWT-SVID specification, with tokens signed by the tests.

import Crypto
import _CryptoExtras
import Foundation
import Testing
import SPIFFE
import HallmarkTestSupport

@Suite("JWT-SVID")
struct JWTSVIDTests {
    // One RSA key serves all six RSA algorithms; generating it is the slow part.
    static let rsa = try! _RSA.Signing.PrivateKey(keySize: .bits2048)
    static let p256 = P256.Signing.PrivateKey()
    static let p384 = P384.Signing.PrivateKey()
    static let p521 = P521.Signing.PrivateKey()

    static func key(for alg: String) -> TestJWTKey {
        switch alg {
        case "ES256": .p256(p256)
        case "ES384": .p384(p384)
        case "ES512": .p521(p521)
        default: .rsa(rsa)
        }
    }

    static func bundle(for alg: String, keyID: String = "k1") throws -> JWTBundle {
        try JWTBundle(trustDomain: TrustDomain("example.org"), authorities: [key(for: alg).authority(keyID: keyID)])
    }

    static func token(alg: String = "ES256", kid: String? = "k1", typ: String? = "JWT", claims: [String: JSONValue] = TestJWT.claims()) throws -> String {
        var header: [String: JSONValue] = ["alg": .string(alg)]
        if let kid { header["kid"] = .string(kid) }
        if let typ { header["typ"] = .string(typ) }
        return try TestJWT.sign(header: header, claims: claims, alg: alg, key: key(for: alg))
    }

    static func code(_ token: String, bundle: JWTBundle, audience: String = "service") -> SPIFFEError.Code? {
        do {
            _ = try JWTSVID(parsing: token, bundles: bundle, audience: audience, at: TestClock.now)
            return nil
        } catch let error as SPIFFEError {
            return error.code
        } catch {
            return nil
        }
    }

    @Test("each allowed algorithm verifies", arguments: ["RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "PS256", "PS384", "PS512"])
    func algorithms(_ alg: String) throws {
        let svid = try JWTSVID(parsing: Self.token(alg: alg), bundles: Self.bundle(for: alg), audience: "service", at: TestClock.now)
        #expect(svid.id.description == "spiffe://example.org/workload")
        #expect(svid.algorithm == alg)
        #expect(svid.keyID == "k1")
        #expect(svid.audience == ["service"])
    }

    @Test("'none' is refused")
    func none() throws {
        let header = Base64URL.encode(Data(#"{"alg":"none","kid":"k1"}"#.utf8))
        let payload = Base64URL.encode(try JSONEncoder().encode(TestJWT.claims()))
        #expect(Self.code("\(header).\(payload).", bundle: try Self.bundle(for: "ES256")) == .unsupportedAlgorithm)
    }

    @Test("HS256 is refused even with a valid MAC")
    func hs256() throws {
        let header = Base64URL.encode(Data(#"{"alg":"HS256","kid":"k1","typ":"JWT"}"#.utf8))
        let payload = Base64URL.encode(try JSONEncoder().encode(TestJWT.claims()))
        let mac = HMAC<SHA256>.authenticationCode(for: Data("\(header).\(payload)".utf8), using: SymmetricKey(size: .bits256))
        let token = "\(header).\(payload).\(Base64URL.encode(Data(mac)))"
        #expect(Self.code(token, bundle: try Self.bundle(for: "ES256")) == .unsupportedAlgorithm)
    }

    @Test("a missing kid is refused")
    func missingKid() throws {
        #expect(Self.code(try Self.token(kid: nil), bundle: try Self.bundle(for: "ES256")) == .missingKeyID)
    }

    @Test("an unknown kid is refused")
    func unknownKid() throws {
        #expect(Self.code(try Self.token(kid: "k2"), bundle: try Self.bundle(for: "ES256")) == .unknownKeyID)
    }

    @Test("a wrong audience is refused")
    func wrongAudience() throws {
        #expect(Self.code(try Self.token(), bundle: try Self.bundle(for: "ES256"), audience: "other") == .audienceMismatch)
    }

    @Test("a missing audience is refused")
    func missingAudience() throws {
        var claims = TestJWT.claims()
        claims["aud"] = nil
        #expect(Self.code(try Self.token(claims: claims), bundle: try Self.bundle(for: "ES256")) == .missingAudience)
    }

    @Test("a single-string audience is accepted")
    func stringAudience() throws {
        var claims = TestJWT.claims()
        claims["aud"] = .string("service")
        #expect(Self.code(try Self.token(claims: claims), bundle: try Self.bundle(for: "ES256")) == nil)
    }

    @Test("an expired token is refused")
    func expired() throws {
        let claims = TestJWT.claims(expiresIn: -1)
        #expect(Self.code(try Self.token(claims: claims), bundle: try Self.bundle(for: "ES256")) == .tokenExpired)
    }

    @Test("nbf and iat may lie at most the allowed skew ahead; further is refused", arguments: [
        ("nbf", 30.0, nil), ("nbf", 61.0, SPIFFEError.Code.tokenNotYetValid), ("iat", 59.0, nil), ("iat", 3600.0, .issuedInFuture),
        ("nbf", -3600.0, nil),
    ] as [(String, Double, SPIFFEError.Code?)])
    func notBeforeAndIssuedAt(_ claim: String, _ ahead: Double, _ expected: SPIFFEError.Code?) throws {
        var claims = TestJWT.claims(expiresIn: 7200)
        claims[claim] = .number(TestClock.now.timeIntervalSince1970 + ahead)
        #expect(Self.code(try Self.token(claims: claims), bundle: try Self.bundle(for: "ES256")) == expected)
    }

    @Test("a non-numeric nbf or iat is malformed", arguments: ["nbf", "iat"])
    func nonNumericTimes(_ claim: String) throws {
        var claims = TestJWT.claims()
        claims[claim] = .string("tomorrow")
        #expect(Self.code(try Self.token(claims: claims), bundle: try Self.bundle(for: "ES256")) == .malformedJWT)
    }

    @Test("a token without exp is refused")
    func noExpiry() throws {
        var claims = TestJWT.claims()
        claims["exp"] = nil
        #expect(Self.code(try Self.token(claims: claims), bundle: try Self.bundle(for: "ES256")) == .missingExpiry)
    }

    @Test("a bad signature is refused", arguments: ["ES256", "RS256", "PS256"])
    func badSignature(_ alg: String) throws {
        let token = try Self.token(alg: alg)
        // Sign other claims with the same key and graft that signature on.
        let other = try Self.token(alg: alg, claims: TestJWT.claims(sub: "spiffe://example.org/other"))
        let forged = token.split(separator: ".").prefix(2).joined(separator: ".") + "." + other.split(separator: ".")[2]
        #expect(Self.code(forged, bundle: try Self.bundle(for: alg)) == .invalidSignature)
    }

    @Test("a signature by another key with the same kid is refused")
    func otherKey() throws {
        let bundle = try JWTBundle(trustDomain: TrustDomain("example.org"), authorities: [TestJWTKey.p256(P256.Signing.PrivateKey()).authority(keyID: "k1")])
        #expect(Self.code(try Self.token(), bundle: bundle) == .invalidSignature)
    }

    @Test("typ must be JWT or JOSE when present", arguments: [("JWT", true), ("JOSE", true), ("at+jwt", false)])
    func typ(_ typ: String, _ accepted: Bool) throws {
        let code = Self.code(try Self.token(typ: typ), bundle: try Self.bundle(for: "ES256"))
        #expect(accepted ? code == nil : code == .invalidTokenType)
    }

    @Test("a subject that is not a SPIFFE ID is refused")
    func badSubject() throws {
        let claims = TestJWT.claims(sub: "workload")
        #expect(Self.code(try Self.token(claims: claims), bundle: try Self.bundle(for: "ES256")) == .invalidSubject)
    }

    @Test("a token of a trust domain with no bundle is refused")
    func noBundle() throws {
        let claims = TestJWT.claims(sub: "spiffe://other.org/workload")
        #expect(Self.code(try Self.token(claims: claims), bundle: try Self.bundle(for: "ES256")) == .bundleNotFound)
    }

    @Test("not a compact JWS", arguments: ["", "a.b", "a.b.c.d", "!!.??.**"])
    func malformed(_ token: String) throws {
        #expect(Self.code(token, bundle: try Self.bundle(for: "ES256")) == .malformedJWT)
    }

    @Test("the algorithm must match the key's type")
    func algorithmKeyMismatch() throws {
        // An RS256 token checked against an EC key of the same kid.
        let token = try Self.token(alg: "RS256")
        #expect(Self.code(token, bundle: try Self.bundle(for: "ES256")) == .invalidSignature)
    }
}
