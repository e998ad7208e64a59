// The CA key life on an injected clock: prepare at half of the active key's life, activate at
// five sixths, publish before signing, drop from the bundle a grace period after expiry; and the
// admin's prepare, activate, taint and revoke with SPIRE's rules.

import Foundation
import HallmarkCA
import HallmarkServer
import HallmarkStore
import HallmarkTestSupport
import Logging
import SPIFFE
import Testing

@Suite("CA key lifecycle")
struct CAManagerTests {
    static let ttl: TimeInterval = 600
    static let grace: TimeInterval = 60

    struct Fixture {
        let dir: TemporaryDirectory
        let store: SQLiteStore
        let clock: ManualClock
        let config: ServerConfig

        init() throws {
            dir = try TemporaryDirectory("ca")
            store = try SQLiteStore(path: dir.path("hallmark.db"))
            clock = ManualClock()
            var config = ServerConfig(dataDir: dir.url.path, trustDomain: try TrustDomain("example.org"))
            config.caTTL = CAManagerTests.ttl
            config.bundleGracePeriod = CAManagerTests.grace
            self.config = config
        }

        func manager() async throws -> CAManager {
            let ca = CAManager(config: config, store: store, logger: Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() }), clock: clock.function)
            try await ca.start()
            return ca
        }
    }

    static func ids(_ records: [AuthorityRecord], _ kind: AuthorityRecord.Kind, _ state: AuthorityRecord.State) -> [String] {
        records.filter { $0.kind == kind && $0.state == state }.map(\.authorityID)
    }

    static func bundleIDs(_ bundle: SPIFFEBundle) -> (x509: Set<String>, jwt: Set<String>) {
        (Set(bundle.x509Authorities.map { X509CA.authorityID(of: $0) }), Set(bundle.jwtAuthorities.map(\.keyID)))
    }

    @Test("a new server activates one key of each kind at once")
    func startsActive() async throws {
        let fixture = try Fixture()
        let ca = try await fixture.manager()
        let records = await ca.authorities()
        #expect(Self.ids(records, .x509, .active).count == 1)
        #expect(Self.ids(records, .jwt, .active).count == 1)
        let bundle = Self.bundleIDs(try await ca.bundle())
        #expect(bundle.x509 == Set(Self.ids(records, .x509, .active)))
        #expect(bundle.jwt == Set(Self.ids(records, .jwt, .active)))
        #expect(try await ca.tick() == false)
    }

    @Test("the clock prepares at 1/2, publishes before signing, activates at 5/6, and drops after grace")
    func rotationByClock() async throws {
        let fixture = try Fixture()
        let ca = try await fixture.manager()
        let first = try await ca.activeX509().authorityID
        let firstJWT = try await ca.activeJWT().keyID

        // The X.509 key is back-dated 10 s, so its half-life comes 5 s before the JWT key's.
        fixture.clock.advance(by: Self.ttl / 2 - 8)
        #expect(try await ca.tick() == false)
        #expect(Self.ids(await ca.authorities(), .x509, .prepared).isEmpty)

        fixture.clock.advance(by: 10)
        let sequenceBefore = try await ca.bundle().sequenceNumber ?? 0
        #expect(try await ca.tick() == true)
        let records = await ca.authorities()
        let next = try #require(Self.ids(records, .x509, .prepared).first)
        let nextJWT = try #require(Self.ids(records, .jwt, .prepared).first)
        // Published, but not yet signing.
        let published = try await ca.bundle()
        #expect(Self.bundleIDs(published).x509 == [first, next])
        #expect(Self.bundleIDs(published).jwt == [firstJWT, nextJWT])
        #expect((published.sequenceNumber ?? 0) > sequenceBefore)
        #expect(try await ca.activeX509().authorityID == first)
        #expect(try await ca.activeJWT().keyID == firstJWT)

        fixture.clock.set(TestClock.now.addingTimeInterval(Self.ttl * 5 / 6 + 1))
        #expect(try await ca.tick() == true)
        #expect(try await ca.activeX509().authorityID == next)
        #expect(try await ca.activeJWT().keyID == nextJWT)
        let rotated = await ca.authorities()
        #expect(Self.ids(rotated, .x509, .old) == [first])
        #expect(Self.ids(rotated, .jwt, .old) == [firstJWT])
        #expect(Self.bundleIDs(try await ca.bundle()).x509 == [first, next])

        // Expired, but inside the grace period: still in the bundle.
        fixture.clock.set(TestClock.now.addingTimeInterval(Self.ttl + Self.grace / 2))
        _ = try await ca.tick()
        #expect(Self.bundleIDs(try await ca.bundle()).x509.contains(first))
        fixture.clock.set(TestClock.now.addingTimeInterval(Self.ttl + Self.grace + 1))
        let sequence = try await ca.bundle().sequenceNumber ?? 0
        #expect(try await ca.tick() == true)
        let after = try await ca.bundle()
        #expect(!Self.bundleIDs(after).x509.contains(first))
        #expect(!Self.bundleIDs(after).jwt.contains(firstJWT))
        #expect(Self.bundleIDs(after).x509.contains(next))
        #expect((after.sequenceNumber ?? 0) > sequence)
        // The server took both keys out of the bundle: each is in the audit log, by the server.
        let expired = try await fixture.store.auditRecords(after: 0, limit: 100).filter { $0.event.action.hasSuffix(".expire") }
        #expect(expired.map(\.event.action).sorted() == ["authority.jwt.expire", "authority.x509.expire"])
        #expect(Set(expired.map(\.event.target)) == [first, firstJWT])
        #expect(expired.allSatisfy { $0.event.actor == .server })
    }

    @Test("SVIDs are never signed past the active key's expiry")
    func svidsCappedToTheKey() async throws {
        let fixture = try Fixture()
        let ca = try await fixture.manager()
        fixture.clock.advance(by: Self.ttl * 5 / 6 - 5)
        _ = try await ca.tick()
        let signer = try await ca.activeX509()
        let request = try SVIDRequest()
        let chain = try await signer.issueVerifiedX509SVID(
            X509SVIDParams(csr: request.csr, spiffeID: try SPIFFEID(parsing: "spiffe://example.org/w"), ttl: 3600, now: fixture.clock.now)
        )
        #expect(chain[0].notValidAfter <= signer.certificate.notValidAfter)
    }

    @Test("the admin's steps follow SPIRE's rules, and each refusal says why")
    func manualRules() async throws {
        let fixture = try Fixture()
        let ca = try await fixture.manager()
        let first = try await ca.activeX509().authorityID

        let noPrepared = await #expect(throws: CAError.self) { try await ca.activate(.x509, authorityID: nil, actor: .admin(uid: 1000)) }
        #expect(noPrepared?.message.contains("no x509 authority is prepared") == true)
        let activeTaint = await #expect(throws: CAError.self) { try await ca.taint(.x509, authorityID: first, actor: .admin(uid: 1000)) }
        #expect(activeTaint?.message.contains("only an old authority can be tainted") == true)
        #expect(activeTaint?.message.contains("is active") == true)
        let activeRevoke = await #expect(throws: CAError.self) { try await ca.revoke(.x509, authorityID: first, actor: .admin(uid: 1000)) }
        #expect(activeRevoke?.message.contains("only a tainted authority can be revoked") == true)
        let unknown = await #expect(throws: StoreError.self) { try await ca.taint(.x509, authorityID: "00ff", actor: .admin(uid: 1000)) }
        #expect(unknown?.code == .notFound)

        let prepared = try await ca.prepare(.x509, actor: .admin(uid: 1000))
        #expect(prepared.state == .prepared)
        let twice = await #expect(throws: CAError.self) { try await ca.prepare(.x509, actor: .admin(uid: 1000)) }
        #expect(twice?.message.contains("already prepared") == true)
        let preparedTaint = await #expect(throws: CAError.self) { try await ca.taint(.x509, authorityID: prepared.authorityID, actor: .admin(uid: 1000)) }
        #expect(preparedTaint?.message.contains("is prepared") == true)
        let wrongActivate = await #expect(throws: CAError.self) { try await ca.activate(.x509, authorityID: first, actor: .admin(uid: 1000)) }
        #expect(wrongActivate?.message.contains("only a prepared authority can be activated") == true)

        #expect(try await ca.activate(.x509, authorityID: prepared.authorityID, actor: .admin(uid: 1000)).state == .active)
        #expect(try await ca.activeX509().authorityID == prepared.authorityID)
        let oldRevoke = await #expect(throws: CAError.self) { try await ca.revoke(.x509, authorityID: first, actor: .admin(uid: 1000)) }
        #expect(oldRevoke?.message.contains("is old: taint it first") == true)

        #expect(try await ca.taint(.x509, authorityID: first, actor: .admin(uid: 1000)).state == .tainted)
        #expect(await ca.taintedAuthorityIDs() == [first])
        // Tainted keys stay trusted until revoked.
        #expect(Self.bundleIDs(try await ca.bundle()).x509 == [first, prepared.authorityID])
        let again = await #expect(throws: CAError.self) { try await ca.taint(.x509, authorityID: first, actor: .admin(uid: 1000)) }
        #expect(again?.message.contains("already tainted") == true)

        let keyFile = fixture.dir.path("keys/x509-\(first).key")
        #expect(FileManager.default.fileExists(atPath: keyFile))
        #expect(try await ca.revoke(.x509, authorityID: first, actor: .admin(uid: 1000)).state == .revoked)
        #expect(Self.bundleIDs(try await ca.bundle()).x509 == [prepared.authorityID])
        #expect(await ca.taintedAuthorityIDs().isEmpty)
        #expect(!FileManager.default.fileExists(atPath: keyFile))

        let actions = try await fixture.store.auditRecords(after: 0, limit: 100).filter { $0.event.actor == .admin(uid: 1000) }.map {
            "\($0.event.action) \($0.event.target)"
        }
        #expect(actions == [
            "authority.x509.prepare \(prepared.authorityID)", "authority.x509.retire \(first)",
            "authority.x509.activate \(prepared.authorityID)", "authority.x509.taint \(first)", "authority.x509.revoke \(first)",
        ])

        // The journal survives a restart: the revoked key stays out, the tainted list is empty.
        let restarted = try await fixture.manager()
        #expect(try await restarted.activeX509().authorityID == prepared.authorityID)
        #expect(Self.bundleIDs(try await restarted.bundle()).x509 == [prepared.authorityID])
    }

    @Test("JWT keys follow the same rules")
    func jwtRules() async throws {
        let fixture = try Fixture()
        let ca = try await fixture.manager()
        let first = try await ca.activeJWT().keyID
        let prepared = try await ca.prepare(.jwt, actor: .admin(uid: 0))
        #expect(Self.bundleIDs(try await ca.bundle()).jwt == [first, prepared.authorityID])
        _ = try await ca.activate(.jwt, authorityID: nil, actor: .admin(uid: 0))
        _ = try await ca.taint(.jwt, authorityID: first, actor: .admin(uid: 0))
        #expect(await ca.taintedAuthorityIDs() == [first])
        _ = try await ca.revoke(.jwt, authorityID: first, actor: .admin(uid: 0))
        #expect(Self.bundleIDs(try await ca.bundle()).jwt == [prepared.authorityID])
    }

    /// A journal in memory: CAManager needs nothing else of a store.
    actor MemoryJournal: CAJournal {
        var records: [AuthorityRecord] = []
        var audits: [AuditEvent] = []
        var sequence: UInt64 = 0

        func authorities() -> [AuthorityRecord] { records }
        func saveAuthority(_ authority: AuthorityRecord, audit: AuditEvent) {
            if let index = records.firstIndex(where: { $0.authorityID == authority.authorityID }) { records[index] = authority } else { records.append(authority) }
            audits.append(audit)
        }
        func bundleSequence() -> UInt64 { sequence }
        func nextBundleSequence(audit: [AuditEvent]) -> UInt64 {
            audits += audit
            sequence += 1
            return sequence
        }
    }

    @Test("on any journal: each step of a key's life is journalled with its audit record and moves the bundle's sequence")
    func memoryJournal() async throws {
        let fixture = try Fixture()
        let journal = MemoryJournal()
        let ca = CAManager(config: fixture.config, store: journal, logger: Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() }), clock: fixture.clock.function)
        try await ca.start()
        #expect(await journal.audits.map(\.action) == ["authority.x509.prepare", "authority.x509.activate", "authority.jwt.prepare", "authority.jwt.activate"])
        let started = await journal.sequence
        fixture.clock.advance(by: Self.ttl / 2)
        #expect(try await ca.tick())
        #expect(await journal.audits.suffix(2).map(\.action) == ["authority.x509.prepare", "authority.jwt.prepare"])
        #expect(await journal.sequence > started)
        #expect(await journal.records.map(\.state) == (await ca.authorities()).map(\.state))
    }
}
