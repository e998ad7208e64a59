// Ban and evict cannot be undone by a race. The server's agent API is driven in-process on a store
// that pauses each node write until the test lets it go, so the interleavings an attacker would aim
// for (an attestation held open at its challenge and answered after a ban; a renewal landing beside
// an eviction) happen deterministically, with no sleeping.

import Foundation
@testable import HallmarkServer
import HallmarkAttestation
import HallmarkStore
import HallmarkSupport
import HallmarkTestSupport
import Logging
import SPIFFE
import Synchronization
import Testing

@Suite("node writes under races")
struct NodeWriteRaceTests {
    struct Fixture {
        let dir: TemporaryDirectory
        let inner: SQLiteStore
        let store: PausingStore
        let service: AgentService

        init() async throws {
            dir = try TemporaryDirectory("races")
            inner = try SQLiteStore(path: dir.path("hallmark.db"))
            store = PausingStore(inner)
            let config = ServerConfig(dataDir: dir.url.path, trustDomain: try TrustDomain("example.org"))
            let logger = Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() })
            let ca = CAManager(config: config, store: store, logger: logger)
            try await ca.start()
            service = AgentService(
                config: config, store: store, index: EntryIndex(store: store), ca: ca, events: Broadcast(), logger: logger, now: { Date() },
                nonces: NonceStore(ttl: 60, clock: { Date() }), limiter: AttestationLimiter(clock: { Date() }), signing: .init(config)
            )
        }

        func attested(_ id: SPIFFEID) -> AttestedIdentity {
            AttestedIdentity(id: id, nonce: [], selectors: [], data: [], detail: "test")
        }
    }

    static let agent = try! SPIFFEID(parsing: "spiffe://example.org/hallmark/agent/tpm/0123")
    static func audit(_ action: String) -> AuditEvent { AuditEvent(actor: .admin(uid: 0), action: action, target: agent.description) }

    @Test("an attestation answered after a ban does not unban the node")
    func attestAfterBan() async throws {
        let fixture = try await Fixture()
        let first = try await fixture.service.admit(fixture.attested(Self.agent), method: "tpm", csr: try SVIDRequest().csr, gpu: ([], ""))
        #expect(!first.node.banned)

        // The node attests again; its write waits while the admin bans it.
        fixture.store.pauseNextNodeWrite()
        let csr = try SVIDRequest().csr
        let again = Task { try await fixture.service.admit(fixture.attested(Self.agent), method: "tpm", csr: csr, gpu: ([], "")) }
        await fixture.store.waitUntilPaused()
        _ = try await fixture.inner.setAttestedNodeBanned(Self.agent, true, audit: Self.audit("agent.ban"))
        fixture.store.resume()
        let refusal = await #expect(throws: (any Error).self) { _ = try await again.value }
        #expect("\(refusal.map { String(describing: $0) } ?? "")".contains("banned"))
        #expect(try await fixture.inner.attestedNode(Self.agent)?.banned == true)
        let audit = try await fixture.inner.auditRecords(after: 0, limit: 100).map(\.event)
        #expect(audit.contains { $0.action == "agent.attest" && $0.result == "refused" && $0.detail.contains("banned") })
    }

    enum Withdrawal: String, CaseIterable, Sendable { case evict, ban }

    @Test("a renewal that lands beside an eviction or a ban does not trust the node again", arguments: Withdrawal.allCases)
    func renewBesideWithdrawal(_ withdrawal: Withdrawal) async throws {
        let fixture = try await Fixture()
        let node = try await fixture.service.admit(fixture.attested(Self.agent), method: "tpm", csr: try SVIDRequest().csr, gpu: ([], "")).node

        fixture.store.pauseNextNodeWrite()
        let csr = try SVIDRequest().csr
        let renewal = Task { try await fixture.service.renew(node, csr: csr) }
        await fixture.store.waitUntilPaused()
        switch withdrawal {
        case .evict: _ = try await fixture.inner.deleteAttestedNode(Self.agent, audit: Self.audit("agent.evict"))
        case .ban: _ = try await fixture.inner.setAttestedNodeBanned(Self.agent, true, audit: Self.audit("agent.ban"))
        }
        fixture.store.resume()
        await #expect(throws: (any Error).self) { _ = try await renewal.value }
        let stored = try await fixture.inner.attestedNode(Self.agent)
        switch withdrawal {
        case .evict: #expect(stored == nil, "the evicted node stays evicted")
        case .ban: #expect(stored?.banned == true && stored?.serialNumber == "", "still banned, and no SVID serial accepted")
        }
    }

    @Test("a second node presenting a GPU another live node holds is refused and audited, until the first is evicted")
    func oneGPUOneNode() async throws {
        let fixture = try await Fixture()
        let gpu: (selectors: [Selector], detail: String) = ([try Selector(parsing: "gpu:ueid:41FFEEB20009E0BE49"), try Selector(parsing: "gpu:model:GH100")], "gpu")
        _ = try await fixture.service.admit(fixture.attested(Self.agent), method: "tpm", csr: try SVIDRequest().csr, gpu: gpu)
        let thief = try SPIFFEID(parsing: "spiffe://example.org/hallmark/agent/tpm/4567")
        let refusal = await #expect(throws: (any Error).self) {
            _ = try await fixture.service.admit(fixture.attested(thief), method: "tpm", csr: try SVIDRequest().csr, gpu: gpu)
        }
        #expect(String(describing: refusal).contains("gpu:ueid:41FFEEB20009E0BE49"), "\(String(describing: refusal))")
        #expect(try await fixture.inner.attestedNode(thief) == nil)
        let audit = try await fixture.inner.auditRecords(after: 0, limit: 100).map(\.event)
        #expect(audit.contains { $0.target == thief.description && $0.result == "refused" && $0.detail.contains("already held") })
        _ = try await fixture.inner.deleteAttestedNode(Self.agent, audit: Self.audit("agent.evict"))
        _ = try await fixture.service.admit(fixture.attested(thief), method: "tpm", csr: try SVIDRequest().csr, gpu: gpu)
        #expect(try await fixture.inner.attestedNode(thief) != nil)
    }
}

/// A store whose next attested-node write waits until the test resumes it.
final class PausingStore: Store {
    let inner: any Store
    private let state = Mutex<(armed: Bool, paused: CheckedContinuation<Void, Never>?, arrived: CheckedContinuation<Void, Never>?, hasArrived: Bool)>((false, nil, nil, false))

    init(_ inner: any Store) { self.inner = inner }

    func pauseNextNodeWrite() { state.withLock { $0.armed = true; $0.hasArrived = false } }

    func waitUntilPaused() async {
        await withCheckedContinuation { continuation in
            let already = state.withLock { state -> Bool in
                if state.hasArrived { return true }
                state.arrived = continuation
                return false
            }
            if already { continuation.resume() }
        }
    }

    func resume() { state.withLock { $0.paused?.resume(); $0.paused = nil } }

    private func gate() async {
        await withCheckedContinuation { continuation in
            let pause = state.withLock { state -> Bool in
                guard state.armed else { return false }
                state.armed = false
                state.hasArrived = true
                state.paused = continuation
                state.arrived?.resume()
                state.arrived = nil
                return true
            }
            if !pause { continuation.resume() }
        }
    }

    func admitAttestedNode(_ node: AttestedNode, exclusive: [Selector], audit: AuditEvent) async throws {
        await gate()
        try await inner.admitAttestedNode(node, exclusive: exclusive, audit: audit)
    }
    func updateAttestedNode(_ node: AttestedNode, expectedSerial: String, audit: AuditEvent) async throws {
        await gate()
        try await inner.updateAttestedNode(node, expectedSerial: expectedSerial, audit: audit)
    }
    func setHeldAuthorities(_ spiffeID: SPIFFEID, _ authorityIDs: [String], expectedSerial: String) async throws {
        try await inner.setHeldAuthorities(spiffeID, authorityIDs, expectedSerial: expectedSerial)
    }
    func setAttestedNodeBanned(_ spiffeID: SPIFFEID, _ banned: Bool, audit: AuditEvent) async throws -> AttestedNode {
        try await inner.setAttestedNodeBanned(spiffeID, banned, audit: audit)
    }
    func attestedNode(_ spiffeID: SPIFFEID) async throws -> AttestedNode? { try await inner.attestedNode(spiffeID) }
    func attestedNodes() async throws -> [AttestedNode] { try await inner.attestedNodes() }
    func attestedNodes(evidenceBefore time: Date) async throws -> [AttestedNode] { try await inner.attestedNodes(evidenceBefore: time) }
    func evictAttestedNode(_ spiffeID: SPIFFEID, evidenceBefore time: Date, audit: AuditEvent) async throws -> AttestedNode? {
        try await inner.evictAttestedNode(spiffeID, evidenceBefore: time, audit: audit)
    }
    func deleteAttestedNode(_ spiffeID: SPIFFEID, audit: AuditEvent) async throws -> AttestedNode { try await inner.deleteAttestedNode(spiffeID, audit: audit) }

    func createEntry(_ entry: RegistrationEntry, audit: AuditEvent) async throws -> RegistrationEntry { try await inner.createEntry(entry, audit: audit) }
    func updateEntry(_ entry: RegistrationEntry, audit: AuditEvent) async throws -> RegistrationEntry { try await inner.updateEntry(entry, audit: audit) }
    func deleteEntry(id: String, audit: AuditEvent) async throws -> RegistrationEntry { try await inner.deleteEntry(id: id, audit: audit) }
    func entries(matching filter: EntryFilter) async throws -> [RegistrationEntry] { try await inner.entries(matching: filter) }
    func descendants(of roots: [SPIFFEID]) async throws -> [RegistrationEntry] { try await inner.descendants(of: roots) }
    func allEntries() async throws -> EntrySnapshot { try await inner.allEntries() }
    func entryChanges(after sequence: Int64) async throws -> EntrySnapshot { try await inner.entryChanges(after: sequence) }
    func pruneExpiredEntries(at time: Date) async throws -> [RegistrationEntry] { try await inner.pruneExpiredEntries(at: time) }
    func createJoinToken(_ token: JoinTokenRecord, audit: AuditEvent) async throws { try await inner.createJoinToken(token, audit: audit) }
    func redeemJoinToken(hash: [UInt8], at time: Date) async throws -> JoinTokenRecord { try await inner.redeemJoinToken(hash: hash, at: time) }
    func authorities() async throws -> [AuthorityRecord] { try await inner.authorities() }
    func saveAuthority(_ authority: AuthorityRecord, audit: AuditEvent) async throws { try await inner.saveAuthority(authority, audit: audit) }
    func bundleSequence() async throws -> UInt64 { try await inner.bundleSequence() }
    func nextBundleSequence(audit: [AuditEvent]) async throws -> UInt64 { try await inner.nextBundleSequence(audit: audit) }
    func appendAudit(_ events: [AuditEvent]) async throws { try await inner.appendAudit(events) }
    func auditRecords(after sequence: Int64, limit: Int) async throws -> [AuditRecord] { try await inner.auditRecords(after: sequence, limit: limit) }
    func verifyAudit(trust: AuditTrust?) async throws -> AuditVerification { try await inner.verifyAudit(trust: trust) }
    func checkpointAudit(at time: Date) async throws -> AuditCheckpoint? { try await inner.checkpointAudit(at: time) }
    func auditCheckpoints() async throws -> [AuditCheckpoint] { try await inner.auditCheckpoints() }
    func latestChange() async throws -> Int64 { try await inner.latestChange() }
    func changes(after sequence: Int64) async throws -> [Change] { try await inner.changes(after: sequence) }
}
