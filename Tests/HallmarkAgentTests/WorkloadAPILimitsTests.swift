// The Workload API's limits on one connection, driven frame by frame on NIO's embedded event
// loop, whose clock the test moves: a connection that never begins HTTP/2, one left idle, one
// over the connection limit, too many calls, too many bytes held. And the connection counter
// that decides which connections are over.

import Foundation
import GRPCCore
@testable import HallmarkAgent
import Logging
import NIOCore
import NIOEmbedded
import NIOHPACK
import NIOHTTP2
import Testing

@Suite("Workload API limits")
struct WorkloadAPILimitsTests {
    /// One connection's server side on an embedded channel, and a client written frame by frame.
    final class Connection {
        let loop = EmbeddedEventLoop()
        let channel: EmbeddedChannel
        var encoder = HPACKEncoder(allocator: ByteBufferAllocator())
        var decoder = HPACKDecoder(allocator: ByteBufferAllocator())
        var received: [Frame] = []
        private var pending = ByteBuffer()

        struct Frame {
            var type: UInt8
            var flags: UInt8
            var stream: UInt32
            var payload: [UInt8]
            var headers: HPACKHeaders?
        }

        init(limits: WorkloadAPILimits = WorkloadAPILimits(), refusal: CallStatus? = nil) throws {
            channel = EmbeddedChannel(loop: loop)
            let logger = Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() })
            let cache = AgentCache()
            let service = WorkloadAPIService(
                cache: cache, attestor: UnixWorkloadAttestor(),
                link: ServerLink(config: AgentConfig(dataDir: "/nonexistent", serverHost: "127.0.0.1", serverPort: 1, socketPath: "/nonexistent/socket"), cache: cache, logger: logger),
                logger: logger, jwtMints: .init(limits.jwtMintsPerUID)
            )
            try channel.pipeline.syncOperations.addHandlers([
                NIOHTTP2Handler(mode: .server, initialSettings: [HTTP2Setting(parameter: .maxConcurrentStreams, value: limits.streamsPerConnection)]),
                WorkloadAPIConnection(service: service, peer: nil, limits: limits, refusal: refusal),
            ])
            try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        }

        var isOpen: Bool { channel.isActive }

        func advance(_ seconds: Int64) {
            loop.advanceTime(by: .seconds(seconds))
        }

        func send(_ bytes: [UInt8]) throws {
            try channel.writeInbound(ByteBuffer(bytes: bytes))
        }

        static func frame(type: UInt8, flags: UInt8 = 0, stream: UInt32 = 0, _ payload: [UInt8] = []) -> [UInt8] {
            let length = payload.count
            return [UInt8(length >> 16 & 0xff), UInt8(length >> 8 & 0xff), UInt8(length & 0xff), type, flags]
                + [UInt8(stream >> 24 & 0x7f), UInt8(stream >> 16 & 0xff), UInt8(stream >> 8 & 0xff), UInt8(stream & 0xff)] + payload
        }

        /// The client's preface: the magic string and an empty SETTINGS frame.
        func preface() throws {
            try send(Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8) + Self.frame(type: 0x4))
        }

        /// A Workload API call's HEADERS; the request stays open (no message, no END_STREAM).
        func openCall(_ stream: UInt32, method: String = "FetchX509SVID") throws {
            var block = ByteBuffer()
            try encoder.encode(headers: HPACKHeaders([
                (":method", "POST"), (":scheme", "http"), (":path", "/SpiffeWorkloadAPI/\(method)"), (":authority", "localhost"),
                ("content-type", "application/grpc"), ("te", "trailers"), ("workload.spiffe.io", "true"),
            ]), to: &block)
            try send(Self.frame(type: 0x1, flags: 0x4, stream: stream, Array(block.readableBytesView)))
        }

        func data(_ stream: UInt32, _ count: Int) throws {
            var left = count
            while left > 0 {
                let size = min(left, 16_384)
                try send(Self.frame(type: 0x0, stream: stream, [UInt8](repeating: 0, count: size)))
                left -= size
            }
        }

        /// Every frame the agent has written so far, header blocks decoded in order.
        func frames() throws -> [Frame] {
            while let out = try channel.readOutbound(as: IOData.self) {
                guard case .byteBuffer(var buffer) = out else { continue }
                pending.writeBuffer(&buffer)
            }
            while pending.readableBytes >= 9, let head = pending.getBytes(at: pending.readerIndex, length: 9) {
                let length = Int(head[0]) << 16 | Int(head[1]) << 8 | Int(head[2])
                guard pending.readableBytes >= 9 + length else { break }
                pending.moveReaderIndex(forwardBy: 9)
                let payload = pending.readBytes(length: length)!
                let stream = UInt32(head[5] & 0x7f) << 24 | UInt32(head[6]) << 16 | UInt32(head[7]) << 8 | UInt32(head[8])
                var frame = Frame(type: head[3], flags: head[4], stream: stream, payload: payload)
                if frame.type == 0x1 {
                    var block = ByteBuffer(bytes: payload)
                    frame.headers = try decoder.decodeHeaders(from: &block)
                }
                received.append(frame)
            }
            return received
        }

        /// The status a stream ended with, if it has.
        func status(_ stream: UInt32) throws -> (code: String, message: String)? {
            guard let trailers = try frames().last(where: { $0.stream == stream && $0.type == 0x1 && $0.flags & 0x1 != 0 })?.headers,
                  let code = trailers.first(name: "grpc-status") else { return nil }
            return (code, (trailers.first(name: "grpc-message") ?? "").removingPercentEncoding ?? "")
        }
    }

    static let resourceExhausted = String(RPCError.Code.resourceExhausted.rawValue)

    @Test("a connection that does not begin HTTP/2 within the preface timeout is closed")
    func prefaceTimeout() throws {
        var limits = WorkloadAPILimits()
        limits.prefaceTimeout = 10
        let connection = try Connection(limits: limits)
        connection.advance(9)
        #expect(connection.isOpen)
        connection.advance(1)
        #expect(!connection.isOpen, "still open 10 s after connecting with no preface")
    }

    @Test("after its preface, a connection with no call is closed with GOAWAY at the idle timeout, not before")
    func idleTimeout() throws {
        var limits = WorkloadAPILimits()
        limits.idleTimeout = 300
        let connection = try Connection(limits: limits)
        try connection.preface()
        connection.advance(299)
        #expect(connection.isOpen, "the preface timeout closed a connection that sent its preface")
        connection.advance(1)
        #expect(!connection.isOpen, "still open after 300 s idle")
        let goAway = try #require(try connection.frames().first { $0.type == 0x7 }, "no GOAWAY")
        #expect(goAway.payload[4..<8].allSatisfy { $0 == 0 }, "GOAWAY's error code is NO_ERROR")
    }

    @Test("an open call keeps a connection from idling; the clock starts again when the call ends")
    func callHoldsConnection() throws {
        var limits = WorkloadAPILimits()
        limits.idleTimeout = 300
        let connection = try Connection(limits: limits)
        try connection.preface()
        connection.advance(200)
        try connection.openCall(1)
        connection.advance(400)
        #expect(connection.isOpen, "a connection with an open call was closed as idle")
        // The client cancels its call (RST_STREAM, CANCEL): the connection is idle from now.
        try connection.send(Connection.frame(type: 0x3, stream: 1, [0, 0, 0, 8]))
        connection.advance(299)
        #expect(connection.isOpen)
        connection.advance(1)
        #expect(!connection.isOpen)
    }

    @Test("a connection over the connection limit has its first call answered RESOURCE_EXHAUSTED naming the limit, then closes")
    func refusedConnection() throws {
        let message = "uid 1000 has 256 Workload API connections open, the most one uid may (--workload-connections-per-uid); close idle ones or retry"
        let connection = try Connection(refusal: CallStatus(code: .resourceExhausted, message: message))
        try connection.preface()
        try connection.openCall(1)
        let status = try #require(try connection.status(1), "the call was not answered")
        #expect(status.code == Self.resourceExhausted)
        #expect(status.message == message)
        #expect(!connection.isOpen, "a refused connection stayed open")
    }

    @Test("a refused connection that sends no call is closed within a second")
    func refusedConnectionSilent() throws {
        var limits = WorkloadAPILimits()
        limits.prefaceTimeout = 10
        let connection = try Connection(limits: limits, refusal: CallStatus(code: .resourceExhausted, message: "over"))
        try connection.preface()
        #expect(connection.isOpen)
        connection.advance(1)
        #expect(!connection.isOpen, "a refused connection held its descriptor past its grace")
    }

    @Test("calls past the per-connection limit are refused with RESOURCE_EXHAUSTED naming it; the open ones are not disturbed")
    func streamLimit() throws {
        var limits = WorkloadAPILimits()
        limits.streamsPerConnection = 2
        let connection = try Connection(limits: limits)
        try connection.preface()
        try connection.openCall(1)
        try connection.openCall(3)
        try connection.openCall(5)
        let status = try #require(try connection.status(5), "the third call was not refused")
        #expect(status.code == Self.resourceExhausted)
        #expect(status.message.contains("2 calls open") && status.message.contains("--workload-streams-per-connection"), "\(status.message)")
        #expect(try connection.status(1) == nil && connection.status(3) == nil, "an open call was ended")
        #expect(connection.isOpen)
    }

    @Test("requests held past the per-connection byte limit are refused with RESOURCE_EXHAUSTED naming it")
    func bufferedBytes() throws {
        var limits = WorkloadAPILimits()
        limits.bufferedBytesPerConnection = 40_000
        let connection = try Connection(limits: limits)
        try connection.preface()
        try connection.openCall(1)
        try connection.data(1, 30_000)
        try connection.openCall(3)
        try connection.data(3, 16_000)
        #expect(try connection.status(1) == nil, "the first request, within the limit, was refused")
        let status = try #require(try connection.status(3), "the request past the limit was not refused")
        #expect(status.code == Self.resourceExhausted)
        #expect(status.message.contains("--workload-buffered-bytes"), "\(status.message)")
        // A new call while 30,000 bytes are held is still admitted (under 40,000).
        try connection.openCall(5)
        #expect(try connection.status(5) == nil)
    }

    @Test("the counter admits per uid and in all, lets a few refused connections hear why, and counts closes")
    func counter() {
        var limits = WorkloadAPILimits()
        limits.connectionsPerUID = 2
        limits.connections = 3
        let counter = WorkloadConnectionCounter(limits: limits)
        #expect(counter.admit(uid: 1000) == .admitted)
        #expect(counter.admit(uid: 1000) == .admitted)
        guard case .refused(let flag, let message) = counter.admit(uid: 1000) else {
            Issue.record("a third connection of uid 1000 was admitted")
            return
        }
        #expect(flag == "--workload-connections-per-uid")
        #expect(message.contains("uid 1000 has 2 Workload API connections open"), "\(message)")
        #expect(counter.admit(uid: 1001) == .admitted, "another uid was refused for the first one's connections")
        guard case .refused(let total, _) = counter.admit(uid: 1002) else {
            Issue.record("a connection past the total was admitted")
            return
        }
        #expect(total == "--workload-connections")
        #expect(counter.open() == 3 && counter.open(uid: 1000) == 2)
        counter.release(uid: 1000)
        #expect(counter.admit(uid: 1002) == .admitted, "a closed connection was not counted out")
        // Refused connections waiting to hear why are bounded too; past that they are closed at once.
        for _ in 0..<(WorkloadAPILimits.refusedConnectionsWaiting - 2) {
            guard case .refused = counter.admit(uid: 1000) else {
                Issue.record("expected a refusal")
                return
            }
        }
        #expect(counter.admit(uid: 1000) == .closed)
        counter.releaseRefused()
        guard case .refused = counter.admit(uid: 1000) else {
            Issue.record("a refused connection that closed was not counted out")
            return
        }
    }
}
