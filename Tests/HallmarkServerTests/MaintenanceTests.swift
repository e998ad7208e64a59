// The server's maintenance service on the injected clock: an entry past its `expires_at` is
// removed at the first tick after that time on the clock, not before, and agents' streams are
// woken; a tick with nothing to do wakes no one.

import Foundation
import HallmarkAttestation
@testable import HallmarkServer
import HallmarkStore
import HallmarkSupport
import HallmarkTestSupport
import Logging
import SPIFFE
import Synchronization
import Testing

@Suite("server maintenance")
struct MaintenanceTests {
    @Test("an entry past its expiry on the server's clock is removed at the next tick, and the streams are told")
    func expiredEntries() async throws {
        let dir = try TemporaryDirectory("maintenance")
        let store = try SQLiteStore(path: dir.path("hallmark.db"))
        let clock = ManualClock()
        let config = ServerConfig(dataDir: dir.url.path, trustDomain: try TrustDomain("example.org"))
        let logger = Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() })
        let ca = CAManager(config: config, store: store, logger: logger, clock: clock.function)
        try await ca.start()
        let events = Broadcast()
        let wakes = Atomic<Int>(0)
        _ = events.subscribe { finished in if !finished { wakes.add(1, ordering: .sequentiallyConsistent) } }
        let maintenance = Maintenance(store: store, ca: ca, evidence: EvidenceAge(config), events: events, logger: logger, clock: clock.function)

        let entry = RegistrationEntry(
            spiffeID: try SPIFFEID(parsing: "spiffe://example.org/batch"), parentID: try SPIFFEID(parsing: "spiffe://example.org/node"),
            selectors: [try Selector(parsing: "unix:uid:1000")], expiresAt: clock.now.addingTimeInterval(60)
        )
        _ = try await store.createEntry(entry, audit: AuditEvent(actor: .admin(uid: 0), action: "entry.create", target: entry.id))

        await maintenance.tick()
        #expect(try await store.entries(matching: EntryFilter()).map(\.id) == [entry.id])
        #expect(wakes.load(ordering: .sequentiallyConsistent) == 0, "a tick with nothing to do woke the streams")

        clock.advance(by: 59)
        await maintenance.tick()
        #expect(try await store.entries(matching: EntryFilter()).map(\.id) == [entry.id], "removed before its expiry on the clock")

        clock.advance(by: 2)
        await maintenance.tick()
        #expect(try await store.entries(matching: EntryFilter()).isEmpty, "kept past its expiry on the clock")
        #expect(wakes.load(ordering: .sequentiallyConsistent) == 1)
    }
}
