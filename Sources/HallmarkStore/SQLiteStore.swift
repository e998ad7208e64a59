// The SQLite backend: GRDB over the system libsqlite3, WAL, foreign keys, synchronous=FULL so
// that a commit survives a crash the moment it returns.

public import Foundation
import GRDB
public import HallmarkAttestation
public import SPIFFE

public final class SQLiteStore: Store {
    private let pool: DatabasePool
    /// Signs audit checkpoints with a key outside the database (nil: none are written).
    private let checkpointer: AuditCheckpointer?

    /// Opens (creating if needed) the database at `path` and applies pending migrations.
    ///
    /// - Throws: ``StoreError`` with `newerSchema` when the file was written by a newer Hallmark.
    public init(path: String, checkpointer: AuditCheckpointer? = nil) throws {
        self.checkpointer = checkpointer
        var configuration = Configuration()
        configuration.foreignKeysEnabled = true
        configuration.busyMode = .timeout(10)
        configuration.prepareDatabase { db in
            try db.execute(sql: "PRAGMA synchronous = FULL")
        }
        pool = try DatabasePool(path: path, configuration: configuration)
        try migrate()
    }

    /// The schema version the database is at.
    public func schemaVersion() throws -> Int {
        try pool.read { db in try Int.fetchOne(db, sql: "SELECT MAX(version) FROM schema_migrations") ?? 0 }
    }

    /// `PRAGMA integrity_check`'s answer (`ok` when sound).
    public func integrityCheck() throws -> String {
        try pool.read { db in try String.fetchAll(db, sql: "PRAGMA integrity_check").joined(separator: "; ") }
    }

    private func migrate() throws {
        try pool.write { db in
            try db.execute(sql: """
                CREATE TABLE IF NOT EXISTS schema_migrations (
                    version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)
                """)
            let current = try Int.fetchOne(db, sql: "SELECT MAX(version) FROM schema_migrations") ?? 0
            guard current <= Migrations.latestVersion else {
                throw StoreError(
                    .newerSchema,
                    "store: the database is at schema version \(current), newer than the \(Migrations.latestVersion) this Hallmark knows; run a newer Hallmark"
                )
            }
            for migration in Migrations.sqlite.sorted(by: { $0.version < $1.version }) where migration.version > current {
                try db.execute(sql: migration.sql)
                try db.execute(
                    sql: "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                    arguments: [migration.version, migration.name, Int64(Date().timeIntervalSince1970)]
                )
            }
        }
    }

    // MARK: Entries
    //
    // Every insert, update and delete of an entries row is logged in change_log by a trigger
    // (migration 0003), in the same transaction, whoever the writer is.

    public func createEntry(_ entry: RegistrationEntry, audit: AuditEvent) async throws -> RegistrationEntry {
        try await pool.write { db in
            try Self.checkNew(entry, db)
            try Self.insert(entry, db)
            try self.append([audit], db)
            return entry
        }
    }

    /// Creates many entries in one transaction under one audit event (bulk imports), with the
    /// rules of ``createEntry(_:audit:)`` for each: all are created, or none.
    public func importEntries(_ entries: [RegistrationEntry], audit: AuditEvent) async throws {
        try await pool.write { db in
            for entry in entries {
                try Self.checkNew(entry, db)
                try Self.insert(entry, db)
            }
            try self.append([audit], db)
        }
    }

    private static func checkNew(_ entry: RegistrationEntry, _ db: Database) throws {
        if try Bool.fetchOne(
            db.cachedStatement(sql: "SELECT 1 FROM entries WHERE spiffe_id = ? AND parent_id = ? AND selector_key = ?"),
            arguments: [entry.spiffeID.description, entry.parentID.description, entry.selectorKey]
        ) != nil {
            throw StoreError(
                .alreadyExists,
                "store: an entry with SPIFFE ID \(entry.spiffeID), parent \(entry.parentID) and these selectors already exists"
            )
        }
        if try Bool.fetchOne(db.cachedStatement(sql: "SELECT 1 FROM entries WHERE id = ?"), arguments: [entry.id]) != nil {
            throw StoreError(.alreadyExists, "store: an entry with ID \(entry.id) already exists")
        }
    }

    public func updateEntry(_ entry: RegistrationEntry, audit: AuditEvent) async throws -> RegistrationEntry {
        try await pool.write { db in
            guard let current = try Self.fetchEntries(db, EntryFilter(id: entry.id)).first else {
                throw StoreError(.notFound, "store: no entry with ID \(entry.id)")
            }
            if entry.revisionNumber != 0 && entry.revisionNumber != current.revisionNumber {
                throw StoreError(
                    .revisionMismatch,
                    "store: entry \(entry.id) is at revision \(current.revisionNumber), not \(entry.revisionNumber); fetch it again"
                )
            }
            if try Bool.fetchOne(
                db, sql: "SELECT 1 FROM entries WHERE spiffe_id = ? AND parent_id = ? AND selector_key = ? AND id != ?",
                arguments: [entry.spiffeID.description, entry.parentID.description, entry.selectorKey, entry.id]
            ) != nil {
                throw StoreError(.alreadyExists, "store: another entry already has this SPIFFE ID, parent and selectors")
            }
            var updated = entry
            updated.createdAt = current.createdAt
            updated.revisionNumber = current.revisionNumber + 1
            try db.execute(sql: "DELETE FROM entries WHERE id = ?", arguments: [entry.id])
            try Self.insert(updated, db)
            try self.append([audit], db)
            return updated
        }
    }

    public func deleteEntry(id: String, audit: AuditEvent) async throws -> RegistrationEntry {
        try await pool.write { db in
            guard let current = try Self.fetchEntries(db, EntryFilter(id: id)).first else {
                throw StoreError(.notFound, "store: no entry with ID \(id)")
            }
            try db.execute(sql: "DELETE FROM entries WHERE id = ?", arguments: [id])
            try self.append([audit], db)
            return current
        }
    }

    public func entries(matching filter: EntryFilter) async throws -> [RegistrationEntry] {
        try await pool.read { db in try Self.fetchEntries(db, filter) }
    }

    public func descendants(of roots: [SPIFFEID]) async throws -> [RegistrationEntry] {
        try await pool.read { db in
            // Breadth first, one query per level (in chunks of parents): an agent's entries rarely
            // have children, so the second level is one query that finds nothing.
            var visited = Set(roots)
            var level = roots
            var seen = Set<String>()
            var found: [(entry: RegistrationEntry, position: Int64)] = []
            while !level.isEmpty {
                var next: [SPIFFEID] = []
                for start in stride(from: 0, to: level.count, by: Self.parentsPerQuery) {
                    let parents = Array(level[start..<min(start + Self.parentsPerQuery, level.count)])
                    let rows = try Self.fetchRows(db, EntryFilter(parentIDs: parents))
                    for (entry, position) in zip(rows.entries, rows.positions) where seen.insert(entry.id).inserted {
                        found.append((entry, position))
                        if visited.insert(entry.spiffeID).inserted { next.append(entry.spiffeID) }
                    }
                }
                level = next
            }
            // Levels were each in order; all of them together are put in the same order.
            return found.sorted { ($0.entry.createdAt, $0.position) < ($1.entry.createdAt, $1.position) }.map(\.entry)
        }
    }

    public func allEntries() async throws -> EntrySnapshot {
        try await pool.read { db in
            let count = try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM entries") ?? 0
            let rows = try Self.fetchRows(db, .all, order: "e.rowid", expected: count)
            return EntrySnapshot(entries: rows.entries, positions: rows.positions, removedIDs: [], sequence: try Self.latestChange(db))
        }
    }

    public func entryChanges(after sequence: Int64) async throws -> EntrySnapshot {
        // Most calls find nothing new, which is one indexed read: done here, without a hop to a
        // reader's queue and back (two thread wake-ups, most of the cost of the call).
        let latest = try latestChangeNow()
        guard latest > sequence else { return EntrySnapshot(entries: [], positions: [], removedIDs: [], sequence: latest) }
        return try await pool.read { db in
            let latest = try Self.latestChange(db)
            let changed = try Self.fetchRows(db, .all, changedAfter: sequence, order: "e.rowid")
            let keys = try String.fetchAll(
                db.cachedStatement(sql: "SELECT DISTINCT key FROM change_log WHERE kind = 'entry' AND sequence > ?"), arguments: [sequence]
            )
            let present = Set(changed.entries.map(\.id))
            return EntrySnapshot(
                entries: changed.entries, positions: changed.positions, removedIDs: keys.filter { !present.contains($0) }, sequence: latest
            )
        }
    }

    /// Parents looked up in one statement (SQLite allows 32,766 parameters; this keeps statements small).
    static let parentsPerQuery = 500

    public func pruneExpiredEntries(at time: Date) async throws -> [RegistrationEntry] {
        try await pool.write { db in
            let ids = try String.fetchAll(
                db, sql: "SELECT id FROM entries WHERE expires_at IS NOT NULL AND expires_at <= ?",
                arguments: [Int64(time.timeIntervalSince1970)]
            )
            var pruned: [RegistrationEntry] = []
            for id in ids {
                guard let entry = try Self.fetchEntries(db, EntryFilter(id: id)).first else { continue }
                try db.execute(sql: "DELETE FROM entries WHERE id = ?", arguments: [id])
                try self.append(
                    [AuditEvent(time: time, actor: .server, action: "entry.expire", target: id, detail: entry.spiffeID.description)], db
                )
                pruned.append(entry)
            }
            return pruned
        }
    }

    private static func insert(_ entry: RegistrationEntry, _ db: Database) throws {
        try db.cachedStatement(
            sql: """
                INSERT INTO entries (id, spiffe_id, parent_id, selector_key, x509_svid_ttl, jwt_svid_ttl, admin, downstream,
                                     expires_at, hint, revision_number, created_at)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """
        ).execute(
            arguments: [
                entry.id, entry.spiffeID.description, entry.parentID.description, entry.selectorKey, entry.x509SVIDTTL,
                entry.jwtSVIDTTL, entry.admin, entry.downstream, entry.expiresAt.map { Int64($0.timeIntervalSince1970) },
                entry.hint, entry.revisionNumber, Int64(entry.createdAt.timeIntervalSince1970),
            ]
        )
        for selector in Set(entry.selectors) {
            try db.cachedStatement(sql: "INSERT INTO entry_selectors (entry_id, type, value) VALUES (?, ?, ?)")
                .execute(arguments: [entry.id, selector.type, selector.value])
        }
        for (position, name) in entry.dnsNames.enumerated() {
            try db.cachedStatement(sql: "INSERT INTO entry_dns_names (entry_id, position, name) VALUES (?, ?, ?)")
                .execute(arguments: [entry.id, position, name])
        }
    }

    /// Entries matching `filter`, oldest first.
    private static func fetchEntries(_ db: Database, _ filter: EntryFilter) throws -> [RegistrationEntry] {
        try fetchRows(db, filter).entries
    }

    /// Entries matching `filter` (and, with `changedAfter`, changed after that change-log
    /// sequence), with their rows' places in storage order (rowids) alongside.
    private static func fetchRows(
        _ db: Database, _ filter: EntryFilter, changedAfter: Int64? = nil, order: String = "e.created_at, e.rowid", expected: Int = 0
    ) throws -> (entries: [RegistrationEntry], positions: [Int64]) {
        var conditions: [String] = []
        var arguments: StatementArguments = []
        if let changedAfter {
            conditions.append("e.id IN (SELECT key FROM change_log WHERE kind = 'entry' AND sequence > ?)")
            arguments += [changedAfter]
        }
        if let id = filter.id {
            conditions.append("e.id = ?")
            arguments += [id]
        }
        if let spiffeID = filter.spiffeID {
            conditions.append("e.spiffe_id = ?")
            arguments += [spiffeID.description]
        }
        if let parentID = filter.parentID {
            conditions.append("e.parent_id = ?")
            arguments += [parentID.description]
        }
        if let parentIDs = filter.parentIDs {
            guard !parentIDs.isEmpty else { return ([], []) }
            conditions.append("e.parent_id IN (\(Array(repeating: "?", count: parentIDs.count).joined(separator: ",")))")
            arguments += StatementArguments(parentIDs.map(\.description))
        }
        for selector in filter.selectors {
            conditions.append("e.id IN (SELECT entry_id FROM entry_selectors WHERE type = ? AND value = ?)")
            arguments += [selector.type, selector.value]
        }
        let whereClause = conditions.isEmpty ? "" : "WHERE " + conditions.joined(separator: " AND ")
        // Statements are prepared once per shape and reused; rows are decoded as they are stepped.
        let select = try db.cachedStatement(
            sql: """
                SELECT e.id, e.spiffe_id, e.parent_id, e.selector_key, e.x509_svid_ttl, e.jwt_svid_ttl, e.admin, e.downstream,
                       e.expires_at, e.hint, e.revision_number, e.created_at, e.rowid
                FROM entries e \(whereClause) ORDER BY \(order)
                """
        )
        // Entries under one parent share it: parse each distinct ID once.
        var parents: [String: SPIFFEID] = [:]
        var entries: [RegistrationEntry] = []
        var positions: [Int64] = []
        entries.reserveCapacity(expected)
        positions.reserveCapacity(expected)
        let rows = try Row.fetchCursor(select, arguments: arguments)
        while let row = try rows.next() {
            let parentText: String = row[2]
            let parentID = try parents[parentText] ?? SPIFFEID(parsing: parentText)
            parents[parentText] = parentID
            // selector_key is the selectors, sorted, one TYPE:VALUE a line (a value has no control characters).
            let selectorKey: String = row[3]
            entries.append(RegistrationEntry(
                id: row[0], spiffeID: try SPIFFEID(parsing: row[1]), parentID: parentID,
                selectors: try selectorKey.split(separator: "\n").map { try Selector(parsing: String($0)) },
                x509SVIDTTL: row[4], jwtSVIDTTL: row[5], dnsNames: [], admin: row[6], downstream: row[7],
                expiresAt: (row[8] as Int64?).map { Date(timeIntervalSince1970: TimeInterval($0)) },
                hint: row[9], revisionNumber: row[10], createdAt: Date(timeIntervalSince1970: TimeInterval(row[11] as Int64))
            ))
            positions.append(row[12])
        }
        guard !entries.isEmpty else { return ([], []) }
        let scope = conditions.isEmpty ? "" : "WHERE entry_id IN (SELECT e.id FROM entries e \(whereClause))"
        var dnsNames: [String: [String]] = [:]
        let names = try Row.fetchCursor(
            db.cachedStatement(sql: "SELECT entry_id, name FROM entry_dns_names \(scope) ORDER BY entry_id, position"), arguments: arguments
        )
        while let row = try names.next() { dnsNames[row[0], default: []].append(row[1]) }
        if !dnsNames.isEmpty {
            for index in entries.indices { entries[index].dnsNames = dnsNames[entries[index].id] ?? [] }
        }
        return (entries, positions)
    }

    // MARK: Join tokens

    public func createJoinToken(_ token: JoinTokenRecord, audit: AuditEvent) async throws {
        try await pool.write { db in
            try db.execute(
                sql: "INSERT INTO join_tokens (id, token_hash, spiffe_id, expires_at, created_at) VALUES (?, ?, ?, ?, ?)",
                arguments: [
                    token.id, Data(token.tokenHash), token.spiffeID?.description, Int64(token.expiresAt.timeIntervalSince1970),
                    Int64(token.createdAt.timeIntervalSince1970),
                ]
            )
            try self.append([audit], db)
        }
    }

    public func redeemJoinToken(hash: [UInt8], at time: Date) async throws -> JoinTokenRecord {
        try await pool.write { db in
            guard let row = try Row.fetchOne(db, sql: "SELECT * FROM join_tokens WHERE token_hash = ?", arguments: [Data(hash)]) else {
                throw StoreError(.notFound, "store: no such join token")
            }
            let record = try Self.joinToken(row)
            if record.usedAt != nil {
                throw StoreError(.tokenUsed, "store: join token \(record.id) was already used")
            }
            if record.expiresAt <= time {
                throw StoreError(.tokenExpired, "store: join token \(record.id) expired at \(record.expiresAt)")
            }
            try db.execute(
                sql: "UPDATE join_tokens SET used_at = ? WHERE id = ?", arguments: [Int64(time.timeIntervalSince1970), record.id]
            )
            var redeemed = record
            redeemed.usedAt = time
            return redeemed
        }
    }

    private static func joinToken(_ row: Row) throws -> JoinTokenRecord {
        JoinTokenRecord(
            id: row["id"], tokenHash: Array(row["token_hash"] as Data),
            spiffeID: try (row["spiffe_id"] as String?).map(SPIFFEID.init(parsing:)),
            expiresAt: Date(timeIntervalSince1970: TimeInterval(row["expires_at"] as Int64)),
            createdAt: Date(timeIntervalSince1970: TimeInterval(row["created_at"] as Int64)),
            usedAt: (row["used_at"] as Int64?).map { Date(timeIntervalSince1970: TimeInterval($0)) }
        )
    }

    // MARK: Attested nodes

    public func admitAttestedNode(_ node: AttestedNode, exclusive: [Selector], audit: AuditEvent) async throws {
        try await pool.write { db in
            let id = node.spiffeID.description
            if try Bool.fetchOne(db, sql: "SELECT banned FROM attested_nodes WHERE spiffe_id = ?", arguments: [id]) == true {
                throw StoreError(.banned, "store: agent \(id) is banned")
            }
            for selector in exclusive {
                let holder = try String.fetchOne(
                    db, sql: "SELECT spiffe_id FROM node_selectors WHERE type = ? AND value = ? AND spiffe_id != ? LIMIT 1",
                    arguments: [selector.type, selector.value, id]
                )
                if let holder {
                    throw StoreError(.conflict, "store: \(selector) is already held by attested agent \(holder); evict it first")
                }
            }
            try Self.insertNode(node, at: audit.time, db)
            try self.append([audit], db)
        }
    }

    public func updateAttestedNode(_ node: AttestedNode, expectedSerial: String, audit: AuditEvent) async throws {
        try await pool.write { db in
            let id = node.spiffeID.description
            try db.execute(
                sql: """
                    UPDATE attested_nodes SET attestation_type = ?, serial_number = ?, expires_at = ?, attested_at = ?, attestation_data = ?,
                        evidence_at = ?, svid_authority = ?
                    WHERE spiffe_id = ? AND serial_number = ? AND banned = 0
                    """,
                arguments: [
                    node.attestationType, node.serialNumber, Int64(node.expiresAt.timeIntervalSince1970), Int64(node.attestedAt.timeIntervalSince1970),
                    Data(node.attestationData), Int64(node.evidenceAt.timeIntervalSince1970), node.svidAuthorityID, id, expectedSerial,
                ]
            )
            guard db.changesCount == 1 else {
                guard try Self.fetchNodes(db, spiffeID: node.spiffeID).first != nil else {
                    throw StoreError(.notFound, "store: no attested agent \(id)")
                }
                throw StoreError(.conflict, "store: agent \(id) was banned or re-issued since it was read; nothing was written")
            }
            try db.execute(sql: "DELETE FROM node_selectors WHERE spiffe_id = ?", arguments: [id])
            try Self.insertSelectors(node, db)
            try Self.recordChange(db, .node, id, audit.time)
            try self.append([audit], db)
        }
    }

    public func setHeldAuthorities(_ spiffeID: SPIFFEID, _ authorityIDs: [String], expectedSerial: String) async throws {
        try await pool.write { db in
            let id = spiffeID.description
            try db.execute(
                sql: "UPDATE attested_nodes SET held_authorities = ? WHERE spiffe_id = ? AND serial_number = ? AND banned = 0",
                arguments: [Set(authorityIDs).sorted().joined(separator: " "), id, expectedSerial]
            )
            guard db.changesCount == 1 else {
                guard try Self.fetchNodes(db, spiffeID: spiffeID).first != nil else {
                    throw StoreError(.notFound, "store: no attested agent \(id)")
                }
                throw StoreError(.conflict, "store: agent \(id) was banned or re-issued since it was read; nothing was written")
            }
        }
    }

    public func setAttestedNodeBanned(_ spiffeID: SPIFFEID, _ banned: Bool, audit: AuditEvent) async throws -> AttestedNode {
        try await pool.write { db in
            guard var node = try Self.fetchNodes(db, spiffeID: spiffeID).first else {
                throw StoreError(.notFound, "store: no attested agent \(spiffeID)")
            }
            guard node.banned != banned else {
                throw StoreError(.conflict, "store: agent \(spiffeID) is \(banned ? "already banned" : "not banned")")
            }
            try db.execute(
                sql: "UPDATE attested_nodes SET banned = ?, serial_number = '' WHERE spiffe_id = ?", arguments: [banned, spiffeID.description]
            )
            node.banned = banned
            node.serialNumber = ""
            try Self.recordChange(db, .node, spiffeID.description, audit.time)
            try self.append([audit], db)
            return node
        }
    }

    /// Saves many attested nodes in one transaction under one audit event (bulk imports).
    public func saveAttestedNodes(_ nodes: [AttestedNode], audit: AuditEvent) async throws {
        try await pool.write { db in
            for node in nodes { try Self.insertNode(node, at: audit.time, db) }
            try self.append([audit], db)
        }
    }

    /// Writes `node` in place of any record with its ID, and logs the change.
    private static func insertNode(_ node: AttestedNode, at time: Date, _ db: Database) throws {
        try db.cachedStatement(sql: "DELETE FROM attested_nodes WHERE spiffe_id = ?").execute(arguments: [node.spiffeID.description])
        try db.cachedStatement(
            sql: """
                INSERT INTO attested_nodes (spiffe_id, attestation_type, serial_number, expires_at, attested_at, banned, attestation_data, evidence_at, svid_authority,
                    held_authorities)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """
        ).execute(
            arguments: [
                node.spiffeID.description, node.attestationType, node.serialNumber, Int64(node.expiresAt.timeIntervalSince1970),
                Int64(node.attestedAt.timeIntervalSince1970), node.banned, Data(node.attestationData), Int64(node.evidenceAt.timeIntervalSince1970),
                node.svidAuthorityID, node.heldAuthorityIDs.joined(separator: " "),
            ]
        )
        try insertSelectors(node, db)
        try recordChange(db, .node, node.spiffeID.description, time)
    }

    private static func insertSelectors(_ node: AttestedNode, _ db: Database) throws {
        for selector in Set(node.selectors) {
            try db.cachedStatement(sql: "INSERT INTO node_selectors (spiffe_id, type, value) VALUES (?, ?, ?)")
                .execute(arguments: [node.spiffeID.description, selector.type, selector.value])
        }
    }

    public func attestedNode(_ spiffeID: SPIFFEID) async throws -> AttestedNode? {
        try await pool.read { db in try Self.fetchNodes(db, spiffeID: spiffeID).first }
    }

    public func attestedNodes() async throws -> [AttestedNode] {
        try await pool.read { db in try Self.fetchNodes(db, spiffeID: nil) }
    }

    public func deleteAttestedNode(_ spiffeID: SPIFFEID, audit: AuditEvent) async throws -> AttestedNode {
        try await pool.write { db in
            guard let node = try Self.fetchNodes(db, spiffeID: spiffeID).first else {
                throw StoreError(.notFound, "store: no attested agent \(spiffeID)")
            }
            try db.execute(sql: "DELETE FROM attested_nodes WHERE spiffe_id = ?", arguments: [spiffeID.description])
            try Self.recordChange(db, .node, spiffeID.description, audit.time)
            try self.append([audit], db)
            return node
        }
    }

    public func attestedNodes(evidenceBefore time: Date) async throws -> [AttestedNode] {
        try await pool.read { db in
            let ids = try String.fetchAll(
                db, sql: "SELECT spiffe_id FROM attested_nodes WHERE evidence_at < ? AND banned = 0 ORDER BY spiffe_id",
                arguments: [Int64(time.timeIntervalSince1970)]
            )
            return try ids.flatMap { try Self.fetchNodes(db, spiffeID: try SPIFFEID(parsing: $0)) }
        }
    }

    public func evictAttestedNode(_ spiffeID: SPIFFEID, evidenceBefore time: Date, audit: AuditEvent) async throws -> AttestedNode? {
        try await pool.write { db in
            guard let node = try Self.fetchNodes(db, spiffeID: spiffeID).first, node.evidenceAt < time else { return nil }
            try db.execute(sql: "DELETE FROM attested_nodes WHERE spiffe_id = ?", arguments: [spiffeID.description])
            try Self.recordChange(db, .node, spiffeID.description, audit.time)
            try self.append([audit], db)
            return node
        }
    }

    private static func fetchNodes(_ db: Database, spiffeID: SPIFFEID?) throws -> [AttestedNode] {
        let filter = spiffeID == nil ? "" : "WHERE spiffe_id = ?"
        let arguments: StatementArguments = spiffeID.map { [$0.description] } ?? []
        var selectors: [String: [Selector]] = [:]
        for row in try Row.fetchAll(db, sql: "SELECT * FROM node_selectors \(filter)", arguments: arguments) {
            selectors[row["spiffe_id"], default: []].append(try Selector(type: row["type"], value: row["value"]))
        }
        return try Row.fetchAll(db, sql: "SELECT * FROM attested_nodes \(filter) ORDER BY spiffe_id", arguments: arguments).map { row in
            let id: String = row["spiffe_id"]
            return AttestedNode(
                spiffeID: try SPIFFEID(parsing: id), attestationType: row["attestation_type"], serialNumber: row["serial_number"],
                expiresAt: Date(timeIntervalSince1970: TimeInterval(row["expires_at"] as Int64)),
                attestedAt: Date(timeIntervalSince1970: TimeInterval(row["attested_at"] as Int64)),
                banned: row["banned"], selectors: selectors[id] ?? [], attestationData: Array(row["attestation_data"] as Data),
                evidenceAt: Date(timeIntervalSince1970: TimeInterval(row["evidence_at"] as Int64)), svidAuthorityID: row["svid_authority"],
                heldAuthorityIDs: (row["held_authorities"] as String).split(separator: " ").map(String.init)
            )
        }
    }

    // MARK: CA journal and bundle

    public func authorities() async throws -> [AuthorityRecord] {
        try await pool.read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM ca_journal ORDER BY created_at, authority_id").map { row in
                guard let kind = AuthorityRecord.Kind(rawValue: row["kind"]), let state = AuthorityRecord.State(rawValue: row["state"]) else {
                    throw StoreError(.corrupt, "store: ca_journal row \(row["authority_id"] as String) has an unknown kind or state")
                }
                return AuthorityRecord(
                    authorityID: row["authority_id"], kind: kind, state: state,
                    notBefore: Date(timeIntervalSince1970: TimeInterval(row["not_before"] as Int64)),
                    notAfter: Date(timeIntervalSince1970: TimeInterval(row["not_after"] as Int64)),
                    material: Array(row["material"] as Data), keyFile: row["key_file"], upstream: row["upstream"],
                    createdAt: Date(timeIntervalSince1970: TimeInterval(row["created_at"] as Int64))
                )
            }
        }
    }

    public func saveAuthority(_ authority: AuthorityRecord, audit: AuditEvent) async throws {
        try await pool.write { db in
            try db.execute(
                sql: """
                    INSERT INTO ca_journal (authority_id, kind, state, not_before, not_after, material, key_file, upstream, created_at)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
                    ON CONFLICT (authority_id) DO UPDATE SET state = excluded.state
                    """,
                arguments: [
                    authority.authorityID, authority.kind.rawValue, authority.state.rawValue,
                    Int64(authority.notBefore.timeIntervalSince1970), Int64(authority.notAfter.timeIntervalSince1970),
                    Data(authority.material), authority.keyFile, authority.upstream, Int64(authority.createdAt.timeIntervalSince1970),
                ]
            )
            try Self.recordChange(db, .bundle, authority.authorityID, audit.time)
            try self.append([audit], db)
        }
    }

    public func bundleSequence() async throws -> UInt64 {
        try await pool.read { db in try UInt64.fetchOne(db, sql: "SELECT sequence FROM bundle_state WHERE id = 1") ?? 0 }
    }

    public func nextBundleSequence(audit: [AuditEvent]) async throws -> UInt64 {
        try await pool.write { db in
            try db.execute(sql: "UPDATE bundle_state SET sequence = sequence + 1 WHERE id = 1")
            try self.append(audit, db)
            return try UInt64.fetchOne(db, sql: "SELECT sequence FROM bundle_state WHERE id = 1") ?? 0
        }
    }

    // MARK: Audit

    public func appendAudit(_ events: [AuditEvent]) async throws {
        guard !events.isEmpty else { return }
        try await pool.write { db in try self.append(events, db) }
    }

    private func append(_ events: [AuditEvent], _ db: Database) throws {
        let last = try Row.fetchOne(db, sql: "SELECT sequence, hash FROM audit_log ORDER BY sequence DESC LIMIT 1")
        let start: Int64 = last?["sequence"] ?? 0
        var sequence = start
        var previous = (last?["hash"] as Data?).map(Array.init) ?? AuditChain.genesis
        for event in events {
            sequence += 1
            let hash = AuditChain.hash(sequence: sequence, event: event, previousHash: previous)
            try db.execute(
                sql: """
                    INSERT INTO audit_log (sequence, time_ms, caller_uid, actor, action, target, result, detail, previous_hash, hash)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                    """,
                arguments: [
                    sequence, Int64((event.time.timeIntervalSince1970 * 1000).rounded()), event.callerUID, event.actor.stored, event.action,
                    event.target, event.result, event.detail, Data(previous), Data(hash),
                ]
            )
            previous = hash
        }
        if let checkpointer, sequence / checkpointer.interval > start / checkpointer.interval {
            try checkpoint(sequence: sequence, head: previous, time: events.last?.time ?? Date(), checkpointer, db)
        }
    }

    /// Signs and stores a checkpoint of the head in this transaction; keeps it beside the key once committed.
    private func checkpoint(sequence: Int64, head: [UInt8], time: Date, _ checkpointer: AuditCheckpointer, _ db: Database) throws {
        let checkpoint = try checkpointer.sign(sequence: sequence, head: head, time: time)
        try db.execute(
            sql: "INSERT INTO audit_checkpoints (sequence, head_hash, time_ms, signature, key_id) VALUES (?, ?, ?, ?, ?)",
            arguments: [checkpoint.sequence, Data(checkpoint.headHash), checkpoint.timeMS, Data(checkpoint.signature), checkpoint.keyID]
        )
        db.afterNextTransaction { _ in checkpointer.recordHead(checkpoint) }
    }

    public func checkpointAudit(at time: Date) async throws -> AuditCheckpoint? {
        guard let checkpointer else { return nil }
        return try await pool.write { db in
            guard let last = try Row.fetchOne(db, sql: "SELECT sequence, hash FROM audit_log ORDER BY sequence DESC LIMIT 1") else { return nil }
            let sequence: Int64 = last["sequence"]
            let covered = try Int64.fetchOne(db, sql: "SELECT MAX(sequence) FROM audit_checkpoints") ?? 0
            guard sequence > covered else { return nil }
            try self.checkpoint(sequence: sequence, head: Array(last["hash"] as Data), time: time, checkpointer, db)
            return try Self.checkpoints(db).last
        }
    }

    public func auditCheckpoints() async throws -> [AuditCheckpoint] {
        try await pool.read { db in try Self.checkpoints(db) }
    }

    private static func checkpoints(_ db: Database) throws -> [AuditCheckpoint] {
        try Row.fetchAll(db, sql: "SELECT * FROM audit_checkpoints ORDER BY sequence").map { row in
            AuditCheckpoint(
                sequence: row["sequence"], headHash: Array(row["head_hash"] as Data), timeMS: row["time_ms"],
                signature: Array(row["signature"] as Data), keyID: row["key_id"]
            )
        }
    }

    public func auditRecords(after sequence: Int64, limit: Int) async throws -> [AuditRecord] {
        try await pool.read { db in
            try Row.fetchAll(
                db, sql: "SELECT * FROM audit_log WHERE sequence > ? ORDER BY sequence LIMIT ?", arguments: [sequence, limit]
            ).map(Self.auditRecord)
        }
    }

    public func verifyAudit(trust: AuditTrust?) async throws -> AuditVerification {
        try await pool.read { db in
            let cursor = try Row.fetchCursor(db, sql: "SELECT * FROM audit_log ORDER BY sequence")
            var records: [AuditRecord] = []
            while let row = try cursor.next() { records.append(Self.auditRecord(row)) }
            guard let trust else { return AuditChain.verify(records) }
            return AuditChain.verify(records, checkpoints: try Self.checkpoints(db), trust: trust)
        }
    }

    private static func auditRecord(_ row: Row) -> AuditRecord {
        AuditRecord(
            sequence: row["sequence"],
            event: AuditEvent(
                time: Date(timeIntervalSince1970: TimeInterval(row["time_ms"] as Int64) / 1000),
                actor: AuditActor(stored: row["actor"], callerUID: row["caller_uid"]), action: row["action"], target: row["target"], result: row["result"], detail: row["detail"]
            ),
            previousHash: Array(row["previous_hash"] as Data), hash: Array(row["hash"] as Data)
        )
    }

    // MARK: Change log

    private static func recordChange(_ db: Database, _ kind: Change.Kind, _ key: String, _ time: Date) throws {
        try db.cachedStatement(sql: "INSERT INTO change_log (kind, key, time_ms) VALUES (?, ?, ?)")
            .execute(arguments: [kind.rawValue, key, Int64((time.timeIntervalSince1970 * 1000).rounded())])
    }

    public func latestChange() async throws -> Int64 {
        try await pool.read { db in try Self.latestChange(db) }
    }

    /// The latest change, read on the calling thread.
    private func latestChangeNow() throws -> Int64 {
        try pool.read { db in try Self.latestChange(db) }
    }

    private static func latestChange(_ db: Database) throws -> Int64 {
        try Int64.fetchOne(db.cachedStatement(sql: "SELECT MAX(sequence) FROM change_log")) ?? 0
    }

    public func changes(after sequence: Int64) async throws -> [Change] {
        try await pool.read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM change_log WHERE sequence > ? ORDER BY sequence", arguments: [sequence]).compactMap { row in
                Change.Kind(rawValue: row["kind"]).map { Change(sequence: row["sequence"], kind: $0, key: row["key"]) }
            }
        }
    }
}
