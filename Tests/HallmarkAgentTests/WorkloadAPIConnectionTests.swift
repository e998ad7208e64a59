// One Workload API connection's handler driven frame by frame in memory, with this test process as
// the caller: a reader that lags behind changes, a client that resets a stream or a call whose work
// is under way, graceful shutdown with a stream and a unary call open, and gRPC's content types
// matched exactly. The real-process tests (WorkloadAPIProtocolTests) cover the same over a socket.

import Foundation
import GRPCCore
@testable import HallmarkAgent
import HallmarkAttestation
import HallmarkProto
import HallmarkTestSupport
import NIOCore
import NIOEmbedded
import NIOHTTP2
import SPIFFE
import SPIFFEWorkloadAPI
import Synchronization
import Testing

@Suite("Workload API connection, frame by frame")
struct WorkloadAPIConnectionTests {
    /// One attestor for every test: this test binary is hashed once.
    static let attestor = UnixWorkloadAttestor()

    /// Holds the connection's bytes on their way to the client while `holding`: a client whose
    /// socket takes nothing. Confined to the channel's event loop.
    final class HeldWrites: ChannelOutboundHandler, @unchecked Sendable {
        typealias OutboundIn = IOData
        typealias OutboundOut = IOData

        var holding = false
        private(set) var held: [(NIOAny, EventLoopPromise<Void>?)] = []
        private var context: ChannelHandlerContext?

        func handlerAdded(context: ChannelHandlerContext) { self.context = context }

        func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
            if holding { held.append((data, promise)) } else { context.write(data, promise: promise) }
        }

        func flush(context: ChannelHandlerContext) {
            if !holding { context.flush() }
        }

        /// The client reads: everything held goes out, and nothing more is held.
        func release() {
            holding = false
            let out = held
            held = []
            for (data, promise) in out { context?.write(data, promise: promise) }
            context?.flush()
        }
    }

    /// A server link whose JWT-SVID signatures wait until the test lets them through.
    final class GatedMinter: JWTMinter {
        private let state = Mutex<(open: Bool, waiting: [CheckedContinuation<Void, Never>])>((false, []))
        let started = Atomic<Int>(0)

        func mintJWTSVID(entryID: String, audience: [String]) async throws -> (token: String, expiresAt: Date) {
            started.add(1, ordering: .sequentiallyConsistent)
            await withCheckedContinuation { continuation in
                let open = state.withLock { state in
                    if !state.open { state.waiting.append(continuation) }
                    return state.open
                }
                if open { continuation.resume() }
            }
            return ("token-for-\(audience.joined(separator: ","))", Date().addingTimeInterval(300))
        }

        func open() {
            let waiting = state.withLock { state in
                state.open = true
                defer { state.waiting = [] }
                return state.waiting
            }
            for continuation in waiting { continuation.resume() }
        }
    }

    /// A cache holding one identity for this process's uid, with `hint`.
    static func cache(hint: String) throws -> AgentCache {
        let cache = try WorkloadJWTTests.cache()
        setHint(cache, hint)
        return cache
    }

    static func setHint(_ cache: AgentCache, _ hint: String) {
        cache.update(entries: [AgentAPI_Entry.with {
            $0.id = "e1"
            $0.spiffeID = "spiffe://example.org/svc"
            $0.revisionNumber = 1
            $0.hint = hint
            $0.selectors = [AgentAPI_Selector.with { $0.type = "unix"; $0.value = "uid:\(getuid())" }]
        }], bundle: nil)
    }

    /// The server side of one connection on NIO's asynchronous testing channel, and a client.
    final class Harness {
        let loop = NIOAsyncTestingEventLoop()
        let channel: NIOAsyncTestingChannel
        let held = HeldWrites()
        var client = H2TestClient()

        init(cache: AgentCache, minter: any JWTMinter = UnreachableServer(), limits: WorkloadAPILimits = WorkloadAPILimits()) async throws {
            channel = NIOAsyncTestingChannel(loop: loop)
            let service = testWorkloadAPIService(attestor: WorkloadAPIConnectionTests.attestor, limits: limits, cache: cache, minter: minter)
            let (channel, held) = (channel, held)
            try await loop.executeInContext {
                try channel.pipeline.syncOperations.addHandlers([
                    held,
                    NIOHTTP2Handler(mode: .server, initialSettings: [HTTP2Setting(parameter: .maxConcurrentStreams, value: limits.streamsPerConnection)]),
                    WorkloadAPIConnection(service: service, peer: WorkloadDigestTests.thisProcess(), limits: limits),
                ])
            }
            try await channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1))
            try await send(H2TestClient.preface)
        }

        func send(_ bytes: [UInt8]) async throws {
            try await channel.writeInbound(ByteBuffer(bytes: bytes))
        }

        func holdWrites(_ hold: Bool) async throws {
            let held = held
            try await loop.executeInContext { if hold { held.holding = true } else { held.release() } }
        }

        func read() async throws {
            while let out = try await channel.readOutbound(as: IOData.self) {
                if case .byteBuffer(let bytes) = out { try client.receive(bytes) }
            }
        }

        /// Lets the connection work (its event loop, the attestor's hashing, a task's answer) until
        /// `done` holds of what the client has received.
        func until(_ what: String, _ done: (H2TestClient) -> Bool) async throws {
            let deadline = ContinuousClock.now + .seconds(60)
            while ContinuousClock.now < deadline {
                await loop.run()
                try await read()
                if done(client) { return }
                try await Task.sleep(for: .milliseconds(5))
            }
            Issue.record("timed out waiting until \(what)")
            throw CancellationError()
        }

        /// The messages a stream has received, as X509SVIDResponse hints.
        func hints(_ stream: UInt32) throws -> [String] {
            try client.received.filter { $0.stream == stream && $0.type == 0x0 }.map {
                try WorkloadAPI_X509SVIDResponse(serializedBytes: $0.payload.dropFirst(5)).svids.first?.hint ?? "?"
            }
        }
    }

    static func jwtRequest(_ audience: String) throws -> [UInt8] {
        try WorkloadAPI_JWTSVIDRequest.with { $0.audience = [audience] }.serializedBytes()
    }

    @Test("a reader that lags gets the state current when it reads, not every state between; the connection keeps its place")
    func laggingReader() async throws {
        let cache = try Self.cache(hint: "v1")
        let h = try await Harness(cache: cache)
        try await h.send(h.client.call(1))
        try await h.until("the stream's first message") { _ in (try? h.hints(1)) == ["v1"] }

        try await h.holdWrites(true)
        Self.setHint(cache, "v2")
        await h.loop.run()
        Self.setHint(cache, "v3")
        await h.loop.run()
        Self.setHint(cache, "v4")
        await h.loop.run()
        try await h.read()
        #expect(try h.hints(1) == ["v1"], "written past a client that reads nothing")

        try await h.holdWrites(false)
        try await h.until("the latest state") { _ in (try? h.hints(1))?.last == "v4" }
        #expect(try h.hints(1) == ["v1", "v2", "v4"], "the lagging reader got an intermediate state, or lost the latest")
        #expect(h.client.status(1) == nil)
    }

    @Test("a stream reset by its client ends alone: a change goes to the other stream, and nothing is written to the reset one")
    func resetStream() async throws {
        let cache = try Self.cache(hint: "v1")
        let h = try await Harness(cache: cache)
        try await h.send(h.client.call(1) + h.client.call(3))
        try await h.until("both streams' first messages") { _ in (try? h.hints(1)) == ["v1"] && (try? h.hints(3)) == ["v1"] }

        let before = h.client.received.filter { $0.stream == 1 }.count
        try await h.send(H2TestClient.cancel(1))
        Self.setHint(cache, "v2")
        try await h.until("the change on stream 3") { _ in (try? h.hints(3)) == ["v1", "v2"] }
        #expect(h.client.received.filter { $0.stream == 1 }.count == before, "the agent wrote to a stream its client reset")
        #expect(!h.client.received.contains { $0.type == 0x7 }, "the connection was closed with GOAWAY")
    }

    @Test("a call reset while its work runs keeps its place in the call limit until the work returns, and its answer is dropped")
    func resetDuringWork() async throws {
        let minter = GatedMinter()
        defer { minter.open() }
        var limits = WorkloadAPILimits()
        limits.streamsPerConnection = 1
        let h = try await Harness(cache: try Self.cache(hint: "v1"), minter: minter, limits: limits)
        try await h.send(h.client.call(1, method: "FetchJWTSVID", message: Self.jwtRequest("inference")))
        try await h.until("the signature is asked for") { _ in minter.started.load(ordering: .sequentiallyConsistent) == 1 }

        try await h.send(H2TestClient.cancel(1))
        try await h.send(h.client.call(3))
        try await h.until("stream 3 answered") { client in client.status(3) != nil || client.received.contains { $0.stream == 3 && $0.type == 0x0 } }
        #expect(h.client.status(3)?.code == String(RPCError.Code.resourceExhausted.rawValue))
        #expect(h.client.status(3)?.message.contains("has 1 calls open") == true, "\(String(describing: h.client.status(3)))")

        minter.open()
        // Once the reset call's work has returned, its place is free again: a new call is served.
        var stream: UInt32 = 5
        var served = false
        for _ in 0..<500 where !served {
            try await h.send(h.client.call(stream))
            try await h.until("an answer on stream \(stream)") { client in
                client.status(stream) != nil || client.received.contains { $0.stream == stream && $0.type == 0x0 }
            }
            served = h.client.status(stream) == nil
            if !served {
                #expect(h.client.status(stream)?.code == String(RPCError.Code.resourceExhausted.rawValue))
                stream += 2
                try await Task.sleep(for: .milliseconds(10))
            }
        }
        #expect(served, "the reset call's place was never given back")
        #expect(!h.client.received.contains { $0.stream == 1 }, "the reset call's answer was written")
    }

    @Test("shutdown: GOAWAY, the stream ends OK, the unary call under way is answered, new streams are refused, then the connection closes")
    func shutdown() async throws {
        let minter = GatedMinter()
        defer { minter.open() }
        let cache = try Self.cache(hint: "v1")
        let h = try await Harness(cache: cache, minter: minter)
        try await h.send(h.client.call(1))
        try await h.until("the stream's first message") { _ in (try? h.hints(1)) == ["v1"] }
        try await h.send(h.client.call(3, method: "FetchJWTSVID", message: Self.jwtRequest("inference")))
        try await h.until("the signature is asked for") { _ in minter.started.load(ordering: .sequentiallyConsistent) == 1 }

        cache.changes.finishAll()
        try await h.until("the stream ends") { $0.status(1) != nil }
        #expect(h.client.status(1)?.code == "0")
        #expect(h.client.received.contains { $0.type == 0x7 }, "no GOAWAY")
        #expect(h.client.status(3) == nil, "the unary call under way was cut off")
        #expect(h.channel.isActive, "closed before the unary call was answered")

        // GOAWAY names stream 3 as the last one taken: a stream opened after it is not processed
        // (RFC 9113 §6.8), its client knows to try again on a new connection, and the calls
        // already taken go on.
        let goAway = try #require(h.client.received.first { $0.type == 0x7 })
        #expect(goAway.payload.prefix(4) == [0, 0, 0, 3])
        try await h.send(h.client.headers(5))
        await h.loop.run()
        try await h.read()
        #expect(!h.client.received.contains { $0.stream == 5 && $0.type == 0x1 }, "a stream opened after GOAWAY was answered")
        #expect(h.channel.isActive, "a stream opened after GOAWAY closed the connection")

        minter.open()
        try await h.until("the unary answer") { $0.status(3) != nil }
        #expect(h.client.status(3)?.code == "0")
        let answer = try #require(h.client.received.first { $0.stream == 3 && $0.type == 0x0 })
        #expect(try WorkloadAPI_JWTSVIDResponse(serializedBytes: answer.payload.dropFirst(5)).svids.map(\.svid) == ["token-for-inference"])
        try await h.until("the connection closes") { _ in !h.channel.isActive }
        #expect(!h.client.received.contains { $0.stream == 5 && $0.type == 0x1 }, "a stream opened after GOAWAY was answered")
    }

    @Test("gRPC's content types are matched exactly", arguments: [
        ("application/grpc", true), ("application/grpc+proto", true),
        ("application/grpc+json", false), ("application/grpc-web", false), ("application/grpcx", false), ("application/json", false),
    ])
    func contentTypes(contentType: String, accepted: Bool) async throws {
        let h = try await Harness(cache: AgentCache())
        try await h.send(h.client.call(1, method: "FetchX509Bundles", contentType: contentType))
        try await h.until("an answer") { client in client.received.contains { $0.stream == 1 && $0.type == 0x1 && $0.flags & 0x1 != 0 } }
        let last = try #require(h.client.received.last { $0.stream == 1 && $0.type == 0x1 }?.headers)
        if accepted {
            // Served as gRPC: this process holds no identity.
            #expect(last.first(name: "grpc-status") == String(RPCError.Code.permissionDenied.rawValue))
        } else {
            #expect(last.first(name: ":status") == "415")
            #expect(last.first(name: "grpc-status") == nil)
        }
    }
}
