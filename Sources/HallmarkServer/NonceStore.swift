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
            throw NonceError("the nonce is unknown, was already used, or was issued to another agent")
        }
        guard entry.expiresAt > clock() else { throw NonceError("the nonce expired at \(entry.expiresAt)") }
    }
}

struct NonceError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
