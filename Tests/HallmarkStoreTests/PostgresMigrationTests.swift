// The PostgreSQL migrations on a real PostgreSQL server (a throwaway cluster, TestPostgres): they
// apply in order to an empty database; they make the same tables with the same columns as the
// SQLite migrations; and the rules the schema itself enforces hold there too — the audit tables
// refuse UPDATE, DELETE and TRUNCATE, and every entry change is logged in order by a trigger.

import Foundation
import GRDB
@testable import HallmarkStore
import HallmarkTestSupport
import Testing

@Suite("PostgreSQL migrations", .serialized)
struct PostgresMigrationTests {
    /// A new database with every PostgreSQL migration applied, in order.
    static func migrated() throws -> (TestPostgres, String) {
        let postgres = try TestPostgres.shared()
        let database = try postgres.createDatabase("migrations")
        for migration in Migrations.postgres {
            let applied = try postgres.psql(database, sql: migration.sql)
            #expect(applied.status == 0, "\(migration.name): \(applied.stderr)")
        }
        return (postgres, database)
    }

    @Test("every migration applies, and the tables and columns are the SQLite schema's")
    func sameSchema() throws {
        let (postgres, database) = try Self.migrated()
        let listed = try postgres.psql(database, sql: """
            SELECT table_name || '.' || column_name FROM information_schema.columns
            WHERE table_schema = 'public' ORDER BY 1
            """)
        #expect(listed.status == 0, "\(listed.stderr)")
        let postgresColumns = Set(listed.stdout.split(separator: "\n").map(String.init))

        let dir = try TemporaryDirectory("schema")
        _ = try SQLiteStore(path: dir.path("a.db"))
        let queue = try DatabaseQueue(path: dir.path("a.db"))
        let sqliteColumns = try queue.read { db in
            var columns = Set<String>()
            for table in try String.fetchAll(db, sql: "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name != 'schema_migrations'") {
                for column in try Row.fetchAll(db, sql: "PRAGMA table_info(\(table))") { columns.insert("\(table).\(column["name"] as String)") }
            }
            return columns
        }
        #expect(postgresColumns.count > 40)
        #expect(postgresColumns.subtracting(sqliteColumns).isEmpty, "only in PostgreSQL: \(postgresColumns.subtracting(sqliteColumns).sorted())")
        #expect(sqliteColumns.subtracting(postgresColumns).isEmpty, "only in SQLite: \(sqliteColumns.subtracting(postgresColumns).sorted())")
    }

    @Test("the audit tables refuse UPDATE, DELETE and TRUNCATE, naming the rule", arguments: [
        ("UPDATE audit_log SET target = 'x'", "audit_log is append-only: records are never changed"),
        ("DELETE FROM audit_log", "audit_log is append-only: records are never deleted"),
        ("TRUNCATE audit_log", "audit_log is append-only"),
        ("UPDATE audit_checkpoints SET sequence = 2", "audit_checkpoints is append-only"),
        ("DELETE FROM audit_checkpoints", "audit_checkpoints is append-only"),
        ("TRUNCATE audit_checkpoints", "audit_checkpoints is append-only"),
    ])
    func appendOnly(sql: String, message: String) throws {
        let (postgres, database) = try Self.migrated()
        let seeded = try postgres.psql(database, sql: """
            INSERT INTO audit_log (sequence, time_ms, caller_uid, actor, action, target, result, detail, previous_hash, hash)
            VALUES (1, 0, -1, 'server', 'entry.expire', 'e1', 'ok', '', '\\x00'::bytea, '\\x01'::bytea);
            INSERT INTO audit_checkpoints (sequence, head_hash, time_ms, signature, key_id) VALUES (1, '\\x01'::bytea, 0, '\\x02'::bytea, 'k');
            """)
        #expect(seeded.status == 0, "\(seeded.stderr)")
        let refused = try postgres.psql(database, sql: sql)
        #expect(refused.status != 0 && refused.stderr.contains(message), "\(sql): \(refused.stderr)")
        let kept = try postgres.psql(database, sql: "SELECT (SELECT count(*) FROM audit_log) || ' ' || (SELECT count(*) FROM audit_checkpoints)")
        #expect(kept.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "1 1")
    }

    @Test("every insert, update and delete of an entry is logged in order, in its own transaction")
    func changeLog() throws {
        let (postgres, database) = try Self.migrated()
        let changed = try postgres.psql(database, sql: """
            INSERT INTO entries (id, spiffe_id, parent_id, selector_key, x509_svid_ttl, jwt_svid_ttl, created_at)
            VALUES ('e1', 'spiffe://example.org/a', 'spiffe://example.org/n', 'unix:uid:1', 0, 0, 0);
            UPDATE entries SET hint = 'h', revision_number = 1 WHERE id = 'e1';
            UPDATE entries SET id = 'e2' WHERE id = 'e1';
            BEGIN; DELETE FROM entries WHERE id = 'e2'; ROLLBACK;
            DELETE FROM entries WHERE id = 'e2';
            """)
        #expect(changed.status == 0, "\(changed.stderr)")
        let log = try postgres.psql(database, sql: "SELECT kind || ':' || key FROM change_log ORDER BY sequence")
        // The renaming update logs the old ID and the new; the rolled-back delete logs nothing.
        #expect(log.stdout.split(separator: "\n") == ["entry:e1", "entry:e1", "entry:e1", "entry:e2", "entry:e2"], "\(log.stdout)")
        let times = try postgres.psql(database, sql: "SELECT count(*) FROM change_log WHERE time_ms > 1700000000000")
        #expect(times.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "5", "change times are Unix milliseconds")
    }
}
