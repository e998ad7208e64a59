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
import NIOHTTP2
import Testing

@Suite("Workload API limits")
struct WorkloadAPILimitsTests {
    /// One connection's server side on an embedded channel, and a client written frame by frame.
    final class Connection {
        let loop = EmbeddedEventLoop()
        let channel: EmbeddedChannel
        var client = H2TestClient()

        init(limits: WorkloadAPILimits = WorkloadAPILimits(), refusal: CallStatus? = nil) throws {
            channel = EmbeddedChannel(loop: loop)
            let service = testWorkloadAPIService(limits: limits)
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

        func preface() throws {
            try send(H2TestClient.preface)
        }

        /// A call's HEADERS; the request stays open (no message, no END_STREAM).
        func openCall(_ stream: UInt32) throws {
            try send(try client.headers(stream))
        }

        func data(_ stream: UInt32, _ count: Int) throws {
            var left = count
            while left > 0 {
                let size = min(left, 16_384)
                try send(H2TestClient.frame(type: 0x0, stream: stream, [UInt8](repeating: 0, count: size)))
                left -= size
            }
        }

        /// Every frame the agent has written so far.
        func frames() throws -> [H2TestClient.Frame] {
            while let out = try channel.readOutbound(as: IOData.self) {
                if case .byteBuffer(let bytes) = out { try client.receive(bytes) }
            }
            return client.received
        }

        /// The status a stream ended with, if it has.
        func status(_ stream: UInt32) throws -> (code: String, message: String)? {
            _ = try frames()
            return client.status(stream)
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
        try connection.send(H2TestClient.frame(type: 0x3, stream: 1, [0, 0, 0, 8]))
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
