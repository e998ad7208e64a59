// The JWT authority: an ES256 key whose kid is published in the bundle.

public import Crypto
public import Foundation
public import SPIFFE

/// A JWT-SVID signing key.
public struct JWTSigningKey: Sendable {
    public let keyID: String
    public let privateKey: P256.Signing.PrivateKey
    public let notAfter: Date

    public init(keyID: String, privateKey: P256.Signing.PrivateKey, notAfter: Date) {
        self.keyID = keyID
        self.privateKey = privateKey
        self.notAfter = notAfter
    }

    /// A new key with a random 32-character kid.
    public static func generate(notAfter: Date) -> JWTSigningKey {
        let kid = Hex.encode((0..<16).map { _ in UInt8.random(in: 0...255) })
        return JWTSigningKey(keyID: kid, privateKey: P256.Signing.PrivateKey(), notAfter: notAfter)
    }

    /// The public half, as a bundle publishes it.
    public var authority: JWTAuthority { JWTAuthority(keyID: keyID, publicKey: privateKey.publicKey) }

    /// Signs a JWT-SVID: ES256, `kid` and `typ: JWT` in the header; `sub`, `aud`, `exp`, `iat` claims.
    ///
    /// - Returns: the compact JWS and its expiry, capped to the key's own life.
    /// - Throws: ``CAError`` when the audience is empty or the key has expired.
    public func sign(spiffeID: SPIFFEID, audience: [String], ttl: TimeInterval, now: Date) throws -> (token: String, expiresAt: Date) {
        guard !audience.isEmpty, audience.allSatisfy({ !$0.isEmpty }) else {
            throw CAError(.invalidArgument, "jwt: at least one non-empty audience is required")
        }
        let expiry = min(now.addingTimeInterval(ttl), notAfter)
        guard expiry > now else { throw CAError(.expired, "jwt: the JWT authority \(keyID) expired at \(notAfter)") }
        let expiresAt = Date(timeIntervalSince1970: expiry.timeIntervalSince1970.rounded(.down))
        let header: [String: JSONValue] = ["alg": .string("ES256"), "kid": .string(keyID), "typ": .string("JWT")]
        let claims: [String: JSONValue] = [
            "sub": .string(spiffeID.description),
            "aud": audience.count == 1 ? .string(audience[0]) : .array(audience.map(JSONValue.string)),
            "exp": .number(expiresAt.timeIntervalSince1970),
            "iat": .number(now.timeIntervalSince1970.rounded(.down)),
        ]
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let input = Base64URL.encode(try encoder.encode(header)) + "." + Base64URL.encode(try encoder.encode(claims))
        let signature = try privateKey.signature(for: SHA256.hash(data: Data(input.utf8)))
        return (input + "." + Base64URL.encode(signature.rawRepresentation), expiresAt)
    }
}
