// Between the admin API's wire messages and the store's values.

import Foundation
import HallmarkAttestation
public import HallmarkProto
import HallmarkStore
import SPIFFE

extension EntryInput {
    public init(_ entry: Admin_Entry) {
        self.init()
        id = entry.id
        spiffeID = entry.spiffeID
        parentID = entry.parentID
        selectors = entry.selectors.map { ($0.type, $0.value) }
        x509SVIDTTL = Int(entry.x509SvidTtl)
        jwtSVIDTTL = Int(entry.jwtSvidTtl)
        dnsNames = entry.dnsNames
        admin = entry.admin
        downstream = entry.downstream
        expiresAt = entry.expiresAt
        hint = entry.hint
        revisionNumber = entry.revisionNumber
    }
}

extension Admin_Selector {
    init(_ selector: Selector) {
        self.init()
        type = selector.type
        value = selector.value
    }
}

extension Admin_Entry {
    init(_ entry: RegistrationEntry) {
        self.init()
        id = entry.id
        spiffeID = entry.spiffeID.description
        parentID = entry.parentID.description
        selectors = entry.selectors.map(Admin_Selector.init)
        x509SvidTtl = Int32(entry.x509SVIDTTL)
        jwtSvidTtl = Int32(entry.jwtSVIDTTL)
        dnsNames = entry.dnsNames
        admin = entry.admin
        downstream = entry.downstream
        expiresAt = entry.expiresAt.map { Int64($0.timeIntervalSince1970) } ?? 0
        hint = entry.hint
        revisionNumber = entry.revisionNumber
        createdAt = Int64(entry.createdAt.timeIntervalSince1970)
    }
}

extension Admin_Agent {
    init(_ node: AttestedNode) {
        self.init()
        spiffeID = node.spiffeID.description
        attestationType = node.attestationType
        selectors = node.selectors.map(Admin_Selector.init)
        serialNumber = node.serialNumber
        expiresAt = Int64(node.expiresAt.timeIntervalSince1970)
        attestedAt = Int64(node.attestedAt.timeIntervalSince1970)
        evidenceAt = Int64(node.evidenceAt.timeIntervalSince1970)
        banned = node.banned
    }
}

extension Admin_Authority {
    init(_ record: AuthorityRecord) {
        self.init()
        authorityID = record.authorityID
        kind = record.kind.rawValue
        state = record.state.rawValue
        notBefore = Int64(record.notBefore.timeIntervalSince1970)
        notAfter = Int64(record.notAfter.timeIntervalSince1970)
        upstreamSigned = record.upstream
    }
}

extension Admin_AuditRecord {
    init(_ record: AuditRecord) {
        self.init()
        sequence = record.sequence
        time = Int64((record.event.time.timeIntervalSince1970 * 1000).rounded())
        callerUid = record.event.callerUID
        actor = record.event.actor.stored ?? ""
        action = record.event.action
        target = record.event.target
        result = record.event.result
        detail = record.event.detail
        hash = Hex.encode(record.hash)
    }
}
