// Who took each audited action is in the record and in its hash: an admin by uid, the server, an
// agent by SPIFFE ID. On a real SQLite file tampered with as an attacker would: an actor removed,
// swapped, or added to a record written before actors were kept is each caught, while such older
// records (no actor, the earlier hash layout) still verify.

import Foundation
import GRDB
import HallmarkStore
import HallmarkTestSupport
import SPIFFE
import Testing

@Suite("audit actors")
struct AuditActorTests {
    static let agent = AuditActor.agent(try! SPIFFEID(parsing: "spiffe://example.org/agent/join_token/t1"))

    static func store() throws -> (TemporaryDirectory, SQLiteStore) {
        let dir = try TemporaryDirectory("audit-actor")
        return (dir, try SQLiteStore(path: dir.path("hallmark.db")))
    }

    /// The file itself, without the append-only triggers.
    static func tamper(_ dir: TemporaryDirectory, _ sql: String) throws {
        let queue = try DatabaseQueue(path: dir.path("hallmark.db"))
        try queue.write { db in
            try db.execute(sql: "DROP TRIGGER audit_log_append_only_update")
            try db.execute(sql: sql)
        }
    }

    @Test("the stored form names each actor and reads back the same", arguments: [
        (AuditActor.admin(uid: 1000), "admin:1000"), (.server, "server"), (agent, "agent:spiffe://example.org/agent/join_token/t1"),
    ])
    func storedForm(actor: AuditActor, stored: String) {
        #expect(actor.stored == stored)
        #expect(AuditActor(stored: stored, callerUID: actor.callerUID) == actor)
        #expect(actor.callerUID == (stored == "admin:1000" ? 1000 : -1))
    }

    @Test("actors are kept and verify; removing, swapping or changing one breaks the chain at that record", arguments: [
        "UPDATE audit_log SET actor = NULL WHERE sequence = 2",
        "UPDATE audit_log SET actor = 'server' WHERE sequence = 2",
        "UPDATE audit_log SET actor = 'admin:0' WHERE sequence = 2",
        "UPDATE audit_log SET actor = 'agent:spiffe://example.org/agent/join_token/other' WHERE sequence = 2",
    ])
    func tampered(sql: String) async throws {
        let (dir, store) = try Self.store()
        try await store.appendAudit([
            AuditEvent(actor: .admin(uid: 1000), action: "entry.create", target: "e1"),
            AuditEvent(actor: Self.agent, action: "x509.issue", target: "spiffe://example.org/w"),
            AuditEvent(actor: .server, action: "entry.expire", target: "e1"),
        ])
        #expect(try await store.auditRecords(after: 0, limit: 10).map(\.event.actor) == [.admin(uid: 1000), Self.agent, .server])
        #expect(try await store.verifyAudit(trust: nil) == AuditVerification(records: 3))

        try Self.tamper(dir, sql)
        let verification = try await store.verifyAudit(trust: nil)
        #expect(verification.firstBadSequence == 2, "\(sql): \(verification)")
    }

    @Test("a record from before actors were kept verifies as it was hashed, and giving it an actor breaks it")
    func unrecorded() async throws {
        let (dir, store) = try Self.store()
        try await store.appendAudit([AuditEvent(actor: .unrecorded(callerUID: -1), action: "agent.attest", target: "n1")])
        try await store.appendAudit([AuditEvent(actor: .server, action: "entry.expire", target: "e1")])
        let records = try await store.auditRecords(after: 0, limit: 10)
        #expect(records.map(\.event.actor) == [.unrecorded(callerUID: -1), .server])
        #expect(try await store.verifyAudit(trust: nil) == AuditVerification(records: 2))

        try Self.tamper(dir, "UPDATE audit_log SET actor = 'server' WHERE sequence = 1")
        #expect(try await store.verifyAudit(trust: nil).firstBadSequence == 1)
    }
}
