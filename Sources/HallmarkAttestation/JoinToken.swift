// Join tokens: random, single-use secrets an admin hands to a node, redeemed at attestation.

public import Crypto
public import Foundation
public import SPIFFE

public enum JoinToken {
    /// The attestation method name.
    public static let method = "join-token"

    /// A new random token: 32 bytes as lower-case hex.
    public static func generate() -> String {
        var generator = SystemRandomNumberGenerator()
        return Hex.encode((0..<32).map { _ in UInt8.random(in: 0...255, using: &generator) })
    }

    /// What the store keeps: the token's SHA-256, never the token.
    public static func hash(_ token: String) -> [UInt8] {
        Array(SHA256.hash(data: Data(token.utf8)))
    }

    /// The token's public ID, derived from its hash: safe to log and to put in SPIFFE IDs.
    public static func id(of token: String) -> String {
        Hex.encode(hash(token).prefix(8))
    }

    /// The SPIFFE ID of an agent attested with a token: `spiffe://TD/hallmark/agent/join-token/<token id>`.
    public static func agentID(trustDomain: TrustDomain, tokenID: String) throws -> SPIFFEID {
        try SPIFFEID(trustDomain: trustDomain, segments: ["hallmark", "agent", "join-token", tokenID])
    }
}
