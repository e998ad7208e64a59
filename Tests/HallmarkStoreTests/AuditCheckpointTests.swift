// The audit log shows a rewrite and a truncation. A real SQLite file, tampered with as an attacker
// with write access to it would (dropping the triggers first), and a checkpoint key the database
// never holds.

import Foundation
import GRDB
import HallmarkStore
import HallmarkTestSupport
import Testing

@Suite("audit checkpoints")
struct AuditCheckpointTests {
    struct Fixture {
        let dir: TemporaryDirectory
        let store: SQLiteStore
        var trust: AuditTrust { AuditTrust(dataDir: dir.url.path) }
        var database: String { dir.path("hallmark.db") }

        init(records: Int) async throws {
            dir = try TemporaryDirectory("audit")
            store = try SQLiteStore(path: dir.path("hallmark.db"), checkpointer: try AuditCheckpointer(dataDir: dir.url.path, interval: 5))
            for index in 1...records {
                try await store.appendAudit([AuditEvent(time: TestClock.now.addingTimeInterval(Double(index)), actor: .admin(uid: 0), action: "entry.create", target: "e\(index)")])
            }
        }

        /// The attacker's way in: the file itself, without the append-only triggers.
        func tamper(_ body: (Database) throws -> Void) throws {
            let queue = try DatabaseQueue(path: database)
            try queue.write { db in
                for trigger in ["audit_log_append_only_update", "audit_log_append_only_delete", "audit_checkpoints_append_only_update", "audit_checkpoints_append_only_delete"] {
                    try db.execute(sql: "DROP TRIGGER \(trigger)")
                }
                try body(db)
            }
        }
    }

    @Test("checkpoints are signed with every fifth record and on request; the log verifies against them")
    func intact() async throws {
        let fixture = try await Fixture(records: 12)
        #expect(try await fixture.store.auditCheckpoints().map(\.sequence) == [5, 10])
        #expect(fixture.trust.head?.sequence == 10)
        #expect(try await fixture.store.checkpointAudit(at: TestClock.now)?.sequence == 12)
        #expect(try await fixture.store.checkpointAudit(at: TestClock.now) == nil, "nothing new to cover")
        #expect(fixture.trust.head?.sequence == 12)
        #expect(try await fixture.store.verifyAudit(trust: fixture.trust) == AuditVerification(records: 12))
        let mode = (try FileManager.default.attributesOfItem(atPath: fixture.dir.path(AuditCheckpointer.keyFile))[.posixPermissions] as? NSNumber)?.intValue
        #expect(mode == 0o600)
    }

    @Test("the audit tables refuse UPDATE and DELETE")
    func appendOnly() async throws {
        let fixture = try await Fixture(records: 6)
        let queue = try DatabaseQueue(path: fixture.database)
        for sql in ["UPDATE audit_log SET target = 'x' WHERE sequence = 2", "DELETE FROM audit_log WHERE sequence = 6", "DELETE FROM audit_checkpoints", "UPDATE audit_checkpoints SET sequence = 1"] {
            let refused = #expect(throws: DatabaseError.self) { try queue.write { try $0.execute(sql: sql) } }
            #expect(refused?.message?.contains("append-only") == true, "\(sql): \(String(describing: refused))")
        }
    }

    @Test("a chain recomputed after an edit is a rewrite, named at the first checkpoint it breaks")
    func rewritten() async throws {
        let fixture = try await Fixture(records: 12)
        // Change record 3 and recompute every hash after it, as anyone with the file can.
        try fixture.tamper { db in
            var previous = AuditChain.genesis
            for row in try Row.fetchAll(db, sql: "SELECT * FROM audit_log ORDER BY sequence") {
                let sequence: Int64 = row["sequence"]
                let event = AuditEvent(
                    time: Date(timeIntervalSince1970: TimeInterval(row["time_ms"] as Int64) / 1000),
                    actor: AuditActor(stored: row["actor"], callerUID: row["caller_uid"]), action: row["action"],
                    target: sequence == 3 ? "innocent" : row["target"], result: row["result"], detail: row["detail"]
                )
                let hash = AuditChain.hash(sequence: sequence, event: event, previousHash: previous)
                try db.execute(
                    sql: "UPDATE audit_log SET target = ?, previous_hash = ?, hash = ? WHERE sequence = ?",
                    arguments: [event.target, Data(previous), Data(hash), sequence]
                )
                previous = hash
            }
        }
        #expect(try await fixture.store.verifyAudit(trust: nil).intact, "the plain chain cannot tell")
        let result = try await fixture.store.verifyAudit(trust: fixture.trust)
        #expect(!result.intact && result.firstBadSequence == 5 && result.reason?.contains("the chain was rewritten") == true, "\(result)")
    }

    @Test("deleting the newest records and their checkpoints is a truncation past the checkpoint kept beside the key")
    func truncated() async throws {
        let fixture = try await Fixture(records: 12)
        _ = try await fixture.store.checkpointAudit(at: TestClock.now)
        try fixture.tamper { db in
            try db.execute(sql: "DELETE FROM audit_log WHERE sequence > 8")
            try db.execute(sql: "DELETE FROM audit_checkpoints WHERE sequence > 8")
        }
        #expect(try await fixture.store.verifyAudit(trust: nil).intact, "the plain chain cannot tell")
        let result = try await fixture.store.verifyAudit(trust: fixture.trust)
        #expect(!result.intact && result.reason?.contains("the log was truncated: it ends at record 8") == true, "\(result)")
        #expect(result.reason?.contains("covers record 12") == true)
    }

    @Test("a missing checkpoint key, a missing newest checkpoint and a checkpoint signed by another key are each named")
    func keyAndHead() async throws {
        let fixture = try await Fixture(records: 7)
        let key = fixture.dir.path(AuditCheckpointer.keyFile)
        let saved = try Data(contentsOf: URL(fileURLWithPath: key))
        try FileManager.default.removeItem(atPath: key)
        let missing = try await fixture.store.verifyAudit(trust: fixture.trust)
        #expect(missing.reason?.contains("the audit checkpoint key \(key) is missing") == true, "\(missing)")

        // Another key in its place: the stored checkpoints are not its.
        _ = try AuditCheckpointer(dataDir: fixture.dir.url.path)
        let replaced = try await fixture.store.verifyAudit(trust: fixture.trust)
        #expect(replaced.reason?.contains("is not signed by the checkpoint key") == true, "\(replaced)")

        try saved.write(to: URL(fileURLWithPath: key))
        try FileManager.default.removeItem(atPath: fixture.dir.path(AuditCheckpointer.headFile))
        let headless = try await fixture.store.verifyAudit(trust: fixture.trust)
        #expect(headless.reason?.contains("the newest checkpoint") == true && headless.reason?.contains("is missing") == true, "\(headless)")
    }
}
