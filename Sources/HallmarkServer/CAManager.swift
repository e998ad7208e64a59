// Owns the CA keys, one journal of X.509 and one of JWT authorities, and carries out what the
// KeySlotPlanner (HallmarkCA) decides of their life, SPIRE's: prepared at half of the active key's
// life, activated at five sixths, in the bundle until a grace period after expiry; taint and
// revoke by an admin, under the planner's rules. Each step is journalled in the store and
// audited. Time comes from an injected clock.

public import Foundation
import Crypto
public import HallmarkCA
public import HallmarkStore
public import Logging
public import SPIFFE
import SwiftASN1
public import X509

public actor CAManager {
    private let config: ServerConfig
    private let store: any CAJournal
    private let logger: Logger
    private let clock: @Sendable () -> Date
    private let planner: KeySlotPlanner
    private var x509: [String: X509CA] = [:]
    private var jwt: [String: JWTSigningKey] = [:]
    private var records: [AuthorityRecord] = []
    private var upstream: (certificate: Certificate, key: Certificate.PrivateKey)?
    /// The authorities the bundle held at the last tick, to notice keys leaving it with time.
    private var published: Set<String> = []
    /// JWT-SVIDs signed, by key ID: the latest expiry given to each node. Kept in memory only (a
    /// restarted server forgets them, and then does not hold back a revoke for them).
    private var jwtIssued: [String: [SPIFFEID: Date]] = [:]

    public init(config: ServerConfig, store: any CAJournal, logger: Logger, clock: @escaping @Sendable () -> Date = { Date() }) {
        self.config = config
        self.store = store
        self.logger = logger
        self.clock = clock
        planner = KeySlotPlanner(gracePeriod: config.bundleGracePeriod)
    }

    /// Loads the journal and its keys, then brings the slots up to date with the clock.
    public func start() async throws {
        try KeyFile.ensurePrivateDirectory(config.keyDirectory)
        records = try await store.authorities()
        upstream = try loadUpstream()
        let now = clock()
        for record in records where record.state != .revoked && record.notAfter.addingTimeInterval(config.bundleGracePeriod) > now {
            let keyPath = (config.keyDirectory as NSString).appendingPathComponent(record.keyFile)
            switch record.kind {
            case .x509:
                let certificate = try Certificate(derEncoded: record.material)
                let ca = try X509CA(
                    certificate: certificate, privateKey: KeyFile.readPrivateKey(keyPath), anchor: record.upstream ? upstream?.certificate : nil
                )
                if record.notAfter > now { try await ca.selfTest(at: now) }
                x509[record.authorityID] = ca
            case .jwt:
                jwt[record.authorityID] = JWTSigningKey(keyID: record.authorityID, privateKey: try KeyFile.readP256(keyPath), notAfter: record.notAfter)
            }
        }
        published = planner.published(slots(nil), at: now)
        try await tick()
    }

    private func loadUpstream() throws -> (certificate: Certificate, key: Certificate.PrivateKey)? {
        guard let certPath = config.upstreamCACert, let keyPath = config.upstreamCAKey else { return nil }
        guard let pem = FileManager.default.contents(atPath: certPath) else {
            throw CAError(.configuration, "ca: cannot read the upstream CA certificate \(certPath)")
        }
        let certificates = try X509SVID.certificates(pem: String(decoding: pem, as: UTF8.self))
        guard let certificate = certificates.first else { throw CAError(.configuration, "ca: \(certPath) holds no certificate") }
        return (certificate, try KeyFile.readPrivateKey(keyPath))
    }

    // MARK: The clock's part

    /// Carries out what the key-slot planner finds due: prepares and activates keys as their
    /// time comes, and forgets keys that left the bundle.
    /// - Returns: whether anything agents should hear about changed (signing key or bundle).
    @discardableResult
    public func tick() async throws -> Bool {
        let now = clock()
        var changed = false
        for kind in AuthorityRecord.Kind.allCases {
            // Each action changes the slots; the planner is asked again after each. Two suffice
            // (prepare, then activate); the bound only guards against a planner that never settles.
            for _ in 0..<4 {
                guard let action = planner.decide(slots(kind), published: [], now: now).first else { break }
                switch action {
                case .prepare: _ = try await prepareKey(kind, now: now, actor: .server)
                case .activate(let id): try await activateKey(try named(kind, id), now: now, actor: .server)
                case .expire: break
                }
                changed = true
            }
        }
        // Across both kinds: which keys leave the bundle does not depend on the other slots.
        let expired = planner.expired(slots(nil), published: published, now: now)
        if !expired.isEmpty {
            var audit: [AuditEvent] = []
            for gone in expired {
                logger.info("authority left the bundle after its grace period", metadata: ["authority_id": "\(gone)"])
                let kind = x509[gone] != nil ? "x509" : "jwt"
                audit.append(AuditEvent(
                    time: now, actor: .server, action: "authority.\(kind).expire", target: gone, detail: "left the bundle after its grace period"
                ))
                x509[gone] = nil
                jwt[gone] = nil
                published.remove(gone)
            }
            _ = try await store.nextBundleSequence(audit: audit)
            changed = true
        }
        return changed
    }

    // MARK: Admin operations, with SPIRE's rules (the planner's)

    /// Prepares the next key of a kind; it is published at once and signs nothing until activated.
    public func prepare(_ kind: AuthorityRecord.Kind, actor: AuditActor) async throws -> AuthorityRecord {
        try planner.checkPrepare(slots(kind))
        return try await prepareKey(kind, now: clock(), actor: actor)
    }

    /// Activates the prepared key (which must be `authorityID` when one is named); the active one becomes old.
    public func activate(_ kind: AuthorityRecord.Kind, authorityID: String?, actor: AuditActor) async throws -> AuthorityRecord {
        if let authorityID { _ = try named(kind, authorityID) }
        let target = try planner.activation(slots(kind), named: authorityID, kind: kind.rawValue, now: clock())
        return try await activateKey(try named(kind, target.id), now: clock(), actor: actor)
    }

    /// Taints an old key: it stays trusted, but agents replace every SVID that chains to it.
    public func taint(_ kind: AuthorityRecord.Kind, authorityID: String, actor: AuditActor) async throws -> AuthorityRecord {
        var target = try named(kind, authorityID)
        try planner.checkTaint(Self.slot(target))
        target.state = .tainted
        try await save(target, action: "taint", actor: actor, detail: "agents re-sign every SVID that chains to it")
        _ = try await store.nextBundleSequence()
        logger.notice("tainted authority", metadata: ["kind": "\(kind.rawValue)", "authority_id": "\(authorityID)"])
        return target
    }

    /// Revokes a tainted key: it leaves the bundle, and nothing it signed validates any more.
    public func revoke(_ kind: AuthorityRecord.Kind, authorityID: String, actor: AuditActor) async throws -> AuthorityRecord {
        var target = try named(kind, authorityID)
        try planner.checkRevoke(Self.slot(target))
        if target.upstream {
            throw CAError(.failedPrecondition, "authority: \(authorityID) chains to the upstream CA, which is what the bundle holds; revoke it at the upstream CA")
        }
        target.state = .revoked
        try await save(target, action: "revoke", actor: actor, detail: "removed from the bundle")
        x509[authorityID] = nil
        jwt[authorityID] = nil
        // The key can never sign again.
        try? FileManager.default.removeItem(atPath: (config.keyDirectory as NSString).appendingPathComponent(target.keyFile))
        published.remove(authorityID)
        _ = try await store.nextBundleSequence()
        logger.notice("revoked authority", metadata: ["kind": "\(kind.rawValue)", "authority_id": "\(authorityID)"])
        return target
    }

    // MARK: Key slots

    /// The journal's keys of a kind (nil: of both), as the planner sees them.
    private func slots(_ kind: AuthorityRecord.Kind?) -> [KeySlotPlanner.Slot] {
        records.filter { kind == nil || $0.kind == kind }.map(Self.slot)
    }

    private static func slot(_ record: AuthorityRecord) -> KeySlotPlanner.Slot {
        // The two enumerations name the same five states.
        KeySlotPlanner.Slot(id: record.authorityID, state: KeySlotPlanner.State(rawValue: record.state.rawValue)!, notBefore: record.notBefore, notAfter: record.notAfter)
    }

    private func record(_ kind: AuthorityRecord.Kind, _ state: AuthorityRecord.State) -> AuthorityRecord? {
        records.last { $0.kind == kind && $0.state == state }
    }

    private func named(_ kind: AuthorityRecord.Kind, _ authorityID: String) throws -> AuthorityRecord {
        guard let found = records.first(where: { $0.kind == kind && $0.authorityID == authorityID }) else {
            throw StoreError(.notFound, "authority: no \(kind.rawValue) authority with ID \(authorityID)")
        }
        return found
    }

    private func save(_ record: AuthorityRecord, action: String, actor: AuditActor, detail: String = "") async throws {
        try await store.saveAuthority(
            record,
            audit: AuditEvent(time: clock(), actor: actor, action: "authority.\(record.kind.rawValue).\(action)", target: record.authorityID, detail: detail)
        )
        if let index = records.firstIndex(where: { $0.authorityID == record.authorityID }) {
            records[index] = record
        } else {
            records.append(record)
        }
    }

    private func prepareKey(_ kind: AuthorityRecord.Kind, now: Date, actor: AuditActor) async throws -> AuthorityRecord {
        let record: AuthorityRecord
        switch kind {
        case .x509:
            let ca: X509CA
            if let upstream {
                ca = try X509CA.intermediate(
                    trustDomain: config.trustDomain, keyType: config.caKeyType, ttl: config.caTTL, now: now,
                    upstreamCertificate: upstream.certificate, upstreamKey: upstream.key
                )
            } else {
                ca = try X509CA.selfSigned(trustDomain: config.trustDomain, keyType: config.caKeyType, ttl: config.caTTL, now: now)
            }
            try await ca.selfTest(at: now)
            let keyFile = "x509-\(ca.authorityID).key"
            try KeyFile.write(ca.privateKey, to: (config.keyDirectory as NSString).appendingPathComponent(keyFile))
            record = AuthorityRecord(
                authorityID: ca.authorityID, kind: .x509, state: .prepared, notBefore: ca.certificate.notValidBefore,
                notAfter: ca.certificate.notValidAfter, material: ca.certificate.derBytes, keyFile: keyFile,
                upstream: ca.isUpstreamSigned, createdAt: now
            )
            x509[ca.authorityID] = ca
        case .jwt:
            let key = JWTSigningKey.generate(notAfter: now.addingTimeInterval(config.caTTL))
            let keyFile = "jwt-\(key.keyID).key"
            try KeyFile.write(key.privateKey, to: (config.keyDirectory as NSString).appendingPathComponent(keyFile))
            record = AuthorityRecord(
                authorityID: key.keyID, kind: .jwt, state: .prepared, notBefore: now, notAfter: key.notAfter,
                material: Array(key.privateKey.publicKey.derRepresentation), keyFile: keyFile, createdAt: now
            )
            jwt[key.keyID] = key
        }
        try await save(record, action: "prepare", actor: actor, detail: "published in the bundle; signs nothing until activated")
        // Published before it signs anything: agents and workloads learn it a key-life ahead.
        published.insert(record.authorityID)
        _ = try await store.nextBundleSequence()
        logger.info("prepared authority", metadata: ["kind": "\(kind.rawValue)", "authority_id": "\(record.authorityID)", "not_after": "\(record.notAfter)"])
        return record
    }

    @discardableResult
    private func activateKey(_ next: AuthorityRecord, now: Date, actor: AuditActor) async throws -> AuthorityRecord {
        if var active = record(next.kind, .active) {
            active.state = .old
            try await save(active, action: "retire", actor: actor, detail: "replaced by \(next.authorityID)")
        }
        var activated = next
        activated.state = .active
        try await save(activated, action: "activate", actor: actor)
        _ = try await store.nextBundleSequence()
        logger.info("activated authority", metadata: ["kind": "\(next.kind.rawValue)", "authority_id": "\(next.authorityID)", "not_after": "\(next.notAfter)"])
        return activated
    }

    // MARK: Signing and the bundle

    /// The X.509 CA that signs now.
    public func activeX509() throws -> X509CA {
        guard let record = record(.x509, .active), let ca = x509[record.authorityID] else { throw CAError(.unavailable, "ca: no active X.509 authority") }
        return ca
    }

    /// The JWT key that signs now.
    public func activeJWT() throws -> JWTSigningKey {
        guard let record = record(.jwt, .active), let key = jwt[record.authorityID] else { throw CAError(.unavailable, "ca: no active JWT authority") }
        return key
    }

    /// The journal, in creation order.
    public func authorities() -> [AuthorityRecord] { records }

    /// The IDs of the authorities in the bundle now.
    public func publishedAuthorityIDs() -> Set<String> { published }

    /// The IDs of tainted authorities (X.509 subject key identifiers in hex, JWT key IDs).
    /// Notes that `node` was given a JWT-SVID from `keyID` valid until `expiresAt`.
    func recordJWTIssued(keyID: String, to node: SPIFFEID, expiresAt: Date, now: Date) {
        var holders = jwtIssued[keyID, default: [:]]
        if holders[node].map({ $0 < expiresAt }) ?? true { holders[node] = expiresAt }
        // Each node once per key; expired ones are dropped as others are added.
        if holders.count > 1024 { holders = holders.filter { $0.value > now } }
        jwtIssued[keyID] = holders
    }

    /// The nodes holding unexpired JWT-SVIDs from each key, with when the last of them expires.
    func jwtHolders(at time: Date) -> [String: [SPIFFEID: Date]] {
        jwtIssued = jwtIssued.compactMapValues { holders in
            let live = holders.filter { $0.value > time }
            return live.isEmpty ? nil : live
        }
        return jwtIssued
    }

    public func taintedAuthorityIDs() -> [String] {
        records.filter { $0.state == .tainted }.map(\.authorityID)
    }

    /// The journal's authorities that belong in the bundle.
    private func publishedRecords(at now: Date) -> [AuthorityRecord] {
        let ids = planner.published(slots(nil), at: now)
        return records.filter { ids.contains($0.authorityID) }
    }

    /// The trust bundle: every published authority's anchor and public key.
    public func bundle() async throws -> SPIFFEBundle {
        var anchors: [Certificate] = []
        var jwtAuthorities: [JWTAuthority] = []
        for record in publishedRecords(at: clock()) {
            switch record.kind {
            case .x509:
                if let ca = x509[record.authorityID], !anchors.contains(ca.anchor) { anchors.append(ca.anchor) }
            case .jwt:
                if let key = jwt[record.authorityID] { jwtAuthorities.append(key.authority) }
            }
        }
        return SPIFFEBundle(
            trustDomain: config.trustDomain, x509Authorities: anchors, jwtAuthorities: jwtAuthorities,
            sequenceNumber: try await store.bundleSequence(), refreshHint: 300
        )
    }
}
