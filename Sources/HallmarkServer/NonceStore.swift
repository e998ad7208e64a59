// Attestation nonces: random, bound to the agent they were issued for, usable once, and only
// until they expire. Time comes from an injected clock.

import Foundation

actor NonceStore {
    private var issued: [[UInt8]: (agent: String, expiresAt: Date)] = [:]
    private let ttl: TimeInterval
    private let clock: @Sendable () -> Date

    init(ttl: TimeInterval, clock: @escaping @Sendable () -> Date) {
        self.ttl = ttl
        self.clock = clock
    }

    /// A fresh 32-byte nonce for `agent`.
    func issue(for agent: String) -> [UInt8] {
        let now = clock()
        issued = issued.filter { $0.value.expiresAt > now }
        let nonce = (0..<32).map { _ in UInt8.random(in: 0...255) }
        issued[nonce] = (agent, now.addingTimeInterval(ttl))
        return nonce
    }

    /// Spends a nonce; refuses one that is unknown, already used, issued to another agent, or expired.
    func consume(_ nonce: [UInt8], for agent: String) throws {
        guard let entry = issued.removeValue(forKey: nonce), entry.agent == agent else {
            throw NonceError(.unknown, "the nonce is unknown, was already used, or was issued to another agent")
        }
        guard entry.expiresAt > clock() else { throw NonceError(.expired, "the nonce expired at \(entry.expiresAt)") }
    }
}

/// A nonce refused: a stable code, and a message naming why.
///
/// Match on ``code``; read ``message`` for the cause. New codes may be added, so a `switch` over
/// codes needs a `default`.
struct NonceError: Error, Hashable, Sendable, CustomStringConvertible {
    struct Code: Hashable, Sendable, CustomStringConvertible {
        fileprivate enum Base: String, Hashable, Sendable {
            case unknown, expired
        }

        fileprivate let base: Base
        fileprivate init(_ base: Base) { self.base = base }

        var description: String { base.rawValue }

        /// Never issued, already spent, or issued to another agent: the three look alike on purpose.
        static let unknown = Code(.unknown)
        /// Issued, but past its life.
        static let expired = Code(.expired)
    }

    let code: Code
    /// A sentence naming the cause.
    let message: String
    /// The error this one came from, described, when another error caused it.
    let underlying: String?

    init(_ code: Code, _ message: String, underlying: (any Error)? = nil) {
        self.code = code
        self.message = message
        self.underlying = underlying.map { "\($0)" }
    }

    var description: String { message }
}
