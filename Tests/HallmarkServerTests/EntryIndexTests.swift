// The entry index answers exactly what the store answers (the same entries in the same order),
// before and after loading, and stays so as entries are created, updated and deleted through
// another handle on the same file, as another process would.

import Foundation
import HallmarkAttestation
import HallmarkServer
import HallmarkStore
import HallmarkTestSupport
import SPIFFE
import Testing

@Suite("entry index")
struct EntryIndexTests {
    static let trustDomain = try! TrustDomain("example.org")
    static let serverID = AgentAuthorization.serverID(trustDomain)
    static let now = TestClock.now
    static let audit = AuditEvent(time: now, actor: .admin(uid: 0), action: "entry.create", target: "test")

    static func id(_ path: String) -> SPIFFEID { try! SPIFFEID(trustDomain: trustDomain, path: path) }

    static func agent(_ name: String, selectors: [String]) throws -> AttestedNode {
        AttestedNode(
            spiffeID: id("/hallmark/agent/test/\(name)"), attestationType: "join_token", serialNumber: name,
            expiresAt: now.addingTimeInterval(3600), attestedAt: now, selectors: try selectors.map(Selector.init(parsing:))
        )
    }

    static func entry(_ path: String, parent: SPIFFEID, selectors: [String] = ["unix:uid:1000"], age: TimeInterval = 0) throws -> RegistrationEntry {
        RegistrationEntry(
            spiffeID: id(path), parentID: parent, selectors: try selectors.map(Selector.init(parsing:)),
            dnsNames: ["\(path.split(separator: "/").last!).example.org"], createdAt: now.addingTimeInterval(-age)
        )
    }

    /// What the store says, through an index that has not loaded.
    static func expected(_ node: AttestedNode, _ store: any Store) async throws -> [RegistrationEntry] {
        try await AgentAuthorization.entries(for: node, index: EntryIndex(store: store), trustDomain: trustDomain)
    }

    @Test("authorised entries: the agent's own, those under aliases its selectors satisfy, their descendants, oldest first")
    func authorisation() async throws {
        let dir = try TemporaryDirectory("index")
        defer { withExtendedLifetime(dir) {} }
        let store = try SQLiteStore(path: dir.path("store.db"))
        let gpu = try Self.agent("gpu", selectors: ["tpm:pcr0:aa", "gpu:model:H100"])
        let plain = try Self.agent("plain", selectors: ["tpm:pcr0:aa"])
        let h100 = try Self.entry("/cluster/h100", parent: Self.serverID, selectors: ["gpu:model:H100"])
        let all = try Self.entry("/cluster/all", parent: Self.serverID, selectors: ["tpm:pcr0:aa"])
        let entries = [
            h100, all,
            try Self.entry("/own/new", parent: gpu.spiffeID),
            try Self.entry("/own/old", parent: gpu.spiffeID, age: 60),
            try Self.entry("/shared/trainer", parent: h100.spiffeID, selectors: ["unix:uid:2000"]),
            try Self.entry("/shared/sidecar", parent: all.spiffeID),
            // A descendant of a descendant, and an entry whose ID is its own ancestor's.
            try Self.entry("/nested", parent: Self.id("/own/new")),
            try Self.entry("/own/new", parent: Self.id("/nested"), selectors: ["unix:uid:3000"]),
            try Self.entry("/elsewhere", parent: Self.id("/hallmark/agent/test/other")),
        ]
        for entry in entries { _ = try await store.createEntry(entry, audit: Self.audit) }

        let index = EntryIndex(store: store)
        let before = try await AgentAuthorization.entries(for: gpu, index: index, trustDomain: Self.trustDomain)
        #expect(await index.isLoaded == false)
        #expect(try await index.load() == entries.count)
        let after = try await AgentAuthorization.entries(for: gpu, index: index, trustDomain: Self.trustDomain)
        #expect(after == before)
        #expect(after.map(\.spiffeID.path) == ["/own/old", "/own/new", "/shared/trainer", "/shared/sidecar", "/nested", "/own/new"])
        #expect(after[0].dnsNames == ["old.example.org"])
        let plainEntries = try await AgentAuthorization.entries(for: plain, index: index, trustDomain: Self.trustDomain)
        #expect(plainEntries.map(\.spiffeID.path) == ["/shared/sidecar"])
        #expect(plainEntries == (try await Self.expected(plain, store)))
    }

    @Test("changes written through another handle are in the next answer; an update moves after its creation-time peers")
    func followsTheChangeLog() async throws {
        let dir = try TemporaryDirectory("index")
        defer { withExtendedLifetime(dir) {} }
        let store = try SQLiteStore(path: dir.path("store.db"))
        let writer = try SQLiteStore(path: dir.path("store.db"))
        let node = try Self.agent("a", selectors: ["k8s:ns:ml"])
        let first = try await store.createEntry(try Self.entry("/first", parent: node.spiffeID), audit: Self.audit)
        let second = try await store.createEntry(try Self.entry("/second", parent: node.spiffeID), audit: Self.audit)
        let index = EntryIndex(store: store)
        try await index.load()
        func answer() async throws -> [RegistrationEntry] {
            try await AgentAuthorization.entries(for: node, index: index, trustDomain: Self.trustDomain)
        }
        #expect(try await answer() == [first, second])

        var changed = first
        changed.hint = "moved"
        let updated = try await writer.updateEntry(changed, audit: Self.audit)
        #expect(try await answer() == [second, updated])

        let alias = try await writer.createEntry(try Self.entry("/alias", parent: Self.serverID, selectors: ["k8s:ns:ml"]), audit: Self.audit)
        let shared = try await writer.createEntry(try Self.entry("/shared", parent: alias.spiffeID, age: 10), audit: Self.audit)
        #expect(try await answer() == [shared, second, updated])

        _ = try await writer.deleteEntry(id: second.id, audit: Self.audit)
        _ = try await writer.deleteEntry(id: alias.id, audit: Self.audit)
        #expect(try await answer() == [updated])
        #expect(try await answer() == (try await Self.expected(node, store)))

        // A writer that is not Hallmark at all (an operator's sqlite3): the database logs it too.
        let raw = "spiffe://example.org/raw"
        let sql = """
            INSERT INTO entries (id, spiffe_id, parent_id, selector_key, x509_svid_ttl, jwt_svid_ttl, admin, downstream, hint, revision_number, created_at)
            VALUES ('raw-1', '\(raw)', '\(node.spiffeID)', 'unix:uid:7', 0, 0, 0, 0, '', 0, \(Int(Self.now.timeIntervalSince1970) + 5));
            INSERT INTO entry_selectors (entry_id, type, value) VALUES ('raw-1', 'unix', 'uid:7');
            """
        let inserted = try Run.process("/usr/bin/sqlite3", [dir.path("store.db"), sql])
        #expect(inserted.status == 0, "\(inserted.stderr)")
        #expect(try await answer().map(\.spiffeID.description) == [updated.spiffeID.description, raw])
        let deleted = try Run.process("/usr/bin/sqlite3", [dir.path("store.db"), "DELETE FROM entries WHERE id = 'raw-1'"])
        #expect(deleted.status == 0, "\(deleted.stderr)")
        #expect(try await answer() == [updated])
    }

    @Test("random creates, updates and deletes: the index and the store agree after every step")
    func differential() async throws {
        let dir = try TemporaryDirectory("index")
        defer { withExtendedLifetime(dir) {} }
        let store = try SQLiteStore(path: dir.path("store.db"))
        let writer = try SQLiteStore(path: dir.path("store.db"))
        var random = SeededRandom(seed: 0x4841_4c4c)
        let nodes = try (0..<4).map { try Self.agent("n\($0)", selectors: ["cluster:\($0 % 2)", "rack:\($0)"]) }
        let index = EntryIndex(store: store)
        var live: [RegistrationEntry] = []
        var serial = 0
        for step in 0..<300 {
            if step == 40 { try await index.load() }
            let choice = live.isEmpty ? 0 : Int.random(in: 0..<10, using: &random)
            switch choice {
            case 0..<5:
                // Parents: an agent, the server (an alias), or an existing entry (a deeper level).
                let parents = nodes.map(\.spiffeID) + [Self.serverID] + live.map(\.spiffeID)
                let parent = parents.randomElement(using: &random)!
                let selectors = parent == Self.serverID ? ["cluster:\(Int.random(in: 0..<3, using: &random))"] : ["unix:uid:\(serial)"]
                serial += 1
                // Forty SPIFFE IDs between them: an ID that is also another entry's parent joins trees.
                let entry = try Self.entry("/e/\(serial % 40)", parent: parent, selectors: selectors, age: TimeInterval(Int.random(in: 0..<3, using: &random)))
                do {
                    live.append(try await writer.createEntry(entry, audit: Self.audit))
                } catch let error as StoreError where error.code == .alreadyExists {}
            case 5..<8:
                let position = Int.random(in: 0..<live.count, using: &random)
                var entry = live[position]
                entry.hint = "revision \(step)"
                live[position] = try await writer.updateEntry(entry, audit: Self.audit)
            default:
                let position = Int.random(in: 0..<live.count, using: &random)
                _ = try await writer.deleteEntry(id: live.remove(at: position).id, audit: Self.audit)
            }
            for node in nodes {
                let fromIndex = try await AgentAuthorization.entries(for: node, index: index, trustDomain: Self.trustDomain)
                let fromStore = try await Self.expected(node, store)
                #expect(fromIndex == fromStore, "step \(step), \(node.spiffeID)")
            }
        }
        #expect(await index.isLoaded)
    }
}

/// A reproducible generator (SplitMix64), so that a failing sequence can be replayed.
struct SeededRandom: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
