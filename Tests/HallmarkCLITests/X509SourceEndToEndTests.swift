// X509Source against a real agent: the first update, every rotation as an update, a timeout when
// there is no agent, and reconnection when the agent comes back.

import Foundation
import HallmarkTestSupport
import SPIFFE
import SPIFFEWorkloadAPI
import Testing

@Suite("X509Source end to end", .serialized)
struct X509SourceEndToEndTests {
    @Test("no agent: waitForFirstUpdate gives up after its timeout and says why")
    func timeout() async throws {
        let dir = try TemporaryDirectory("x509source")
        let source = try X509Source(endpoint: "unix://\(dir.path("nowhere.sock"))", backoff: .init(initial: .milliseconds(50), maximum: .milliseconds(200)))
        defer { source.close() }
        let error = await #expect(throws: WorkloadAPIClientError.self) { try await source.waitForFirstUpdate(timeout: .milliseconds(500)) }
        #expect(error?.message.contains("no X.509 context within") == true)
        #expect(error?.code == .timeout)
        #expect(source.svid == nil)
    }

    @Test("updates carry each rotation; after the agent restarts the source reconnects by itself")
    func rotationAndReconnect() async throws {
        let server = try TestServer()
        let agent = try TestAgent(server: server)
        try agent.register("/svc", selectors: ["unix:uid:0"], extra: ["--x509-ttl", "4"])
        _ = try agent.waitForSVID("spiffe://example.org/svc")
        let source = try X509Source(endpoint: agent.socket, backoff: .init(initial: .milliseconds(100), maximum: .seconds(1)))
        defer { source.close() }
        let first = try await source.waitForFirstUpdate(timeout: .seconds(10))
        #expect(first.defaultSVID?.id.description == "spiffe://example.org/svc")
        #expect(try source.x509Bundle(for: TrustDomain("example.org")).authorities.count == 1)

        // A rotation arrives as an update with a new certificate.
        var updates = source.updates().makeAsyncIterator()
        var rotated: X509SVID?
        while let context = await updates.next() {
            if let svid = context.defaultSVID, svid.leaf != first.defaultSVID?.leaf {
                rotated = svid
                break
            }
        }
        #expect(rotated != nil)

        // The agent goes away and comes back: the source keeps its last SVID, then hears again.
        agent.kill()
        try agent.start(["--insecure-bootstrap"])
        var after: X509Context?
        while let context = await updates.next() {
            if context.defaultSVID?.leaf != rotated?.leaf {
                after = context
                break
            }
        }
        #expect(after?.defaultSVID?.id.description == "spiffe://example.org/svc")

        // The bundle streams: X.509 and JWT, each the trust domain's current bundle.
        let client = try WorkloadAPIClient(endpoint: "unix://\(agent.socket)")
        let x509 = try await client.fetchX509Bundles()
        #expect(try x509.x509Bundle(for: TrustDomain("example.org")).authorities == after?.bundles.all.first?.authorities)
        let jwt = try await client.fetchJWTBundles()
        #expect(try jwt.jwtBundle(for: TrustDomain("example.org")).authorities.isEmpty == false)
        // A prepared key reaches an open bundle stream: two X.509 authorities in a later message.
        #expect(try server.hallmark(["authority", "x509", "prepare"]).status == 0)
        let grown = try await client.watchX509Bundles { set in
            (try? set.x509Bundle(for: TrustDomain("example.org")).authorities.count) != 2
        }
        #expect(try grown.x509Bundle(for: TrustDomain("example.org")).authorities.count == 2)
    }

    @Test("JWTSource: bundles from the stream validate a JWT-SVID it fetched; a new JWT key reaches the source")
    func jwtSource() async throws {
        let server = try TestServer()
        let agent = try TestAgent(server: server)
        try agent.register("/svc", selectors: ["unix:uid:0"])
        _ = try agent.waitForSVID("spiffe://example.org/svc")
        let source = try JWTSource(endpoint: agent.socket, backoff: .init(initial: .milliseconds(100), maximum: .seconds(1)))
        defer { source.close() }
        let first = try await source.waitForFirstUpdate(timeout: .seconds(10))
        #expect(try first.jwtBundle(for: TrustDomain("example.org")).authorities.count == 1)
        let fetched = try await source.fetchJWTSVID(audience: ["inference"])
        #expect(fetched.spiffeID.description == "spiffe://example.org/svc")
        let validated = try JWTSVID(parsing: fetched.token, bundles: source, audience: "inference")
        #expect(validated.id.description == "spiffe://example.org/svc")
        #expect(throws: SPIFFEError.self) { try JWTSVID(parsing: fetched.token, bundles: source, audience: "other") }

        // A prepared JWT key is published: the source's bundles follow without a restart.
        var updates = source.updates().makeAsyncIterator()
        #expect(try server.hallmark(["authority", "jwt", "prepare"]).status == 0)
        var count = 1
        while count < 2, let bundles = await updates.next() {
            count = try bundles.jwtBundle(for: TrustDomain("example.org")).authorities.count
        }
        #expect(count == 2)
    }
}
