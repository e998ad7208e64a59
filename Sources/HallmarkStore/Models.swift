// What the store keeps: registration entries, join tokens, attested nodes, CA authorities, and
// the audit trail. Plain values; validation of admin input happens before they reach the store.

public import Foundation
public import HallmarkAttestation
public import SPIFFE

/// A registration entry, with SPIRE's fields.
public struct RegistrationEntry: Hashable, Sendable {
    public var id: String
    public var spiffeID: SPIFFEID
    public var parentID: SPIFFEID
    /// At least one; kept sorted.
    public var selectors: [Selector]
    /// Seconds; 0 means the server's default.
    public var x509SVIDTTL: Int
    /// Seconds; 0 means the server's default.
    public var jwtSVIDTTL: Int
    public var dnsNames: [String]
    public var admin: Bool
    public var downstream: Bool
    public var expiresAt: Date?
    public var hint: String
    /// Increases by one on every update.
    public var revisionNumber: Int64
    public var createdAt: Date

    public init(
        id: String = UUID().uuidString.lowercased(), spiffeID: SPIFFEID, parentID: SPIFFEID, selectors: [Selector],
        x509SVIDTTL: Int = 0, jwtSVIDTTL: Int = 0, dnsNames: [String] = [], admin: Bool = false,
        downstream: Bool = false, expiresAt: Date? = nil, hint: String = "", revisionNumber: Int64 = 0,
        createdAt: Date = Date()
    ) {
        self.id = id
        self.spiffeID = spiffeID
        self.parentID = parentID
        self.selectors = selectors.sorted()
        self.x509SVIDTTL = x509SVIDTTL
        self.jwtSVIDTTL = jwtSVIDTTL
        self.dnsNames = dnsNames
        self.admin = admin
        self.downstream = downstream
        self.expiresAt = expiresAt
        self.hint = hint
        self.revisionNumber = revisionNumber
        self.createdAt = createdAt
    }

    /// The selectors sorted and joined: with the SPIFFE ID and parent, what makes an entry unique.
    public var selectorKey: String { Set(selectors).sorted().map(\.description).joined(separator: "\n") }
}

/// Which entries to list; every field that is set must match.
public struct EntryFilter: Hashable, Sendable {
    public var id: String?
    public var spiffeID: SPIFFEID?
    public var parentID: SPIFFEID?
    /// Entries whose parent is any of these (with `parentID`, both must hold).
    public var parentIDs: [SPIFFEID]?
    /// Entries that carry all of these.
    public var selectors: [Selector]

    public init(id: String? = nil, spiffeID: SPIFFEID? = nil, parentID: SPIFFEID? = nil, parentIDs: [SPIFFEID]? = nil, selectors: [Selector] = []) {
        self.id = id
        self.spiffeID = spiffeID
        self.parentID = parentID
        self.parentIDs = parentIDs
        self.selectors = selectors
    }

    public static let all = EntryFilter()
}

/// A join token as stored: its hash, never the token.
public struct JoinTokenRecord: Hashable, Sendable {
    public var id: String
    public var tokenHash: [UInt8]
    /// The alias the redeeming agent is also known as, if any.
    public var spiffeID: SPIFFEID?
    public var expiresAt: Date
    public var createdAt: Date
    public var usedAt: Date?

    public init(id: String, tokenHash: [UInt8], spiffeID: SPIFFEID?, expiresAt: Date, createdAt: Date, usedAt: Date? = nil) {
        self.id = id
        self.tokenHash = tokenHash
        self.spiffeID = spiffeID
        self.expiresAt = expiresAt
        self.createdAt = createdAt
        self.usedAt = usedAt
    }
}

/// A node that has attested.
public struct AttestedNode: Hashable, Sendable {
    public var spiffeID: SPIFFEID
    public var attestationType: String
    /// The serial number of the agent's current SVID (hex).
    public var serialNumber: String
    public var expiresAt: Date
    public var attestedAt: Date
    public var banned: Bool
    public var selectors: [Selector]
    /// What the attestation method keeps to check the node again (the TPM AK's public area).
    public var attestationData: [UInt8]
    /// When the node last presented evidence that passed (attestation or re-attestation).
    public var evidenceAt: Date
    /// The X.509 authority (subject key identifier, hex) that signed the node's current SVID.
    public var svidAuthorityID: String
    /// The X.509 authorities the workload SVIDs its agent holds chain to, as the agent last
    /// reported them (sorted; empty until it reports). Written only by ``Store/setHeldAuthorities(_:_:expectedSerial:)``.
    public var heldAuthorityIDs: [String]

    public init(
        spiffeID: SPIFFEID, attestationType: String, serialNumber: String, expiresAt: Date, attestedAt: Date,
        banned: Bool = false, selectors: [Selector] = [], attestationData: [UInt8] = [], evidenceAt: Date? = nil, svidAuthorityID: String = "",
        heldAuthorityIDs: [String] = []
    ) {
        self.spiffeID = spiffeID
        self.attestationType = attestationType
        self.serialNumber = serialNumber
        self.expiresAt = expiresAt
        self.attestedAt = attestedAt
        self.banned = banned
        self.selectors = selectors.sorted()
        self.attestationData = attestationData
        self.evidenceAt = evidenceAt ?? attestedAt
        self.svidAuthorityID = svidAuthorityID
        self.heldAuthorityIDs = Array(Set(heldAuthorityIDs)).sorted()
    }
}

/// A CA key in the journal.
public struct AuthorityRecord: Hashable, Sendable {
    public enum Kind: String, Sendable, CaseIterable { case x509, jwt }
    /// SPIRE's life of a key: prepared (published, not signing), active (signing), old (no longer
    /// signing, still trusted), tainted (still trusted, everything it signed is being replaced),
    /// revoked (out of the bundle for good).
    public enum State: String, Sendable, CaseIterable { case prepared, active, old, tainted, revoked }

    public var authorityID: String
    public var kind: Kind
    public var state: State
    public var notBefore: Date
    public var notAfter: Date
    /// The CA certificate's DER (x509) or the public key's DER (jwt).
    public var material: [UInt8]
    /// The private key's file name in the data directory's key folder.
    public var keyFile: String
    public var upstream: Bool
    public var createdAt: Date

    public init(
        authorityID: String, kind: Kind, state: State, notBefore: Date, notAfter: Date, material: [UInt8],
        keyFile: String, upstream: Bool = false, createdAt: Date = Date()
    ) {
        self.authorityID = authorityID
        self.kind = kind
        self.state = state
        self.notBefore = notBefore
        self.notAfter = notAfter
        self.material = material
        self.keyFile = keyFile
        self.upstream = upstream
        self.createdAt = createdAt
    }
}

/// Who took an audited action.
public enum AuditActor: Hashable, Sendable, CustomStringConvertible {
    /// An admin on the admin socket, by the uid the kernel reported.
    case admin(uid: Int64)
    /// The server itself: its key rotation, expiry of entries, eviction of stale nodes.
    case server
    /// An agent, by its SPIFFE ID: its attestation, renewals and SVID requests.
    case agent(SPIFFEID)
    /// A record written before actors were kept: only the uid column (-1 for anything but an admin).
    case unrecorded(callerUID: Int64)

    /// `admin:UID`, `server` or `agent:SPIFFE-ID`, as stored; nil for ``unrecorded(callerUID:)``.
    public var stored: String? {
        switch self {
        case .admin(let uid): "admin:\(uid)"
        case .server: "server"
        case .agent(let id): "agent:\(id)"
        case .unrecorded: nil
        }
    }

    /// The actor a stored value names; a record with none (or one this version cannot read) is unrecorded.
    public init(stored: String?, callerUID: Int64) {
        if stored == "server" {
            self = .server
        } else if let uid = stored.flatMap({ $0.hasPrefix("admin:") ? Int64($0.dropFirst(6)) : nil }) {
            self = .admin(uid: uid)
        } else if let id = stored.flatMap({ $0.hasPrefix("agent:") ? try? SPIFFEID(parsing: String($0.dropFirst(6))) : nil }) {
            self = .agent(id)
        } else {
            self = .unrecorded(callerUID: callerUID)
        }
    }

    /// The uid column: the admin's uid, -1 for the server and agents.
    public var callerUID: Int64 {
        switch self {
        case .admin(let uid): uid
        case .unrecorded(let uid): uid
        case .server, .agent: -1
        }
    }

    public var description: String { stored ?? "uid=\(callerUID)" }
}

/// Something to record in the audit log.
public struct AuditEvent: Hashable, Sendable {
    public var time: Date
    public var actor: AuditActor
    public var action: String
    public var target: String
    public var result: String
    public var detail: String

    public init(time: Date = Date(), actor: AuditActor, action: String, target: String, result: String = "ok", detail: String = "") {
        self.time = time
        self.actor = actor
        self.action = action
        self.target = target
        self.result = result
        self.detail = detail
    }

    /// The uid column (see ``AuditActor/callerUID``).
    public var callerUID: Int64 { actor.callerUID }
}

/// A record of the audit log, with its place in the hash chain.
public struct AuditRecord: Hashable, Sendable {
    public var sequence: Int64
    public var event: AuditEvent
    public var previousHash: [UInt8]
    public var hash: [UInt8]

    public init(sequence: Int64, event: AuditEvent, previousHash: [UInt8], hash: [UInt8]) {
        self.sequence = sequence
        self.event = event
        self.previousHash = previousHash
        self.hash = hash
    }
}

/// The outcome of checking the audit chain.
public struct AuditVerification: Hashable, Sendable {
    public var records: Int64
    /// The first record that no longer matches, if any.
    public var firstBadSequence: Int64?
    public var reason: String?

    public var intact: Bool { firstBadSequence == nil }

    public init(records: Int64, firstBadSequence: Int64? = nil, reason: String? = nil) {
        self.records = records
        self.firstBadSequence = firstBadSequence
        self.reason = reason
    }
}

/// Registration entries as of one point of the change log.
public struct EntrySnapshot: Sendable {
    /// Every entry (a full snapshot) or those created or changed since an earlier point.
    public var entries: [RegistrationEntry]
    /// Each entry's place in storage order (its row), by which entries created in the same second
    /// are ordered; an update stores an entry anew, at a later place.
    public var positions: [Int64]
    /// Entries deleted since the earlier point.
    public var removedIDs: [String]
    /// The change log's latest sequence when the snapshot was read.
    public var sequence: Int64

    public init(entries: [RegistrationEntry], positions: [Int64], removedIDs: [String], sequence: Int64) {
        precondition(entries.count == positions.count, "one position per entry")
        self.entries = entries
        self.positions = positions
        self.removedIDs = removedIDs
        self.sequence = sequence
    }
}

/// One entry of the change log.
public struct Change: Hashable, Sendable {
    public enum Kind: String, Sendable { case entry, node, bundle }
    public var sequence: Int64
    public var kind: Kind
    public var key: String

    public init(sequence: Int64, kind: Kind, key: String) {
        self.sequence = sequence
        self.kind = kind
        self.key = key
    }
}
