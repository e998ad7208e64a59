// Owns the CA keys: loads them from the journal and the key folder at start, makes new ones when
// none is active or the active one is near its end, and builds the trust bundle.

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
    private let store: any Store
    private let logger: Logger
    private var x509: [String: X509CA] = [:]
    private var jwt: [String: JWTSigningKey] = [:]
    private var records: [AuthorityRecord] = []

    public init(config: ServerConfig, store: any Store, logger: Logger) {
        self.config = config
        self.store = store
        self.logger = logger
    }

    /// Loads the journal, and prepares and activates keys where there is no usable active one.
    public func start(now: Date) async throws {
        try KeyFile.ensurePrivateDirectory(config.keyDirectory)
        records = try await store.authorities()
        let upstream = try loadUpstream()
        for record in records where record.notAfter > now {
            let keyPath = (config.keyDirectory as NSString).appendingPathComponent(record.keyFile)
            switch record.kind {
            case .x509:
                let certificate = try Certificate(derEncoded: record.material)
                let ca = try X509CA(certificate: certificate, privateKey: KeyFile.readPrivateKey(keyPath), anchor: record.upstream ? upstream?.certificate : nil)
                x509[record.authorityID] = ca
            case .jwt:
                jwt[record.authorityID] = JWTSigningKey(keyID: record.authorityID, privateKey: try KeyFile.readP256(keyPath), notAfter: record.notAfter)
            }
        }
        let renewBefore = config.caTTL / 6
        if activeRecord(.x509).map({ $0.notAfter.timeIntervalSince(now) < renewBefore }) ?? true {
            try await rotateX509(now: now, upstream: upstream)
        }
        if activeRecord(.jwt).map({ $0.notAfter.timeIntervalSince(now) < renewBefore }) ?? true {
            try await rotateJWT(now: now)
        }
    }

    private func loadUpstream() throws -> (certificate: Certificate, key: Certificate.PrivateKey)? {
        guard let certPath = config.upstreamCACert, let keyPath = config.upstreamCAKey else { return nil }
        guard let pem = FileManager.default.contents(atPath: certPath) else {
            throw CAError("ca: cannot read the upstream CA certificate \(certPath)")
        }
        let certificates = try X509SVID.certificates(pem: String(decoding: pem, as: UTF8.self))
        guard let certificate = certificates.first else { throw CAError("ca: \(certPath) holds no certificate") }
        return (certificate, try KeyFile.readPrivateKey(keyPath))
    }

    private func activeRecord(_ kind: AuthorityRecord.Kind) -> AuthorityRecord? {
        records.last { $0.kind == kind && $0.state == .active }
    }

    private func retireActive(_ kind: AuthorityRecord.Kind, now: Date) async throws {
        guard var active = activeRecord(kind) else { return }
        active.state = .old
        try await store.saveAuthority(active, audit: AuditEvent(time: now, callerUID: -1, action: "authority.\(kind.rawValue).retire", target: active.authorityID))
        records = records.map { $0.authorityID == active.authorityID ? active : $0 }
    }

    private func rotateX509(now: Date, upstream: (certificate: Certificate, key: Certificate.PrivateKey)?) async throws {
        let ca: X509CA
        if let upstream {
            ca = try X509CA.intermediate(
                trustDomain: config.trustDomain, keyType: config.caKeyType, ttl: config.caTTL, now: now,
                upstreamCertificate: upstream.certificate, upstreamKey: upstream.key
            )
        } else {
            ca = try X509CA.selfSigned(trustDomain: config.trustDomain, keyType: config.caKeyType, ttl: config.caTTL, now: now)
        }
        let keyFile = "x509-\(ca.authorityID).key"
        try KeyFile.write(ca.privateKey, to: (config.keyDirectory as NSString).appendingPathComponent(keyFile))
        try await retireActive(.x509, now: now)
        var serializer = DER.Serializer()
        try serializer.serialize(ca.certificate)
        let record = AuthorityRecord(
            authorityID: ca.authorityID, kind: .x509, state: .active, notBefore: ca.certificate.notValidBefore,
            notAfter: ca.certificate.notValidAfter, material: serializer.serializedBytes, keyFile: keyFile,
            upstream: ca.isUpstreamSigned, createdAt: now
        )
        try await store.saveAuthority(record, audit: AuditEvent(time: now, callerUID: -1, action: "authority.x509.activate", target: ca.authorityID))
        _ = try await store.nextBundleSequence()
        records.append(record)
        x509[ca.authorityID] = ca
        logger.info("activated X.509 authority", metadata: ["authority_id": "\(ca.authorityID)", "not_after": "\(ca.certificate.notValidAfter)"])
    }

    private func rotateJWT(now: Date) async throws {
        let key = JWTSigningKey.generate(notAfter: now.addingTimeInterval(config.caTTL))
        let keyFile = "jwt-\(key.keyID).key"
        try KeyFile.write(key.privateKey, to: (config.keyDirectory as NSString).appendingPathComponent(keyFile))
        try await retireActive(.jwt, now: now)
        let record = AuthorityRecord(
            authorityID: key.keyID, kind: .jwt, state: .active, notBefore: now, notAfter: key.notAfter,
            material: Array(key.privateKey.publicKey.derRepresentation), keyFile: keyFile, createdAt: now
        )
        try await store.saveAuthority(record, audit: AuditEvent(time: now, callerUID: -1, action: "authority.jwt.activate", target: key.keyID))
        _ = try await store.nextBundleSequence()
        records.append(record)
        jwt[key.keyID] = key
        logger.info("activated JWT authority", metadata: ["key_id": "\(key.keyID)"])
    }

    /// The X.509 CA that signs now.
    public func activeX509() throws -> X509CA {
        guard let record = activeRecord(.x509), let ca = x509[record.authorityID] else { throw CAError("ca: no active X.509 authority") }
        return ca
    }

    /// The JWT key that signs now.
    public func activeJWT() throws -> JWTSigningKey {
        guard let record = activeRecord(.jwt), let key = jwt[record.authorityID] else { throw CAError("ca: no active JWT authority") }
        return key
    }

    /// The journal, in creation order.
    public func authorities() -> [AuthorityRecord] { records }

    /// The trust bundle: every unexpired authority's anchor and public key.
    public func bundle(now: Date = Date()) async throws -> SPIFFEBundle {
        var anchors: [Certificate] = []
        for record in records where record.kind == .x509 && record.notAfter > now {
            if let ca = x509[record.authorityID], !anchors.contains(ca.anchor) { anchors.append(ca.anchor) }
        }
        let jwtAuthorities = records.filter { $0.kind == .jwt && $0.notAfter > now }.compactMap { jwt[$0.authorityID]?.authority }
        return SPIFFEBundle(
            trustDomain: config.trustDomain, x509Authorities: anchors, jwtAuthorities: jwtAuthorities,
            sequenceNumber: try await store.bundleSequence(), refreshHint: 300
        )
    }
}
