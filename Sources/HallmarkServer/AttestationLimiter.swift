// Failed attestation attempts, counted per peer address over a sliding window: past the limit a
// peer's attempts are refused before any evidence is read, so that guessing join tokens or
// replaying evidence costs the attacker time, not the server work. Successes are not counted.
// Time comes from an injected clock.

import Foundation

actor AttestationLimiter {
    /// Failures allowed per peer within `window` before it is turned away.
    let limit: Int
    let window: TimeInterval
    private var failures: [String: [Date]] = [:]
    private let clock: @Sendable () -> Date

    init(limit: Int = 10, window: TimeInterval = 60, clock: @escaping @Sendable () -> Date) {
        self.limit = limit
        self.window = window
        self.clock = clock
    }

    /// The peer's host, without the port: "ipv4:127.0.0.1:47816" → "ipv4:127.0.0.1".
    static func host(of peer: String) -> String {
        if peer.hasPrefix("ipv6:["), let close = peer.firstIndex(of: "]") { return String(peer[...close]) }
        guard peer.hasPrefix("ipv4:"), let colon = peer.lastIndex(of: ":"), colon > peer.index(peer.startIndex, offsetBy: 4) else { return peer }
        return String(peer[..<colon])
    }

    /// Seconds until `peer` may try again, or nil when it may try now.
    func retryAfter(_ peer: String) -> TimeInterval? {
        let now = clock()
        let recent = (failures[Self.host(of: peer)] ?? []).filter { now.timeIntervalSince($0) < window }
        failures[Self.host(of: peer)] = recent.isEmpty ? nil : recent
        guard recent.count >= limit, let oldest = recent.first else { return nil }
        return window - now.timeIntervalSince(oldest)
    }

    func recordFailure(_ peer: String) {
        let now = clock()
        let host = Self.host(of: peer)
        var recent = (failures[host] ?? []).filter { now.timeIntervalSince($0) < window }
        recent.append(now)
        // Only the newest `limit` matter; an attacker cannot grow this without bound.
        failures[host] = Array(recent.suffix(limit))
        // Peers that stopped failing are forgotten as their window passes.
        if failures.count > 10_000 { failures = failures.filter { !$0.value.isEmpty && now.timeIntervalSince($0.value.last!) < window } }
    }
}
