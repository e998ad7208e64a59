// What is particular to the SQLite backend: migrations, the schema-version guard, pragmas.

import Foundation
import GRDB
import Testing
@testable import HallmarkStore
import HallmarkTestSupport
import HallmarkAttestation
import SPIFFE

@Suite("SQLite store")
struct SQLiteStoreTests {
    @Test("a fresh database is migrated to the latest version, WAL, foreign keys on")
    func fresh() throws {
        let dir = try TemporaryDirectory("sqlite")
        let store = try SQLiteStore(path: dir.path("a.db"))
        #expect(try store.schemaVersion() == Migrations.latestVersion)
        #expect(try store.integrityCheck() == "ok")
        let queue = try DatabaseQueue(path: dir.path("a.db"))
        #expect(try queue.read { try String.fetchOne($0, sql: "PRAGMA journal_mode") } == "wal")
    }

    @Test("a database newer than this binary is refused")
    func newerSchema() throws {
        let dir = try TemporaryDirectory("sqlite")
        _ = try SQLiteStore(path: dir.path("a.db"))
        let queue = try DatabaseQueue(path: dir.path("a.db"))
        try queue.write { db in
            try db.execute(sql: "INSERT INTO schema_migrations (version, name, applied_at) VALUES (999, 'future', 0)")
        }
        let error = #expect(throws: StoreError.self) { try SQLiteStore(path: dir.path("a.db")) }
        #expect(error?.code == .newerSchema)
        #expect(error?.message.contains("999") == true)
    }

    @Test("reopening applies nothing twice")
    func idempotent() throws {
        let dir = try TemporaryDirectory("sqlite")
        _ = try SQLiteStore(path: dir.path("a.db"))
        let again = try SQLiteStore(path: dir.path("a.db"))
        #expect(try again.schemaVersion() == Migrations.latestVersion)
    }

    @Test("a bulk import creates every entry under one audit event, or none when one is a duplicate")
    func importEntries() async throws {
        let dir = try TemporaryDirectory("sqlite")
        let store = try SQLiteStore(path: dir.path("a.db"))
        let entries = try (0..<300).map { try StoreConformanceTests.entryWithID(index: $0) }
        try await store.importEntries(entries, audit: StoreConformanceTests.audit("entry.import"))
        #expect(try await store.entries(matching: EntryFilter()).count == 300)
        #expect(try await store.entries(matching: EntryFilter(selectors: [try Selector(parsing: "unix:uid:299")])).map(\.id) == [entries[299].id])
        #expect(try await store.auditRecords(after: 0, limit: 10).map(\.event.action) == ["entry.import"])
        let before = try await store.latestChange()
        #expect(before >= 300)

        // The 2nd of these repeats an existing entry's ID, parent and selectors: nothing of the batch lands.
        let more = [try StoreConformanceTests.entryWithID(index: 300), try StoreConformanceTests.entryWithID(index: 7)]
        let error = await #expect(throws: StoreError.self) {
            try await store.importEntries(more, audit: StoreConformanceTests.audit("entry.import"))
        }
        #expect(error?.code == .alreadyExists)
        #expect(try await store.entries(matching: EntryFilter()).count == 300)
        #expect(try await store.latestChange() == before)
    }

    @Test("attested nodes saved in bulk read back one by one")
    func importNodes() async throws {
        let dir = try TemporaryDirectory("sqlite")
        let store = try SQLiteStore(path: dir.path("a.db"))
        let nodes = try (0..<50).map { index in
            AttestedNode(
                spiffeID: try SPIFFEID(parsing: "spiffe://example.org/hallmark/agent/bench/\(index)"), attestationType: "join-token",
                serialNumber: String(format: "%02x", index), expiresAt: TestClock.now.addingTimeInterval(3600), attestedAt: TestClock.now,
                selectors: [try Selector(parsing: "bench:cluster:\(index % 5)")]
            )
        }
        try await store.saveAttestedNodes(nodes, audit: StoreConformanceTests.audit("agent.import"))
        #expect(try await store.attestedNodes().count == 50)
        #expect(try await store.attestedNode(nodes[17].spiffeID) == nodes[17])
    }

    @Test("the embedded migrations are exactly the files in Schemas/sql, for each dialect", arguments: Migrations.Dialect.allCases)
    func embeddedMatchFiles(dialect: Migrations.Dialect) throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let directory = root.appendingPathComponent("Schemas/sql/\(dialect.rawValue)")
        let files = try FileManager.default.contentsOfDirectory(atPath: directory.path).filter { $0.hasSuffix(".sql") }.sorted()
        #expect(files == Migrations.embedded(dialect).map(\.name), "run scripts/gen-migrations")
        for migration in Migrations.embedded(dialect) {
            let text = try String(contentsOf: directory.appendingPathComponent(migration.name), encoding: .utf8)
            #expect(text.trimmingCharacters(in: .newlines) == migration.sql.trimmingCharacters(in: .newlines), "\(migration.name): run scripts/gen-migrations")
        }
    }

    @Test("every dialect has the same migrations, numbered and named the same")
    func dialectsAgree() {
        let sqlite = Migrations.sqlite.map { "\($0.version) \($0.name)" }
        #expect(Migrations.postgres.map { "\($0.version) \($0.name)" } == sqlite)
        #expect(Migrations.sqlite.map(\.version) == Array(1...Migrations.latestVersion), "migrations are numbered 1, 2, … with no gap")
    }
}
