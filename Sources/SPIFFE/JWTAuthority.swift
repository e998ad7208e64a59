// A JWT authority: a public key and its key ID, as published in a bundle.

public import Crypto
public import _CryptoExtras
public import Foundation

/// A public key that signs JWT-SVIDs, with its `kid`.
public struct JWTAuthority: Sendable {
    enum Key: Sendable {
        case p256(P256.Signing.PublicKey)
        case p384(P384.Signing.PublicKey)
        case p521(P521.Signing.PublicKey)
        case rsa(_RSA.Signing.PublicKey)
    }

    /// The key ID, unique within a trust domain's bundle.
    public let keyID: String
    let key: Key

    public init(keyID: String, publicKey: P256.Signing.PublicKey) { self.init(keyID: keyID, key: .p256(publicKey)) }
    public init(keyID: String, publicKey: P384.Signing.PublicKey) { self.init(keyID: keyID, key: .p384(publicKey)) }
    public init(keyID: String, publicKey: P521.Signing.PublicKey) { self.init(keyID: keyID, key: .p521(publicKey)) }
    public init(keyID: String, publicKey: _RSA.Signing.PublicKey) { self.init(keyID: keyID, key: .rsa(publicKey)) }

    init(keyID: String, key: Key) {
        self.keyID = keyID
        self.key = key
    }

    /// The key as SubjectPublicKeyInfo DER.
    public var publicKeyDER: [UInt8] {
        switch key {
        case .p256(let key): Array(key.derRepresentation)
        case .p384(let key): Array(key.derRepresentation)
        case .p521(let key): Array(key.derRepresentation)
        case .rsa(let key): Array(key.derRepresentation)
        }
    }

    /// Checks a JWS signature made with `algorithm` over `signingInput`.
    func isValidSignature(_ signature: [UInt8], algorithm: JWTAlgorithm, signingInput: [UInt8]) -> Bool {
        switch (key, algorithm) {
        case (.p256(let key), .es256):
            guard let sig = try? P256.Signing.ECDSASignature(rawRepresentation: signature) else { return false }
            return key.isValidSignature(sig, for: SHA256.hash(data: signingInput))
        case (.p384(let key), .es384):
            guard let sig = try? P384.Signing.ECDSASignature(rawRepresentation: signature) else { return false }
            return key.isValidSignature(sig, for: SHA384.hash(data: signingInput))
        case (.p521(let key), .es512):
            guard let sig = try? P521.Signing.ECDSASignature(rawRepresentation: signature) else { return false }
            return key.isValidSignature(sig, for: SHA512.hash(data: signingInput))
        case (.rsa(let key), _):
            let sig = _RSA.Signing.RSASignature(rawRepresentation: signature)
            let padding: _RSA.Signing.Padding
            switch algorithm {
            case .rs256, .rs384, .rs512: padding = .insecurePKCS1v1_5
            case .ps256, .ps384, .ps512: padding = .PSS
            default: return false
            }
            switch algorithm {
            case .rs256, .ps256: return key.isValidSignature(sig, for: SHA256.hash(data: signingInput), padding: padding)
            case .rs384, .ps384: return key.isValidSignature(sig, for: SHA384.hash(data: signingInput), padding: padding)
            default: return key.isValidSignature(sig, for: SHA512.hash(data: signingInput), padding: padding)
            }
        default:
            return false
        }
    }
}

/// The JWS algorithms the JWT-SVID specification allows.
enum JWTAlgorithm: String, Sendable, CaseIterable {
    case rs256 = "RS256", rs384 = "RS384", rs512 = "RS512"
    case es256 = "ES256", es384 = "ES384", es512 = "ES512"
    case ps256 = "PS256", ps384 = "PS384", ps512 = "PS512"
}
