// JWTs signed for tests with every JWS algorithm the JWT-SVID specification allows.

public import Crypto
public import _CryptoExtras
public import Foundation
public import SPIFFE

/// A signing key for test JWTs.
public enum TestJWTKey: Sendable {
    case p256(P256.Signing.PrivateKey)
    case p384(P384.Signing.PrivateKey)
    case p521(P521.Signing.PrivateKey)
    case rsa(_RSA.Signing.PrivateKey)

    /// The matching public authority for a bundle.
    public func authority(keyID: String) -> JWTAuthority {
        switch self {
        case .p256(let key): JWTAuthority(keyID: keyID, publicKey: key.publicKey)
        case .p384(let key): JWTAuthority(keyID: keyID, publicKey: key.publicKey)
        case .p521(let key): JWTAuthority(keyID: keyID, publicKey: key.publicKey)
        case .rsa(let key): JWTAuthority(keyID: keyID, publicKey: key.publicKey)
        }
    }
}

public enum TestJWT {
    /// Signs a compact JWS with `alg`, over a header and claims given as JSON objects.
    public static func sign(header: [String: JSONValue], claims: [String: JSONValue], alg: String, key: TestJWTKey) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        let input = Base64URL.encode(try encoder.encode(header)) + "." + Base64URL.encode(try encoder.encode(claims))
        let data = Data(input.utf8)
        let signature: Data
        switch (key, alg) {
        case (.p256(let key), _): signature = try key.signature(for: SHA256.hash(data: data)).rawRepresentation
        case (.p384(let key), _): signature = try key.signature(for: SHA384.hash(data: data)).rawRepresentation
        case (.p521(let key), _): signature = try key.signature(for: SHA512.hash(data: data)).rawRepresentation
        case (.rsa(let key), _):
            let padding: _RSA.Signing.Padding = alg.hasPrefix("PS") ? .PSS : .insecurePKCS1v1_5
            switch alg.suffix(3) {
            case "256": signature = try key.signature(for: SHA256.hash(data: data), padding: padding).rawRepresentation
            case "384": signature = try key.signature(for: SHA384.hash(data: data), padding: padding).rawRepresentation
            default: signature = try key.signature(for: SHA512.hash(data: data), padding: padding).rawRepresentation
            }
        }
        return input + "." + Base64URL.encode(signature)
    }

    /// Standard JWT-SVID claims for `sub`, audience and an expiry relative to `now`.
    public static func claims(sub: String = "spiffe://example.org/workload", aud: [String] = ["service"], expiresIn: TimeInterval = 300, now: Date = TestClock.now) -> [String: JSONValue] {
        [
            "sub": .string(sub),
            "aud": .array(aud.map(JSONValue.string)),
            "exp": .number(now.timeIntervalSince1970 + expiresIn),
            "iat": .number(now.timeIntervalSince1970),
        ]
    }
}
