// How long evidence counts, on an injected clock: a TPM node's quote and a GPU node's evidence
// age out unless presented again, the shorter limit governs a node with both, a join-token node
// has nothing to present again, and a node that re-attested between look-up and eviction is kept.

import Foundation
@testable import HallmarkServer
import HallmarkAttestation
import HallmarkStore
import HallmarkTestSupport
import SPIFFE
import Testing

@Suite("evidence age")
struct EvidenceAgeTests {
    static func node(_ name: String, type: String, selectors: [String], at time: Date) throws -> AttestedNode {
        AttestedNode(
            spiffeID: try SPIFFEID(parsing: "spiffe://example.org/hallmark/agent/\(type)/\(name)"), attestationType: type, serialNumber: name,
            expiresAt: time.addingTimeInterval(86400), attestedAt: time, selectors: try selectors.map { try Selector(parsing: $0) }
        )
    }

    @Test("nodes lose their identity once their evidence outlives its limit, unless they re-attest")
    func agesOut() async throws {
        let dir = try TemporaryDirectory("evidence")
        let store = try SQLiteStore(path: dir.path("hallmark.db"))
        var config = ServerConfig(dataDir: dir.url.path, trustDomain: try TrustDomain("example.org"))
        config.tpmReattestMaxAge = 900
        config.gpuReattestMaxAge = 600
        let age = EvidenceAge(config)
        let clock = ManualClock()
        let start = clock.now
        let tpm = try Self.node("tpm1", type: "tpm", selectors: ["tpm:pcr:sha256:7:00"], at: start)
        let gpu = try Self.node("gpu1", type: "join-token", selectors: ["gpu:ueid:A"], at: start)
        let both = try Self.node("both1", type: "tpm", selectors: ["gpu:ueid:B"], at: start)
        let plain = try Self.node("plain1", type: "join-token", selectors: [], at: start)
        for node in [tpm, gpu, both, plain] {
            try await store.admitAttestedNode(node, exclusive: [], audit: AuditEvent(time: start, actor: .server, action: "agent.attest", target: node.spiffeID.description))
        }
        #expect(age.limit(for: plain) == nil)
        #expect(age.limit(for: both)?.maxAge == 600 && age.limit(for: both)?.evidence == "GPU evidence")

        clock.advance(by: 600)
        #expect(try await age.evictStale(store: store, at: clock.now).isEmpty, "at exactly the limit, evidence still counts")
        clock.advance(by: 1)
        #expect(Set(try await age.evictStale(store: store, at: clock.now).map(\.spiffeID)) == [gpu.spiffeID, both.spiffeID])
        #expect(age.staleness(of: tpm, at: clock.now) == nil)

        // The TPM node quotes again at 800 s: it counts from then.
        clock.set(start.addingTimeInterval(800))
        var requoted = tpm
        requoted.evidenceAt = clock.now
        try await store.updateAttestedNode(requoted, expectedSerial: tpm.serialNumber, audit: AuditEvent(time: clock.now, actor: .server, action: "agent.reattest", target: tpm.spiffeID.description))
        clock.set(start.addingTimeInterval(1000))
        #expect(try await age.evictStale(store: store, at: clock.now).isEmpty)
        clock.set(start.addingTimeInterval(1701))
        #expect(try await age.evictStale(store: store, at: clock.now).map(\.spiffeID) == [tpm.spiffeID])
        #expect(age.staleness(of: requoted, at: clock.now)?.contains("901 s old, more than the 900 s allowed") == true)

        clock.advance(by: 86400 * 30)
        #expect(try await age.evictStale(store: store, at: clock.now).isEmpty, "a join-token node has nothing to present again")
        #expect(try await store.attestedNodes().map(\.spiffeID) == [plain.spiffeID])
        let audit = try await store.auditRecords(after: 0, limit: 100).map(\.event).filter { $0.action == "agent.evict" }
        #expect(audit.count == 3 && audit.allSatisfy { $0.result == "evidence expired" && $0.detail.contains("did not re-attest") })
    }

    @Test("a node that re-attests between the sweep's look-up and its eviction is kept")
    func reattestedMeanwhile() async throws {
        let dir = try TemporaryDirectory("evidence")
        let store = try SQLiteStore(path: dir.path("hallmark.db"))
        let start = TestClock.now
        let node = try Self.node("tpm2", type: "tpm", selectors: [], at: start)
        try await store.admitAttestedNode(node, exclusive: [], audit: AuditEvent(time: start, actor: .server, action: "agent.attest", target: node.spiffeID.description))
        let stale = try await store.attestedNodes(evidenceBefore: start.addingTimeInterval(10))
        #expect(stale.map(\.spiffeID) == [node.spiffeID])
        var requoted = node
        requoted.evidenceAt = start.addingTimeInterval(20)
        try await store.updateAttestedNode(requoted, expectedSerial: node.serialNumber, audit: AuditEvent(time: start, actor: .server, action: "agent.reattest", target: node.spiffeID.description))
        let evicted = try await store.evictAttestedNode(node.spiffeID, evidenceBefore: start.addingTimeInterval(10), audit: AuditEvent(time: start, actor: .server, action: "agent.evict", target: node.spiffeID.description))
        #expect(evicted == nil)
        #expect(try await store.attestedNode(node.spiffeID)?.evidenceAt == requoted.evidenceAt)
    }
}
