// Mutual TLS handshakes in memory (two NIO test channels, bytes moved between them by hand):
// the SPIFFE peer rules decide, on an injected clock.

import Foundation
import NIOCore
import NIOTLS
import NIOEmbedded
import NIOSSL
import SPIFFE
import SPIFFETLS
import Synchronization
import Testing
import X509
import HallmarkTestSupport

/// Records how the handshake ended on one side.
final class HandshakeOutcome: ChannelInboundHandler, Sendable {
    typealias InboundIn = ByteBuffer
    private let state = Mutex<(done: Bool, error: String?)>((false, nil))

    var completed: Bool { state.withLock { $0.done && $0.error == nil } }
    var error: String? { state.withLock { $0.error } }
    var finished: Bool { state.withLock { $0.done || $0.error != nil } }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? TLSUserEvent, case .handshakeCompleted = event { state.withLock { $0.done = true } }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        state.withLock { $0.error = "\(error)" }
    }
}

final class Refusals: Sendable {
    private let reasons = Mutex<[String]>([])
    func add(_ reason: String) { reasons.withLock { $0.append(reason) } }
    var all: [String] { reasons.withLock { $0 } }
}

@Suite("SPIFFE mTLS handshakes")
struct HandshakeTests {
    static let root = try! TestCA.root()
    static let now = TestClock.now

    static func svid(_ ca: TestCA, id: String, notAfter: Date? = nil) throws -> X509SVID {
        var options = TestCA.LeafOptions(id: id, now: now)
        if let notAfter { options.notAfter = notAfter }
        let leaf = try ca.leaf(options)
        return try X509SVID(certificates: [leaf.certificate], privateKey: leaf.key)
    }

    /// Runs a handshake between a client and a server; returns both outcomes and the server's view of the client's ID.
    static func handshake(
        client: X509SVID, server: X509SVID, clientTrusts: [X509Bundle], serverTrusts: [X509Bundle],
        serverAllows: Authorizer = .any, clientAllows: Authorizer = .any, serverContext given: SPIFFETLSContext? = nil
    ) async throws -> (client: HandshakeOutcome, server: HandshakeOutcome, peerSeenByServer: SPIFFEID?, refusals: [String]) {
        let refusals = Refusals()
        let clientContext = try SPIFFETLSContext(
            reloader: try SVIDCertificateReloader(client), bundles: { X509BundleSet(clientTrusts) }, authorizer: clientAllows, server: false,
            onRefusal: { refusals.add("client: \($0)") }, now: { now }
        )
        let serverContext = try given ?? SPIFFETLSContext(
            svids: StaticX509SVIDSource(server), bundles: X509BundleSet(serverTrusts), authorizer: serverAllows, server: true,
            onRefusal: { refusals.add("server: \($0)") }, now: { now }
        )
        let clientOutcome = HandshakeOutcome()
        let serverOutcome = HandshakeOutcome()
        let clientChannel = NIOAsyncTestingChannel()
        let serverChannel = NIOAsyncTestingChannel()
        try await clientChannel.pipeline.addHandlers([try clientContext.clientHandler(), clientOutcome])
        try await serverChannel.pipeline.addHandlers([serverContext.serverHandler(), serverOutcome])
        try await serverChannel.connect(to: try SocketAddress(ipAddress: "127.0.0.1", port: 1))
        try await clientChannel.connect(to: try SocketAddress(ipAddress: "127.0.0.1", port: 1))
        // Move bytes until both sides have finished (the SPIFFE check completes asynchronously).
        for _ in 0..<400 {
            // The test loops run queued work (such as the certificate reloader's callback) only when asked.
            await clientChannel.testingEventLoop.run()
            await serverChannel.testingEventLoop.run()
            var moved = false
            while let bytes = try await clientChannel.readOutbound(as: ByteBuffer.self) {
                do { try await serverChannel.writeInbound(bytes) } catch { print("server inbound error: \(error)") }
                moved = true
            }
            while let bytes = try await serverChannel.readOutbound(as: ByteBuffer.self) {
                do { try await clientChannel.writeInbound(bytes) } catch { print("client inbound error: \(error)") }
                moved = true
            }
            if clientOutcome.finished, serverOutcome.finished, !moved { break }
            if !moved { try await Task.sleep(for: .milliseconds(5)) }
        }
        var peer: SPIFFEID?
        if serverOutcome.completed {
            // peerID waits on the channel's loop, which runs only when asked: ask until it answers.
            let answer = Mutex<(done: Bool, id: SPIFFEID?)>((false, nil))
            let lookup = Task {
                let id = try? await SPIFFETLSContext.peerID(of: serverChannel)
                answer.withLock { $0 = (true, id) }
            }
            for _ in 0..<200 where !answer.withLock({ $0.done }) {
                await serverChannel.testingEventLoop.run()
                try await Task.sleep(for: .milliseconds(5))
            }
            lookup.cancel()
            peer = answer.withLock { $0.id }
        }
        // The channels are dropped, not closed: a TLS close would wait for the peer's close_notify.
        return (clientOutcome, serverOutcome, peer, refusals.all)
    }

    /// An SVID source whose SVID the test replaces, as a rotation does.
    final class RotatingSource: X509SVIDSource {
        let current: Mutex<X509SVID>
        init(_ svid: X509SVID) { current = Mutex(svid) }
        func x509SVID() throws -> X509SVID { current.withLock { $0 } }
    }

    @Test("any SVID source serves: a rotated SVID is presented from the next handshake of the same context, with no gRPC or Workload API")
    func rotatingSource() async throws {
        let gateway = try Self.svid(Self.root, id: "spiffe://example.org/gateway")
        let source = RotatingSource(try Self.svid(Self.root, id: "spiffe://example.org/model-v1"))
        let context = try SPIFFETLSContext(svids: source, bundles: X509BundleSet([Self.bundle]), authorizer: .any, server: true, now: { Self.now })
        let v2 = try SPIFFEID(parsing: "spiffe://example.org/model-v2")
        let before = try await Self.handshake(
            client: gateway, server: gateway, clientTrusts: [Self.bundle], serverTrusts: [], clientAllows: .id(v2), serverContext: context
        )
        #expect(!before.client.completed, "the client expects v2; the server still presents v1")
        source.current.withLock { $0 = try! Self.svid(Self.root, id: v2.description) }
        let after = try await Self.handshake(
            client: gateway, server: gateway, clientTrusts: [Self.bundle], serverTrusts: [], clientAllows: .id(v2), serverContext: context
        )
        #expect(after.client.completed && after.server.completed, "client: \(after.client.error ?? "-"), server: \(after.server.error ?? "-")")
        #expect(context.reloader.current.id == v2)
    }

    static var bundle: X509Bundle { X509Bundle(trustDomain: try! TrustDomain("example.org"), authorities: [root.certificate]) }

    @Test("an authorised peer is accepted, and its SPIFFE ID is offered to the application")
    func accepted() async throws {
        let result = try await Self.handshake(
            client: try Self.svid(Self.root, id: "spiffe://example.org/gateway"), server: try Self.svid(Self.root, id: "spiffe://example.org/model"),
            clientTrusts: [Self.bundle], serverTrusts: [Self.bundle],
            serverAllows: .id(try SPIFFEID(parsing: "spiffe://example.org/gateway")), clientAllows: .id(try SPIFFEID(parsing: "spiffe://example.org/model"))
        )
        #expect(result.client.completed && result.server.completed, "client: \(result.client.error ?? "-"), server: \(result.server.error ?? "-")")
        #expect(result.peerSeenByServer?.description == "spiffe://example.org/gateway")
        #expect(result.refusals.isEmpty)
    }

    @Test("a peer from another trust domain is refused, even with a valid chain of its own")
    func otherTrustDomain() async throws {
        let other = try TestCA.root(TestCA.Options(name: "Other Root", trustDomain: "other.org"))
        let otherBundle = X509Bundle(trustDomain: try TrustDomain("other.org"), authorities: [other.certificate])
        let result = try await Self.handshake(
            client: try Self.svid(other, id: "spiffe://other.org/gateway"), server: try Self.svid(Self.root, id: "spiffe://example.org/model"),
            clientTrusts: [Self.bundle], serverTrusts: [Self.bundle, otherBundle], serverAllows: .memberOf(try TrustDomain("example.org"))
        )
        #expect(!result.server.completed && result.peerSeenByServer == nil)
        #expect(result.refusals.contains { $0.hasPrefix("server:") && $0.contains("other.org") }, "\(result.refusals)")
    }

    @Test("a peer with an unauthorised ID is refused")
    func unauthorisedID() async throws {
        let result = try await Self.handshake(
            client: try Self.svid(Self.root, id: "spiffe://example.org/intruder"), server: try Self.svid(Self.root, id: "spiffe://example.org/model"),
            clientTrusts: [Self.bundle], serverTrusts: [Self.bundle], serverAllows: .id(try SPIFFEID(parsing: "spiffe://example.org/gateway"))
        )
        #expect(!result.server.completed && result.peerSeenByServer == nil)
        #expect(result.refusals.contains { $0.hasPrefix("server:") && $0.contains("intruder") }, "\(result.refusals)")
    }

    @Test("a peer signed by a foreign root claiming our trust domain is refused")
    func foreignRoot() async throws {
        let forger = try TestCA.root(TestCA.Options(name: "Forger", trustDomain: "example.org"))
        let result = try await Self.handshake(
            client: try Self.svid(forger, id: "spiffe://example.org/gateway"), server: try Self.svid(Self.root, id: "spiffe://example.org/model"),
            clientTrusts: [Self.bundle], serverTrusts: [Self.bundle]
        )
        #expect(!result.server.completed && result.peerSeenByServer == nil)
        #expect(result.refusals.contains { $0.hasPrefix("server:") && $0.contains("does not verify") }, "\(result.refusals)")
    }

    @Test("an expired peer is refused; the server refuses it as a client and the client refuses it as a server")
    func expired() async throws {
        let stale = try Self.svid(Self.root, id: "spiffe://example.org/stale", notAfter: Self.now.addingTimeInterval(-1))
        let asClient = try await Self.handshake(
            client: stale, server: try Self.svid(Self.root, id: "spiffe://example.org/model"), clientTrusts: [Self.bundle], serverTrusts: [Self.bundle]
        )
        #expect(!asClient.server.completed)
        #expect(asClient.refusals.contains { $0.hasPrefix("server:") && $0.contains("expired") }, "\(asClient.refusals)")
        let asServer = try await Self.handshake(
            client: try Self.svid(Self.root, id: "spiffe://example.org/gateway"), server: stale, clientTrusts: [Self.bundle], serverTrusts: [Self.bundle]
        )
        #expect(!asServer.client.completed)
        #expect(asServer.refusals.contains { $0.hasPrefix("client:") && $0.contains("expired") }, "\(asServer.refusals)")
    }
}
