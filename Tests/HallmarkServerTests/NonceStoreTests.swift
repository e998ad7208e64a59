// Attestation nonces are single-use, bound to one agent, and expire (on an injected clock).

import Foundation
@testable import HallmarkServer
import HallmarkTestSupport
import Testing

@Suite("attestation nonces")
struct NonceStoreTests {
    @Test("a nonce is spent once, only by its agent, and only before it expires")
    func singleUse() async throws {
        let clock = ManualClock()
        let store = NonceStore(ttl: 60, clock: clock.function)
        let nonce = await store.issue(for: "agent-a")
        #expect(nonce.count == 32)
        let other = await #expect(throws: NonceError.self) { try await store.consume(nonce, for: "agent-b") }
        #expect(other?.description.contains("issued to another agent") == true)
        #expect(other?.code == .unknown)
        // The wrong agent's attempt spent it too: a stolen nonce is no use to anyone.
        await #expect(throws: NonceError.self) { try await store.consume(nonce, for: "agent-a") }

        let fresh = await store.issue(for: "agent-a")
        try await store.consume(fresh, for: "agent-a")
        let replayed = await #expect(throws: NonceError.self) { try await store.consume(fresh, for: "agent-a") }
        #expect(replayed?.description.contains("already used") == true)
        #expect(replayed?.code == .unknown, "a replay must look like an unknown nonce")

        let late = await store.issue(for: "agent-a")
        clock.advance(by: 61)
        let expired = await #expect(throws: NonceError.self) { try await store.consume(late, for: "agent-a") }
        #expect(expired?.description.contains("expired") == true)
        #expect(expired?.code == .expired)
        #expect(await store.issue(for: "agent-a") != (await store.issue(for: "agent-a")))
    }
}
