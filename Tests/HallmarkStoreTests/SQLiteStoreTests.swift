// What is particular to the SQLite backend: migrations, the schema-version guard, pragmas.

import Foundation
import GRDB
import Testing
@testable import HallmarkStore
import HallmarkTestSupport

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

    @Test("the embedded migrations are exactly the files in Schemas/sql")
    func embeddedMatchFiles() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let directory = root.appendingPathComponent("Schemas/sql")
        let files = try FileManager.default.contentsOfDirectory(atPath: directory.path).filter { $0.hasSuffix(".sql") }.sorted()
        #expect(files == Migrations.embedded.map(\.name), "run scripts/gen-migrations")
        for migration in Migrations.embedded {
            let text = try String(contentsOf: directory.appendingPathComponent(migration.name), encoding: .utf8)
            #expect(text.trimmingCharacters(in: .newlines) == migration.sql.trimmingCharacters(in: .newlines), "\(migration.name): run scripts/gen-migrations")
        }
    }
}
