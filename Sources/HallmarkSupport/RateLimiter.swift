// A token bucket per key (a uid on the agent, an agent on the server): each key may spend `burst`
// at once and then `rate` a second. A refusal says how long until the next token, so that the
// caller's status can name both the limit and the wait. Time comes from an injected clock.

public import Foundation
import Synchronization

public final class RateLimiter<Key: Hashable & Sendable>: Sendable {
    /// A sustained rate and the burst allowed above it.
    public struct Limit: Sendable, Equatable, CustomStringConvertible {
        /// Tokens a second.
        public var rate: Double
        /// Tokens at most held, so spent at once after a quiet spell.
        public var burst: Double

        public init(rate: Double, burst: Double) {
            self.rate = rate
            self.burst = max(burst, 1)
        }

        public var description: String {
            "\(Self.number(rate)) a second (bursts of \(Self.number(burst)))"
        }

        private static func number(_ value: Double) -> String {
            value == value.rounded() ? String(Int(value)) : String(value)
        }
    }

    public let limit: Limit
    private let clock: @Sendable () -> Date
    private let maximumKeys: Int
    private struct Bucket {
        var tokens: Double
        var at: Date
    }
    private let buckets = Mutex<[Key: Bucket]>([:])

    /// - Parameter maximumKeys: past this many buckets, the full ones (keys quiet long enough to be
    ///   as new) are forgotten. Only keys still refilling are kept beyond it, and those are callers
    ///   that spent within the last burst/rate seconds: uids or attested agents, not anyone's to mint.
    public init(_ limit: Limit, maximumKeys: Int = 10_000, clock: @escaping @Sendable () -> Date = { Date() }) {
        self.limit = limit
        self.maximumKeys = maximumKeys
        self.clock = clock
    }

    /// Spends `cost` tokens of `key`'s bucket.
    /// - Returns: nil when spent; otherwise the seconds until `key` could spend them (nothing is spent).
    public func take(_ key: Key, cost: Double = 1) -> TimeInterval? {
        let now = clock()
        return buckets.withLock { buckets in
            var bucket = buckets[key] ?? Bucket(tokens: limit.burst, at: now)
            let elapsed = max(0, now.timeIntervalSince(bucket.at))
            bucket.tokens = min(limit.burst, bucket.tokens + elapsed * limit.rate)
            bucket.at = now
            guard bucket.tokens >= cost else {
                buckets[key] = bucket
                return limit.rate > 0 ? (cost - bucket.tokens) / limit.rate : .infinity
            }
            bucket.tokens -= cost
            buckets[key] = bucket
            if buckets.count > maximumKeys {
                buckets = buckets.filter { $0.value.tokens + now.timeIntervalSince($0.value.at) * limit.rate < limit.burst }
            }
            return nil
        }
    }

    /// A wait as a refusal says it: "250 ms", "3 s".
    public static func describe(wait: TimeInterval) -> String {
        wait < 1 ? "\(Int((wait * 1000).rounded(.up))) ms" : "\(Int(wait.rounded(.up))) s"
    }

    /// Buckets held now.
    public var keys: Int { buckets.withLock { $0.count } }
}
