// The one protocol every storage backend implements. Each mutation commits, together with its
// audit record and change-log row, before it returns: an acknowledged write is durable.

public import Foundation
public import HallmarkAttestation
public import SPIFFE

public protocol Store: CAJournal, Sendable {
    // Registration entries
    func createEntry(_ entry: RegistrationEntry, audit: AuditEvent) async throws -> RegistrationEntry
    /// Replaces an entry's mutable fields; `entry.revisionNumber`, when non-zero, must match.
    func updateEntry(_ entry: RegistrationEntry, audit: AuditEvent) async throws -> RegistrationEntry
    func deleteEntry(id: String, audit: AuditEvent) async throws -> RegistrationEntry
    func entries(matching filter: EntryFilter) async throws -> [RegistrationEntry]
    /// Every entry whose parent is one of `roots` or, transitively, another such entry's SPIFFE
    /// ID: one consistent read. Each entry appears once, oldest first (creation time, then the
    /// order they were stored in; an update stores an entry anew).
    func descendants(of roots: [SPIFFEID]) async throws -> [RegistrationEntry]
    /// Every entry, in storage order, and the change-log sequence they are at: one consistent read.
    func allEntries() async throws -> EntrySnapshot
    /// The entries changed after change-log `sequence`, as they are now, and the IDs of those
    /// since deleted: one consistent read.
    func entryChanges(after sequence: Int64) async throws -> EntrySnapshot
    /// Entries whose `expires_at` is at or before `time` are deleted, each audited; returns them.
    func pruneExpiredEntries(at time: Date) async throws -> [RegistrationEntry]

    // Join tokens
    func createJoinToken(_ token: JoinTokenRecord, audit: AuditEvent) async throws
    /// Marks the token with this hash used and returns it; refuses unknown, expired and used tokens.
    func redeemJoinToken(hash: [UInt8], at time: Date) async throws -> JoinTokenRecord

    // Attested nodes. Every write checks, inside its own transaction, that the record it replaces
    // is still the one its caller decided on: no decision made on a stale read is ever written.
    /// Writes the node that attestation proved. Refuses (`.banned`) when the node's existing record
    /// is banned, and (`.conflict`) when another node holds one of `exclusive` (one GPU backs one node).
    func admitAttestedNode(_ node: AttestedNode, exclusive: [Selector], audit: AuditEvent) async throws
    /// Replaces a node's record only while it is unbanned and still carries SVID serial
    /// `expectedSerial` (`.conflict` otherwise, `.notFound` when it is gone).
    func updateAttestedNode(_ node: AttestedNode, expectedSerial: String, audit: AuditEvent) async throws
    /// Records which X.509 authorities the node's workload SVIDs chain to (what its agent reports),
    /// under the same condition as ``updateAttestedNode(_:expectedSerial:audit:)``. Not audited: it
    /// changes no trust, only what a revoke must wait for. The other writes leave it as it is.
    func setHeldAuthorities(_ spiffeID: SPIFFEID, _ authorityIDs: [String], expectedSerial: String) async throws
    /// Bans (clearing the SVID serial, so the current SVID stays refused after an unban) or unbans;
    /// refuses an unknown node (`.notFound`) and a node already in that state (`.conflict`).
    func setAttestedNodeBanned(_ spiffeID: SPIFFEID, _ banned: Bool, audit: AuditEvent) async throws -> AttestedNode
    func attestedNode(_ spiffeID: SPIFFEID) async throws -> AttestedNode?
    func attestedNodes() async throws -> [AttestedNode]
    /// The unbanned nodes whose last passing evidence is older than `time`.
    func attestedNodes(evidenceBefore time: Date) async throws -> [AttestedNode]
    /// Removes an attested node (eviction) and returns it; refuses an unknown one.
    func deleteAttestedNode(_ spiffeID: SPIFFEID, audit: AuditEvent) async throws -> AttestedNode
    /// Removes the node only while its last passing evidence is older than `time`, so a node that
    /// re-attested meanwhile is kept; returns it, or nil when nothing was removed.
    func evictAttestedNode(_ spiffeID: SPIFFEID, evidenceBefore time: Date, audit: AuditEvent) async throws -> AttestedNode?

    // CA key journal and bundle: see CAJournal.

    // Audit log
    func appendAudit(_ events: [AuditEvent]) async throws
    func auditRecords(after sequence: Int64, limit: Int) async throws -> [AuditRecord]
    /// Checks the hash chain and, given the trust kept outside the database, every checkpoint.
    func verifyAudit(trust: AuditTrust?) async throws -> AuditVerification
    /// Signs a checkpoint of the newest record, unless one covers it already (at shutdown).
    func checkpointAudit(at time: Date) async throws -> AuditCheckpoint?
    func auditCheckpoints() async throws -> [AuditCheckpoint]

    // Change log
    func latestChange() async throws -> Int64
    func changes(after sequence: Int64) async throws -> [Change]
}

/// A store failure with a code to act on.
public struct StoreError: Error, Hashable, Sendable, CustomStringConvertible {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        fileprivate enum Base: String { case notFound, alreadyExists, revisionMismatch, tokenExpired, tokenUsed, newerSchema, corrupt, banned, conflict, migrationFailed, invalidURL }
        fileprivate let base: Base
        public var description: String { base.rawValue }
        public static let notFound = Code(base: .notFound)
        public static let alreadyExists = Code(base: .alreadyExists)
        public static let revisionMismatch = Code(base: .revisionMismatch)
        public static let tokenExpired = Code(base: .tokenExpired)
        public static let tokenUsed = Code(base: .tokenUsed)
        public static let newerSchema = Code(base: .newerSchema)
        public static let corrupt = Code(base: .corrupt)
        /// The record is banned, so the write that would trust it again is refused.
        public static let banned = Code(base: .banned)
        /// The record changed since the caller read it, or another record holds what must be unique.
        public static let conflict = Code(base: .conflict)
        /// A schema migration the database refused; nothing of it was kept.
        public static let migrationFailed = Code(base: .migrationFailed)
        /// A database URL that cannot be used; the message names the part and the rule.
        public static let invalidURL = Code(base: .invalidURL)
    }

    public let code: Code
    public let message: String
    /// The error this one came from, described, when another error caused it.
    public let underlying: String?

    public init(_ code: Code, _ message: String, underlying: (any Error)? = nil) {
        self.code = code
        self.message = message
        self.underlying = underlying.map { "\($0)" }
    }

    public var description: String { message }
}

/// What the CA's key life needs of a store: the journal of authorities (each change written with
/// its audit record) and the bundle's sequence number. CAManager depends on this alone.
public protocol CAJournal: Sendable {
    /// The journal, in creation order.
    func authorities() async throws -> [AuthorityRecord]
    func saveAuthority(_ authority: AuthorityRecord, audit: AuditEvent) async throws
    func bundleSequence() async throws -> UInt64
    /// Increases the bundle's sequence number by one and returns the new value; `audit`, what
    /// changed the bundle, is recorded in the same transaction.
    func nextBundleSequence(audit: [AuditEvent]) async throws -> UInt64
}

extension CAJournal {
    /// A new bundle sequence for a change audited with its journal entry.
    public func nextBundleSequence() async throws -> UInt64 { try await nextBundleSequence(audit: []) }
}
