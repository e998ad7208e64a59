// The conformance suite every Store backend must pass. Each test runs against every backend in
// `StoreBackends.all`; a PostgreSQL backend joins by adding itself there.

import Foundation
import Testing
import HallmarkAttestation
import HallmarkStore
import HallmarkTestSupport
import SPIFFE

struct StoreBackend: Sendable, CustomStringConvertible {
    let description: String
    let make: @Sendable (TemporaryDirectory) throws -> any Store
}

enum StoreBackends {
    static let all: [StoreBackend] = [
        StoreBackend(description: "SQLite") { dir in try SQLiteStore(path: dir.path("store.db")) }
    ]
}

@Suite("Store conformance")
struct StoreConformanceTests {
    static let now = TestClock.now

    static func entry(_ path: String, parent: String = "/node/a", selectors: [String] = ["unix:uid:1000"]) throws -> RegistrationEntry {
        RegistrationEntry(
            spiffeID: try SPIFFEID(parsing: "spiffe://example.org\(path)"), parentID: try SPIFFEID(parsing: "spiffe://example.org\(parent)"),
            selectors: try selectors.map(Selector.init(parsing:)), x509SVIDTTL: 600, dnsNames: ["a.example.org", "b.example.org"],
            hint: "h", createdAt: now
        )
    }

    /// A distinct entry per index: its own SPIFFE ID and uid selector.
    static func entryWithID(index: Int) throws -> RegistrationEntry {
        try entry("/bulk/\(index)", selectors: ["unix:uid:\(index)"])
    }

    static func audit(_ action: String, _ target: String = "t") -> AuditEvent {
        AuditEvent(time: now, actor: .admin(uid: 0), action: action, target: target)
    }

    @Test("an entry round-trips with every field", arguments: StoreBackends.all)
    func entryRoundTrip(_ backend: StoreBackend) async throws {
        let dir = try TemporaryDirectory("store")
        defer { withExtendedLifetime(dir) {} }
        let store = try backend.make(dir)
        var entry = try Self.entry("/model/llama", selectors: ["unix:uid:1000", "gpu:model:H100"])
        entry.expiresAt = Self.now.addingTimeInterval(3600)
        entry.admin = true
        _ = try await store.createEntry(entry, audit: Self.audit("entry.create"))
        let fetched = try await store.entries(matching: EntryFilter(id: entry.id))
        #expect(fetched == [entry])
    }

    @Test("filters by SPIFFE ID, parent and selectors", arguments: StoreBackends.all)
    func filters(_ backend: StoreBackend) async throws {
        let dir = try TemporaryDirectory("store")
        defer { withExtendedLifetime(dir) {} }
        let store = try backend.make(dir)
        let a = try Self.entry("/a", parent: "/node/1", selectors: ["unix:uid:1", "unix:gid:1"])
        let b = try Self.entry("/b", parent: "/node/1", selectors: ["unix:uid:2"])
        let c = try Self.entry("/a", parent: "/node/2", selectors: ["unix:uid:1"])
        for entry in [a, b, c] { _ = try await store.createEntry(entry, audit: Self.audit("entry.create")) }
        #expect(Set(try await store.entries(matching: .all).map(\.id)) == [a.id, b.id, c.id])
        #expect(Set(try await store.entries(matching: EntryFilter(spiffeID: a.spiffeID)).map(\.id)) == [a.id, c.id])
        #expect(try await store.entries(matching: EntryFilter(parentID: b.parentID)).map(\.id).sorted() == [a.id, b.id].sorted())
        let bothSelectors = EntryFilter(selectors: [try Selector(parsing: "unix:uid:1"), try Selector(parsing: "unix:gid:1")])
        #expect(try await store.entries(matching: bothSelectors).map(\.id) == [a.id])
        #expect(try await store.entries(matching: EntryFilter(id: "nope")).isEmpty)
        // Any of several parents, with selectors and DNS names intact; none given, none found.
        let either = try await store.entries(matching: EntryFilter(parentIDs: [a.parentID, c.parentID, try SPIFFEID(parsing: "spiffe://example.org/x")]))
        #expect(Set(either.map(\.id)) == [a.id, b.id, c.id])
        #expect(either.first { $0.id == a.id } == a)
        #expect(try await store.entries(matching: EntryFilter(parentIDs: [c.parentID])).map(\.id) == [c.id])
        #expect(try await store.entries(matching: EntryFilter(parentID: a.parentID, parentIDs: [c.parentID])).isEmpty)
        #expect(try await store.entries(matching: EntryFilter(parentIDs: [])).isEmpty)
    }

    @Test("descendants: every level under the roots once, through cycles, nothing beside them", arguments: StoreBackends.all)
    func descendants(_ backend: StoreBackend) async throws {
        let dir = try TemporaryDirectory("store")
        defer { withExtendedLifetime(dir) {} }
        let store = try backend.make(dir)
        let child = try Self.entry("/child", parent: "/node/a")
        let grandchild = try Self.entry("/grandchild", parent: "/child")
        // Its ID is the root's: the walk must not go round again.
        let cycle = try Self.entry("/node/a", parent: "/grandchild")
        let other = try Self.entry("/other", parent: "/node/b")
        let wide = try (0..<600).map { try Self.entry("/wide/\($0)", parent: "/child", selectors: ["unix:uid:\($0)"]) }
        for entry in [child, grandchild, cycle, other] + wide { _ = try await store.createEntry(entry, audit: Self.audit("entry.create")) }
        let found = try await store.descendants(of: [try SPIFFEID(parsing: "spiffe://example.org/node/a")])
        #expect(found.count == 603)
        #expect(Set(found.map(\.id)) == Set([child, grandchild, cycle].map(\.id) + wide.map(\.id)))
        #expect(found.first == child)
        #expect(try await store.descendants(of: []).isEmpty)
    }

    @Test("an identical entry is refused as already existing, whatever the selector order", arguments: StoreBackends.all)
    func duplicate(_ backend: StoreBackend) async throws {
        let dir = try TemporaryDirectory("store")
        defer { withExtendedLifetime(dir) {} }
        let store = try backend.make(dir)
        _ = try await store.createEntry(try Self.entry("/a", selectors: ["x:1", "y:2"]), audit: Self.audit("entry.create"))
        await #expect(throws: StoreError.self) {
            try await store.createEntry(try Self.entry("/a", selectors: ["y:2", "x:1"]), audit: Self.audit("entry.create"))
        }
        // A different selector set is a different entry.
        _ = try await store.createEntry(try Self.entry("/a", selectors: ["x:1"]), audit: Self.audit("entry.create"))
        #expect(try await store.entries(matching: .all).count == 2)
        #expect(try await store.auditRecords(after: 0, limit: 10).count == 2, "a refused write is not audited")
    }

    @Test("update bumps the revision and honours the expected one", arguments: StoreBackends.all)
    func update(_ backend: StoreBackend) async throws {
        let dir = try TemporaryDirectory("store")
        defer { withExtendedLifetime(dir) {} }
        let store = try backend.make(dir)
        var entry = try Self.entry("/a")
        _ = try await store.createEntry(entry, audit: Self.audit("entry.create"))
        entry.selectors = [try Selector(parsing: "unix:uid:7")]
        entry.dnsNames = []
        let updated = try await store.updateEntry(entry, audit: Self.audit("entry.update"))
        #expect(updated.revisionNumber == 1)
        #expect(try await store.entries(matching: EntryFilter(id: entry.id)) == [updated])
        var stale = updated
        stale.revisionNumber = 7
        let error = await #expect(throws: StoreError.self) { try await store.updateEntry(stale, audit: Self.audit("entry.update")) }
        #expect(error?.code == .revisionMismatch)
        var missing = updated
        missing.id = "missing"
        let notFound = await #expect(throws: StoreError.self) { try await store.updateEntry(missing, audit: Self.audit("entry.update")) }
        #expect(notFound?.code == .notFound)
    }

    @Test("delete removes the entry, its selectors and DNS names", arguments: StoreBackends.all)
    func delete(_ backend: StoreBackend) async throws {
        let dir = try TemporaryDirectory("store")
        defer { withExtendedLifetime(dir) {} }
        let store = try backend.make(dir)
        let entry = try Self.entry("/a")
        _ = try await store.createEntry(entry, audit: Self.audit("entry.create"))
        #expect(try await store.deleteEntry(id: entry.id, audit: Self.audit("entry.delete")) == entry)
        #expect(try await store.entries(matching: .all).isEmpty)
        #expect(try await store.entries(matching: EntryFilter(selectors: entry.selectors)).isEmpty)
        let error = await #expect(throws: StoreError.self) { try await store.deleteEntry(id: entry.id, audit: Self.audit("entry.delete")) }
        #expect(error?.code == .notFound)
        // The same entry can be created again afterwards.
        _ = try await store.createEntry(entry, audit: Self.audit("entry.create"))
    }

    @Test("expired entries are pruned and audited", arguments: StoreBackends.all)
    func prune(_ backend: StoreBackend) async throws {
        let dir = try TemporaryDirectory("store")
        defer { withExtendedLifetime(dir) {} }
        let store = try backend.make(dir)
        var soon = try Self.entry("/soon")
        soon.expiresAt = Self.now.addingTimeInterval(60)
        let never = try Self.entry("/never")
        _ = try await store.createEntry(soon, audit: Self.audit("entry.create"))
        _ = try await store.createEntry(never, audit: Self.audit("entry.create"))
        #expect(try await store.pruneExpiredEntries(at: Self.now).isEmpty)
        #expect(try await store.pruneExpiredEntries(at: Self.now.addingTimeInterval(60)).map(\.id) == [soon.id])
        #expect(try await store.entries(matching: .all).map(\.id) == [never.id])
        #expect(try await store.auditRecords(after: 0, limit: 10).last?.event.action == "entry.expire")
    }

    @Test("a join token is single-use and expires", arguments: StoreBackends.all)
    func joinTokens(_ backend: StoreBackend) async throws {
        let dir = try TemporaryDirectory("store")
        defer { withExtendedLifetime(dir) {} }
        let store = try backend.make(dir)
        let token = JoinToken.generate()
        let record = JoinTokenRecord(
            id: JoinToken.id(of: token), tokenHash: JoinToken.hash(token), spiffeID: nil,
            expiresAt: Self.now.addingTimeInterval(600), createdAt: Self.now
        )
        try await store.createJoinToken(record, audit: Self.audit("token.create"))
        let redeemed = try await store.redeemJoinToken(hash: JoinToken.hash(token), at: Self.now)
        #expect(redeemed.id == record.id)
        let reuse = await #expect(throws: StoreError.self) { try await store.redeemJoinToken(hash: JoinToken.hash(token), at: Self.now) }
        #expect(reuse?.code == .tokenUsed)
        let unknown = await #expect(throws: StoreError.self) { try await store.redeemJoinToken(hash: JoinToken.hash("nope"), at: Self.now) }
        #expect(unknown?.code == .notFound)

        let late = JoinToken.generate()
        try await store.createJoinToken(
            JoinTokenRecord(id: JoinToken.id(of: late), tokenHash: JoinToken.hash(late), spiffeID: nil, expiresAt: Self.now.addingTimeInterval(600), createdAt: Self.now),
            audit: Self.audit("token.create")
        )
        let expired = await #expect(throws: StoreError.self) {
            try await store.redeemJoinToken(hash: JoinToken.hash(late), at: Self.now.addingTimeInterval(600))
        }
        #expect(expired?.code == .tokenExpired)
    }

    @Test("attested nodes are saved, replaced and listed", arguments: StoreBackends.all)
    func nodes(_ backend: StoreBackend) async throws {
        let dir = try TemporaryDirectory("store")
        defer { withExtendedLifetime(dir) {} }
        let store = try backend.make(dir)
        let id = try SPIFFEID(parsing: "spiffe://example.org/hallmark/agent/join-token/abc")
        var node = AttestedNode(
            spiffeID: id, attestationType: "join-token", serialNumber: "01", expiresAt: Self.now.addingTimeInterval(3600),
            attestedAt: Self.now, selectors: [try Selector(parsing: "join-token:id:abc")], attestationData: [0, 1, 2, 0xff]
        )
        try await store.admitAttestedNode(node, exclusive: [], audit: Self.audit("agent.attest"))
        #expect(try await store.attestedNode(id) == node)
        node.serialNumber = "02"
        node.selectors = []
        try await store.updateAttestedNode(node, expectedSerial: "01", audit: Self.audit("agent.renew"))
        #expect(try await store.attestedNodes() == [node])
        node = try await store.setAttestedNodeBanned(id, true, audit: Self.audit("agent.ban"))
        #expect(node.banned && node.serialNumber == "")
        #expect(try await store.attestedNodes() == [node])
        let changes = try await store.latestChange()
        #expect(try await store.deleteAttestedNode(id, audit: Self.audit("agent.evict")) == node)
        #expect(try await store.attestedNode(id) == nil)
        #expect(try await store.changes(after: changes).map(\.kind) == [.node])
        let again = await #expect(throws: StoreError.self) {
            try await store.deleteAttestedNode(id, audit: Self.audit("agent.evict"))
        }
        #expect(again?.code == .notFound)
        #expect(try await store.auditRecords(after: 0, limit: 10).map(\.event.action) == ["agent.attest", "agent.renew", "agent.ban", "agent.evict"])
    }

    @Test("the authorities a node's workload SVIDs hold: set only for its current SVID, kept by renewals, not audited", arguments: StoreBackends.all)
    func heldAuthorities(_ backend: StoreBackend) async throws {
        let dir = try TemporaryDirectory("store")
        defer { withExtendedLifetime(dir) {} }
        let store = try backend.make(dir)
        let id = try SPIFFEID(parsing: "spiffe://example.org/hallmark/agent/join-token/held")
        var node = AttestedNode(spiffeID: id, attestationType: "join-token", serialNumber: "01", expiresAt: Self.now.addingTimeInterval(3600), attestedAt: Self.now)
        try await store.admitAttestedNode(node, exclusive: [], audit: Self.audit("agent.attest"))
        #expect(try await store.attestedNode(id)?.heldAuthorityIDs == [])
        try await store.setHeldAuthorities(id, ["bb", "aa", "bb"], expectedSerial: "01")
        #expect(try await store.attestedNode(id)?.heldAuthorityIDs == ["aa", "bb"])
        // A renewal decided from a read taken before the report does not undo it.
        node.serialNumber = "02"
        try await store.updateAttestedNode(node, expectedSerial: "01", audit: Self.audit("agent.renew"))
        #expect(try await store.attestedNode(id)?.heldAuthorityIDs == ["aa", "bb"])
        // A report made for a superseded SVID is refused and writes nothing.
        let stale = await #expect(throws: StoreError.self) { try await store.setHeldAuthorities(id, ["cc"], expectedSerial: "01") }
        #expect(stale?.code == .conflict)
        try await store.setHeldAuthorities(id, [], expectedSerial: "02")
        #expect(try await store.attestedNode(id)?.heldAuthorityIDs == [])
        let unknown = await #expect(throws: StoreError.self) {
            try await store.setHeldAuthorities(try SPIFFEID(parsing: "spiffe://example.org/hallmark/agent/join-token/nobody"), ["aa"], expectedSerial: "01")
        }
        #expect(unknown?.code == .notFound)
        #expect(try await store.auditRecords(after: 0, limit: 10).map(\.event.action) == ["agent.attest", "agent.renew"])
    }

    @Test("node writes are compare-and-swap: a decision on a stale read is refused and writes nothing", arguments: StoreBackends.all)
    func nodeCompareAndSwap(_ backend: StoreBackend) async throws {
        let dir = try TemporaryDirectory("store")
        defer { withExtendedLifetime(dir) {} }
        let store = try backend.make(dir)
        let id = try SPIFFEID(parsing: "spiffe://example.org/hallmark/agent/tpm/abc")
        let read = AttestedNode(
            spiffeID: id, attestationType: "tpm", serialNumber: "01", expiresAt: Self.now.addingTimeInterval(3600), attestedAt: Self.now,
            selectors: [try Selector(parsing: "gpu:ueid:GPU-1")]
        )
        try await store.admitAttestedNode(read, exclusive: [], audit: Self.audit("agent.attest"))
        var renewed = read
        renewed.serialNumber = "02"

        // A renewal decided before an eviction does not bring the node back.
        _ = try await store.deleteAttestedNode(id, audit: Self.audit("agent.evict"))
        let evicted = await #expect(throws: StoreError.self) { try await store.updateAttestedNode(renewed, expectedSerial: "01", audit: Self.audit("agent.renew")) }
        #expect(evicted?.code == .notFound)
        #expect(try await store.attestedNode(id) == nil)

        // A renewal decided before a ban does not unban it.
        try await store.admitAttestedNode(read, exclusive: [], audit: Self.audit("agent.attest"))
        _ = try await store.setAttestedNodeBanned(id, true, audit: Self.audit("agent.ban"))
        let banned = await #expect(throws: StoreError.self) { try await store.updateAttestedNode(renewed, expectedSerial: "01", audit: Self.audit("agent.renew")) }
        #expect(banned?.code == .conflict)
        #expect(try await store.attestedNode(id)?.banned == true)
        // Nor does an attestation that was under way when the ban came.
        let admitted = await #expect(throws: StoreError.self) { try await store.admitAttestedNode(read, exclusive: [], audit: Self.audit("agent.attest")) }
        #expect(admitted?.code == .banned)
        #expect(try await store.attestedNode(id)?.banned == true)
        let twice = await #expect(throws: StoreError.self) { _ = try await store.setAttestedNodeBanned(id, true, audit: Self.audit("agent.ban")) }
        #expect(twice?.code == .conflict)
        _ = try await store.setAttestedNodeBanned(id, false, audit: Self.audit("agent.unban"))

        // One GPU backs one node: another node presenting the same UEID is refused until the first is evicted.
        try await store.admitAttestedNode(read, exclusive: [], audit: Self.audit("agent.attest"))
        let otherID = try SPIFFEID(parsing: "spiffe://example.org/hallmark/agent/tpm/def")
        let other = AttestedNode(spiffeID: otherID, attestationType: "tpm", serialNumber: "09", expiresAt: read.expiresAt, attestedAt: Self.now, selectors: read.selectors)
        let held = await #expect(throws: StoreError.self) { try await store.admitAttestedNode(other, exclusive: other.selectors, audit: Self.audit("agent.attest")) }
        #expect(held?.code == .conflict && held?.message.contains(id.description) == true, "\(String(describing: held))")
        #expect(try await store.attestedNode(otherID) == nil)
        // The holder itself attests again freely.
        try await store.admitAttestedNode(read, exclusive: read.selectors, audit: Self.audit("agent.attest"))
        _ = try await store.deleteAttestedNode(id, audit: Self.audit("agent.evict"))
        try await store.admitAttestedNode(other, exclusive: other.selectors, audit: Self.audit("agent.attest"))
        #expect(try await store.attestedNode(otherID) == other)
    }

    @Test("authorities keep their material and change state", arguments: StoreBackends.all)
    func authorities(_ backend: StoreBackend) async throws {
        let dir = try TemporaryDirectory("store")
        defer { withExtendedLifetime(dir) {} }
        let store = try backend.make(dir)
        var record = AuthorityRecord(
            authorityID: "a1", kind: .x509, state: .active, notBefore: Self.now, notAfter: Self.now.addingTimeInterval(86400),
            material: [1, 2, 3], keyFile: "x509-a1.key", createdAt: Self.now
        )
        try await store.saveAuthority(record, audit: Self.audit("authority.activate"))
        record.state = .old
        try await store.saveAuthority(record, audit: Self.audit("authority.retire"))
        #expect(try await store.authorities() == [record])
        #expect(try await store.bundleSequence() == 0)
        #expect(try await store.nextBundleSequence() == 1)
        #expect(try await store.nextBundleSequence() == 2)
        #expect(try await store.bundleSequence() == 2)
    }

    @Test("the audit chain verifies, and names the first record altered", arguments: StoreBackends.all)
    func auditChain(_ backend: StoreBackend) async throws {
        let dir = try TemporaryDirectory("store")
        defer { withExtendedLifetime(dir) {} }
        let store = try backend.make(dir)
        try await store.appendAudit((1...5).map { Self.audit("x509.mint", "t\($0)") })
        let records = try await store.auditRecords(after: 0, limit: 100)
        #expect(records.map(\.sequence) == [1, 2, 3, 4, 5])
        #expect(records[1].previousHash == records[0].hash)
        #expect(try await store.verifyAudit(trust: nil) == AuditVerification(records: 5))

        var altered = records
        altered[2].event.target = "forged"
        #expect(AuditChain.verify(altered).firstBadSequence == 3)
        var removed = records
        removed.remove(at: 1)
        #expect(AuditChain.verify(removed).firstBadSequence == 3)
        var rehashed = records
        rehashed[2].event.target = "forged"
        rehashed[2].hash = AuditChain.hash(sequence: 3, event: rehashed[2].event, previousHash: rehashed[2].previousHash)
        #expect(AuditChain.verify(rehashed).firstBadSequence == 4, "re-hashing one record breaks the next link")
    }

    @Test("every mutation lands in the change log, in order", arguments: StoreBackends.all)
    func changeLog(_ backend: StoreBackend) async throws {
        let dir = try TemporaryDirectory("store")
        defer { withExtendedLifetime(dir) {} }
        let store = try backend.make(dir)
        let start = try await store.latestChange()
        let entry = try Self.entry("/a")
        _ = try await store.createEntry(entry, audit: Self.audit("entry.create"))
        _ = try await store.deleteEntry(id: entry.id, audit: Self.audit("entry.delete"))
        let changes = try await store.changes(after: start)
        #expect(changes.map(\.key) == [entry.id, entry.id])
        #expect(changes.map(\.kind) == [.entry, .entry])
        #expect(try await store.changes(after: changes[0].sequence).count == 1)
    }

    @Test("allEntries: every entry in storage order, at the change log's latest sequence", arguments: StoreBackends.all)
    func allEntries(_ backend: StoreBackend) async throws {
        let dir = try TemporaryDirectory("store")
        defer { withExtendedLifetime(dir) {} }
        let store = try backend.make(dir)
        let empty = try await store.allEntries()
        #expect(empty.entries.isEmpty && empty.removedIDs.isEmpty)
        #expect(empty.sequence == 0)
        let first = try Self.entry("/first")
        var second = try Self.entry("/second")
        // Created earlier, stored later: storage order, not creation order.
        second.createdAt = Self.now.addingTimeInterval(-60)
        for entry in [first, second] { _ = try await store.createEntry(entry, audit: Self.audit("entry.create")) }
        let snapshot = try await store.allEntries()
        #expect(snapshot.entries == [first, second])
        #expect(snapshot.positions.count == 2 && snapshot.positions[0] < snapshot.positions[1])
        #expect(snapshot.entries[0].dnsNames == ["a.example.org", "b.example.org"])
        #expect(snapshot.sequence == (try await store.latestChange()))
    }

    @Test("entryChanges: entries as they are now, deletions by ID, nothing for other kinds of change", arguments: StoreBackends.all)
    func entryChanges(_ backend: StoreBackend) async throws {
        let dir = try TemporaryDirectory("store")
        defer { withExtendedLifetime(dir) {} }
        let store = try backend.make(dir)
        let kept = try Self.entry("/kept")
        let changed = try Self.entry("/changed")
        let deleted = try Self.entry("/deleted")
        for entry in [kept, changed, deleted] { _ = try await store.createEntry(entry, audit: Self.audit("entry.create")) }
        let start = try await store.latestChange()

        var update = changed
        update.hint = "new hint"
        let updated = try await store.updateEntry(update, audit: Self.audit("entry.update"))
        _ = try await store.deleteEntry(id: deleted.id, audit: Self.audit("entry.delete"))
        let created = try await store.createEntry(try Self.entry("/created"), audit: Self.audit("entry.create"))
        // Created and deleted within the interval: only its deletion shows.
        let transient = try await store.createEntry(try Self.entry("/transient"), audit: Self.audit("entry.create"))
        _ = try await store.deleteEntry(id: transient.id, audit: Self.audit("entry.delete"))

        let changes = try await store.entryChanges(after: start)
        #expect(changes.entries == [updated, created])
        // An update stores the entry anew: after every entry stored before it.
        let before = try await store.allEntries()
        #expect(changes.positions == Array(before.positions.suffix(2)))
        #expect(before.entries.map(\.id) == [kept.id, updated.id, created.id])
        #expect(changes.entries[0].hint == "new hint" && changes.entries[0].revisionNumber == 1)
        #expect(Set(changes.removedIDs) == [deleted.id, transient.id])
        #expect(changes.sequence == (try await store.latestChange()))

        let none = try await store.entryChanges(after: changes.sequence)
        #expect(none.entries.isEmpty && none.removedIDs.isEmpty && none.sequence == changes.sequence)
        // A node change moves the sequence but changes no entry.
        try await store.admitAttestedNode(
            AttestedNode(spiffeID: try SPIFFEID(parsing: "spiffe://example.org/hallmark/agent/x"), attestationType: "join_token",
                         serialNumber: "01", expiresAt: Self.now.addingTimeInterval(600), attestedAt: Self.now, selectors: []),
            exclusive: [], audit: Self.audit("agent.attest")
        )
        let nodeOnly = try await store.entryChanges(after: changes.sequence)
        #expect(nodeOnly.entries.isEmpty && nodeOnly.removedIDs.isEmpty)
        #expect(nodeOnly.sequence > changes.sequence)
    }

    @Test("data survives reopening the store", arguments: StoreBackends.all)
    func persistence(_ backend: StoreBackend) async throws {
        let dir = try TemporaryDirectory("store")
        defer { withExtendedLifetime(dir) {} }
        let entry = try Self.entry("/a")
        do {
            let store = try backend.make(dir)
            _ = try await store.createEntry(entry, audit: Self.audit("entry.create"))
        }
        let reopened = try backend.make(dir)
        #expect(try await reopened.entries(matching: .all) == [entry])
        #expect(try await reopened.verifyAudit(trust: nil).records == 1)
    }
}
