// The agent's JWT-SVID cache: keyed so that different audiences never share a token, and bounded,
// so that a workload asking for endless new audiences cannot grow the agent without limit.

import Foundation
import HallmarkAgent
import Testing

@Suite("agent JWT-SVID cache")
struct JWTCacheTests {
    static let now = Date(timeIntervalSince1970: 1_800_000_000)

    @Test("the audience is a set of strings: [\"a|b\"] and [\"a\", \"b\"] are different requests; order does not matter")
    func keysDoNotCollide() {
        let cache = AgentCache()
        cache.storeJWT(entryID: "e1", audience: ["a|b"], token: "token-for-a|b", issuedAt: Self.now, expiresAt: Self.now.addingTimeInterval(300))
        #expect(cache.jwt(entryID: "e1", audience: ["a", "b"], at: Self.now) == nil)
        #expect(cache.jwt(entryID: "e1|a", audience: ["b"], at: Self.now) == nil)
        #expect(cache.jwt(entryID: "e1", audience: ["a|b"], at: Self.now) == "token-for-a|b")
        cache.storeJWT(entryID: "e1", audience: ["a", "b"], token: "token-for-a,b", issuedAt: Self.now, expiresAt: Self.now.addingTimeInterval(300))
        #expect(cache.jwt(entryID: "e1", audience: ["b", "a"], at: Self.now) == "token-for-a,b")
        #expect(cache.jwt(entryID: "e1", audience: ["a|b"], at: Self.now) == "token-for-a|b")
    }

    @Test("the cache holds at most its capacity and drops the least recently used first")
    func bounded() {
        let cache = AgentCache()
        let life = Self.now.addingTimeInterval(300)
        cache.storeJWT(entryID: "e", audience: ["kept"], token: "kept", issuedAt: Self.now, expiresAt: life)
        cache.storeJWT(entryID: "e", audience: ["dropped"], token: "dropped", issuedAt: Self.now, expiresAt: life)
        for index in 0..<(AgentCache.jwtCapacity - 2) {
            cache.storeJWT(entryID: "e", audience: ["audience-\(index)"], token: "t\(index)", issuedAt: Self.now, expiresAt: life)
        }
        #expect(cache.jwtCount == AgentCache.jwtCapacity)
        #expect(cache.jwt(entryID: "e", audience: ["kept"], at: Self.now) == "kept", "a use makes it recent")
        cache.storeJWT(entryID: "e", audience: ["one more"], token: "one more", issuedAt: Self.now, expiresAt: life)
        #expect(cache.jwtCount <= AgentCache.jwtCapacity)
        #expect(cache.jwt(entryID: "e", audience: ["kept"], at: Self.now) == "kept")
        #expect(cache.jwt(entryID: "e", audience: ["dropped"], at: Self.now) == nil)
        #expect(cache.jwt(entryID: "e", audience: ["one more"], at: Self.now) == "one more")
    }
}
