// Failed attestations are counted per peer host over a sliding minute (on an injected clock).

import Foundation
@testable import HallmarkServer
import HallmarkTestSupport
import Testing

@Suite("attestation rate limit")
struct AttestationLimiterTests {
    @Test("ten failures turn a host away until the oldest leaves the window; other hosts and successes are unaffected")
    func slidingWindow() async {
        let clock = ManualClock()
        let limiter = AttestationLimiter(limit: 10, window: 60, clock: clock.function)
        for attempt in 0..<10 {
            #expect(await limiter.retryAfter("ipv4:10.0.0.1:\(40000 + attempt)") == nil, "attempt \(attempt)")
            await limiter.recordFailure("ipv4:10.0.0.1:\(40000 + attempt)")
            clock.advance(by: 1)
        }
        // Another port of the same host is the same peer; another host is not.
        #expect(await limiter.retryAfter("ipv4:10.0.0.1:50000") == 50)
        #expect(await limiter.retryAfter("ipv4:10.0.0.2:50000") == nil)
        clock.advance(by: 49)
        #expect(await limiter.retryAfter("ipv4:10.0.0.1:1") == 1)
        clock.advance(by: 1)
        // The first failure has left the window: nine remain, one more try is allowed.
        #expect(await limiter.retryAfter("ipv4:10.0.0.1:1") == nil)
        await limiter.recordFailure("ipv4:10.0.0.1:1")
        #expect(await limiter.retryAfter("ipv4:10.0.0.1:1") != nil)
    }

    @Test("the host of a peer address: IPv4 and IPv6 without the port, anything else as it is")
    func hosts() {
        #expect(AttestationLimiter.host(of: "ipv4:127.0.0.1:47816") == "ipv4:127.0.0.1")
        #expect(AttestationLimiter.host(of: "ipv6:[::1]:443") == "ipv6:[::1]")
        #expect(AttestationLimiter.host(of: "unix:/run/x.sock") == "unix:/run/x.sock")
    }
}
