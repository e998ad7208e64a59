// The token bucket behind every per-uid and per-agent rate limit: a burst at once, then the rate;
// keys apart; a refusal that says how long to wait; a table no caller can grow without bound.

import Foundation
import HallmarkSupport
import Synchronization
import Testing

@Suite("rate limiter")
struct RateLimiterTests {
    final class Clock: Sendable {
        let time = Mutex(Date(timeIntervalSince1970: 1_800_000_000))
        var now: Date { time.withLock { $0 } }
        func advance(_ seconds: TimeInterval) { time.withLock { $0 = $0.addingTimeInterval(seconds) } }
    }

    @Test("a burst is spent at once; then one token every 1/rate seconds; the refusal names the wait")
    func burstThenRate() {
        let clock = Clock()
        let limiter = RateLimiter<String>(.init(rate: 2, burst: 3), clock: { clock.now })
        for _ in 0..<3 { #expect(limiter.take("a") == nil) }
        let wait = limiter.take("a")
        #expect(wait.map { abs($0 - 0.5) < 1e-9 } == true, "wait \(String(describing: wait))")
        clock.advance(0.25)
        #expect(limiter.take("a").map { abs($0 - 0.25) < 1e-9 } == true, "a refusal spends nothing")
        clock.advance(0.25)
        #expect(limiter.take("a") == nil)
        #expect(limiter.take("a") != nil)
        // A quiet spell refills to the burst, never beyond it.
        clock.advance(3600)
        for _ in 0..<3 { #expect(limiter.take("a") == nil) }
        #expect(limiter.take("a") != nil)
    }

    @Test("each key has its own bucket")
    func keysApart() {
        let clock = Clock()
        let limiter = RateLimiter<UInt32>(.init(rate: 1, burst: 1), clock: { clock.now })
        #expect(limiter.take(1000) == nil)
        #expect(limiter.take(1000) != nil)
        #expect(limiter.take(1001) == nil, "another uid is not charged for the first one's spending")
    }

    @Test("a cost above the tokens held is refused whole")
    func cost() {
        let clock = Clock()
        let limiter = RateLimiter<String>(.init(rate: 10, burst: 5), clock: { clock.now })
        #expect(limiter.take("agent", cost: 4) == nil)
        #expect(limiter.take("agent", cost: 2).map { abs($0 - 0.1) < 1e-9 } == true)
        #expect(limiter.take("agent", cost: 1) == nil, "the refused cost was not spent")
    }

    @Test("past the key limit, buckets as full as a new one are forgotten; a spent one is kept")
    func boundedTable() {
        let clock = Clock()
        let limiter = RateLimiter<Int>(.init(rate: 1, burst: 2), maximumKeys: 100, clock: { clock.now })
        #expect(limiter.take(0, cost: 2) == nil)
        // 1,000 callers each spend one token; a second later each is full again.
        for key in 1...1000 {
            #expect(limiter.take(key) == nil)
            clock.advance(1)
        }
        #expect(limiter.keys <= 101, "the table grew to \(limiter.keys)")
        // Key 0 spent its burst; forgetting it would refill it. A fresh spend shows it kept.
        clock.time.withLock { $0 = Date(timeIntervalSince1970: 0) }
        let kept = RateLimiter<Int>(.init(rate: 0.001, burst: 2), maximumKeys: 10, clock: { clock.now })
        #expect(kept.take(0, cost: 2) == nil)
        for key in 1...100 { #expect(kept.take(key, cost: 0) == nil) }
        #expect(kept.take(0) != nil, "an exhausted key was forgotten and so refilled")
        #expect(kept.keys <= 11)
    }

    @Test("the limit describes itself as its flags are read", arguments: [
        (RateLimiter<Int>.Limit(rate: 10, burst: 50), "10 a second (bursts of 50)"),
        (RateLimiter<Int>.Limit(rate: 0.5, burst: 1), "0.5 a second (bursts of 1)"),
    ])
    func description(limit: RateLimiter<Int>.Limit, expected: String) {
        #expect(limit.description == expected)
    }
}
