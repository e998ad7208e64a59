// The Workload API's gRPC protocol at its edges, against a real agent: calls a well-behaved
// SPIFFE client never makes get gRPC's status for them with a reason, on the same connection
// that keeps serving; requests that are not gRPC get HTTP's; a cancelled stream frees nothing
// but itself; a graceful shutdown ends open streams with OK.

import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import HallmarkTestSupport
import NIOCore
import NIOHPACK
import SPIFFEWorkloadAPI
import Synchronization
import Testing

/// Messages as their bytes, so that a test can send what no generated client would.
private struct RawBytes: MessageSerializer, MessageDeserializer {
    func serialize<Bytes: GRPCContiguousBytes>(_ message: [UInt8]) throws -> Bytes { Bytes(message) }
    func deserialize<Bytes: GRPCContiguousBytes>(_ bytes: Bytes) throws -> [UInt8] { bytes.withUnsafeBytes { Array($0) } }
}

@Suite("Workload API protocol", .serialized)
struct WorkloadAPIProtocolTests {
    typealias Client = GRPCClient<HTTP2ClientTransport.Posix>

    /// One call of `method` sending `messages`; its one answer, or the status it ended with.
    static func call(
        _ client: Client, _ method: String, _ messages: [[UInt8]],
        metadata: Metadata = WorkloadAPIClient.securityMetadata, options: CallOptions = .defaults
    ) async throws -> Result<[UInt8], RPCError> {
        let request = StreamingClientRequest<[UInt8]>(of: [UInt8].self, metadata: metadata) { writer in
            for message in messages { try await writer.write(message) }
        }
        do {
            return .success(try await client.clientStreaming(
                request: request, descriptor: MethodDescriptor(fullyQualifiedService: "SpiffeWorkloadAPI", method: method),
                serializer: RawBytes(), deserializer: RawBytes(), options: options
            ) { try $0.message })
        } catch let error as RPCError {
            return .failure(error)
        }
    }

    /// An agent (holding its server) with an SVID for this process (`spiffe://example.org/workload`).
    static func agentServingThisProcess() throws -> TestAgent {
        let server = try TestServer()
        let agent = try TestAgent(server: server)
        try agent.register("/workload", selectors: ["unix:uid:\(getuid())"])
        _ = try agent.waitForSVID("spiffe://example.org/workload")
        return agent
    }

    static func jwtRequest(_ audience: String) throws -> [UInt8] {
        try WorkloadAPI_JWTSVIDRequest.with { $0.audience = [audience] }.serializedBytes()
    }

    static func expect(_ result: Result<[UInt8], RPCError>, _ code: RPCError.Code, _ reason: String, _ what: String) {
        guard case .failure(let error) = result else {
            Issue.record("\(what): answered instead of refused")
            return
        }
        #expect(error.code == code, "\(what): \(error.code) \(error.message)")
        #expect(error.message.contains(reason), "\(what): expected '\(reason)' in: \(error.message)")
    }

    @Test("calls outside the protocol get gRPC's status and a reason, and the connection keeps serving")
    func statuses() async throws {
        let agent = try Self.agentServingThisProcess()

        var config = HTTP2ClientTransport.Posix.Config.defaults
        config.compression = .init(algorithm: .none, enabledAlgorithms: .gzip)
        let transport = try HTTP2ClientTransport.Posix(target: .unixDomainSocket(path: agent.socket), transportSecurity: .plaintext, config: config)
        try await withGRPCClient(transport: transport) { client in
            let good = try Self.jwtRequest("spiffe://example.org/peer")
            func stillServes(_ after: String) async throws {
                let answered = try await Self.call(client, "FetchJWTSVID", [good])
                let response = try WorkloadAPI_JWTSVIDResponse(serializedBytes: try answered.get())
                #expect(response.svids.first?.spiffeID == "spiffe://example.org/workload", "after \(after)")
            }
            try await stillServes("nothing")

            // A path outside the API; its name, with a per cent sign and a non-ASCII letter, comes
            // back intact through grpc-message's percent-encoding.
            Self.expect(try await Self.call(client, "Fetché%SVID", [good]), .unimplemented, "/SpiffeWorkloadAPI/Fetché%SVID", "unknown method")
            try await stillServes("an unknown method")
            Self.expect(try await Self.call(client, "FetchJWTSVID", [good], metadata: [:]), .invalidArgument, "security header", "no security header")
            Self.expect(try await Self.call(client, "FetchJWTSVID", []), .internalError, "no message", "no request message")
            Self.expect(try await Self.call(client, "FetchJWTSVID", [good, good]), .internalError, "more than one message", "two request messages")
            Self.expect(try await Self.call(client, "FetchJWTSVID", [[0xff, 0xff]]), .invalidArgument, "JWTSVIDRequest", "garbage message")
            Self.expect(
                try await Self.call(client, "FetchJWTSVID", [try Self.jwtRequest(String(repeating: "a", count: 40_000))]),
                .resourceExhausted, "larger than 32768 bytes", "a 40 kB request"
            )
            try await stillServes("a 40 kB request")
            var gzip = CallOptions.defaults
            gzip.compression = .gzip
            Self.expect(try await Self.call(client, "FetchJWTSVID", [good], options: gzip), .unimplemented, "compression gzip", "a gzip request")
            Self.expect(try await Self.call(client, "FetchJWTSVID", [try WorkloadAPI_JWTSVIDRequest().serializedBytes()]), .invalidArgument, "audience", "no audience")
            try await stillServes("every refusal")
        }
        #expect(!agent.log.contains("Fatal error"), "the agent crashed")
    }

    /// A raw HTTP/2 connection: frames out, frames in, header blocks through HPACK.
    final class RawConnection {
        let fd: Int32
        var received: [UInt8] = []
        var encoder = HPACKEncoder(allocator: ByteBufferAllocator())
        var decoder = HPACKDecoder(allocator: ByteBufferAllocator())

        /// - Parameter initialWindow: SETTINGS_INITIAL_WINDOW_SIZE to announce, if not HTTP/2's default.
        init(_ path: String, initialWindow: UInt32? = nil) throws {
            fd = try HostileInputTests.connectUnix(path)
            var interval = timeval(tv_sec: 0, tv_usec: 100_000)
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &interval, socklen_t(MemoryLayout<timeval>.size))
            let settings = initialWindow.map { [0, 4] + Self.bigEndian($0) } ?? []
            send(HostileInputTests.preface + HostileInputTests.frame(length: settings.count, type: 0x4, payload: settings))
        }

        static func bigEndian(_ value: UInt32) -> [UInt8] {
            [UInt8(value >> 24), UInt8(value >> 16 & 0xff), UInt8(value >> 8 & 0xff), UInt8(value & 0xff)]
        }

        /// The gRPC messages in a stream's DATA frames, reassembled across frame boundaries.
        static func messages(_ frames: [Frame], stream: UInt32) -> [[UInt8]] {
            var bytes = frames.filter { $0.type == 0x0 && $0.stream == stream }.flatMap(\.payload)[...]
            var messages: [[UInt8]] = []
            while bytes.count >= 5 {
                let start = bytes.startIndex
                let length = Int(bytes[start + 1]) << 24 | Int(bytes[start + 2]) << 16 | Int(bytes[start + 3]) << 8 | Int(bytes[start + 4])
                guard bytes.count >= 5 + length else { break }
                messages.append(Array(bytes[(start + 5)..<(start + 5 + length)]))
                bytes = bytes[(start + 5 + length)...]
            }
            return messages
        }

        deinit { close(fd) }

        func send(_ bytes: [UInt8]) {
            _ = bytes.withUnsafeBytes { Foundation.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        }

        func headers(stream: UInt32, _ fields: [(String, String)], endStream: Bool) throws {
            var block = ByteBuffer()
            try encoder.encode(headers: HPACKHeaders(fields), to: &block)
            let payload = Array(block.readableBytesView)
            send(HostileInputTests.frame(length: payload.count, type: 0x1, flags: 0x4 | (endStream ? 0x1 : 0), stream: stream, payload: payload))
        }

        func grpcRequest(stream: UInt32, contentType: String = "application/grpc") throws {
            try headers(stream: stream, [
                (":method", "POST"), (":scheme", "http"), (":path", "/SpiffeWorkloadAPI/FetchX509SVID"), (":authority", "localhost"),
                ("content-type", contentType), ("te", "trailers"), ("workload.spiffe.io", "true"),
            ], endStream: false)
            // One empty X509SVIDRequest: no compression, length 0.
            send(HostileInputTests.frame(length: 5, type: 0x0, flags: 0x1, stream: stream, payload: [0, 0, 0, 0, 0]))
        }

        /// A frame as it came in; header blocks decoded, in order, as HPACK requires.
        struct Frame { var type: UInt8; var flags: UInt8; var stream: UInt32; var payload: [UInt8]; var headers: HPACKHeaders? }

        /// Reads frames until one satisfies `until`, or the deadline; returns all read.
        func frames(until: (Frame) -> Bool, timeout: TimeInterval = 10) throws -> [Frame] {
            var frames: [Frame] = []
            let deadline = Date().addingTimeInterval(timeout)
            var buffer = [UInt8](repeating: 0, count: 65536)
            while Date() < deadline {
                while received.count >= 9 {
                    let length = Int(received[0]) << 16 | Int(received[1]) << 8 | Int(received[2])
                    guard received.count >= 9 + length else { break }
                    let stream = UInt32(received[5] & 0x7f) << 24 | UInt32(received[6]) << 16 | UInt32(received[7]) << 8 | UInt32(received[8])
                    var frame = Frame(type: received[3], flags: received[4], stream: stream, payload: Array(received[9..<(9 + length)]), headers: nil)
                    received.removeFirst(9 + length)
                    if frame.type == 0x1 {
                        var block = ByteBuffer(bytes: frame.payload)
                        frame.headers = try decoder.decodeHeaders(from: &block)
                    }
                    frames.append(frame)
                    if until(frame) { return frames }
                }
                let count = recv(fd, &buffer, buffer.count, 0)
                if count > 0 { received += buffer[..<count]; continue }
                if count == 0 { throw TestFailure("the agent closed the connection after \(frames.map { "type \($0.type) flags \($0.flags) stream \($0.stream) \($0.headers.map { "\($0)" } ?? "")" })") }
            }
            throw TestFailure("no such frame within \(timeout) s; got \(frames.map { "type \($0.type) stream \($0.stream)" })")
        }
    }

    @Test("a request that is not gRPC gets HTTP 415; a stream reset by its client ends alone; the connection keeps serving")
    func rawFrames() async throws {
        let agent = try Self.agentServingThisProcess()
        let connection = try RawConnection(agent.socket)

        try connection.grpcRequest(stream: 1, contentType: "text/plain")
        let refused = try connection.frames { $0.type == 0x1 && $0.stream == 1 }.last!
        #expect(refused.headers?.first(name: ":status") == "415")
        #expect(refused.flags & 0x1 != 0, "the refusal ends the stream")

        try connection.grpcRequest(stream: 3)
        let first = try connection.frames { $0.type == 0x0 && $0.stream == 3 }
        #expect(first.first { $0.type == 0x1 && $0.stream == 3 }?.headers?.first(name: ":status") == "200")
        let message = first.last!.payload
        #expect(message.count > 5 && message[0] == 0, "a length-prefixed, uncompressed message")
        let response = try WorkloadAPI_X509SVIDResponse(serializedBytes: Array(message.dropFirst(5)))
        #expect(response.svids.first?.spiffeID == "spiffe://example.org/workload")

        // The client cancels stream 3 (RST_STREAM, CANCEL); a change later goes to stream 5 only.
        connection.send(HostileInputTests.frame(length: 4, type: 0x3, stream: 3, payload: [0, 0, 0, 8]))
        try connection.grpcRequest(stream: 5)
        _ = try connection.frames { $0.type == 0x0 && $0.stream == 5 }
        try agent.register("/workload/second", selectors: ["unix:uid:\(getuid())"])
        let afterChange = try connection.frames { $0.type == 0x0 && $0.stream == 5 }
        #expect(!afterChange.contains { $0.stream == 3 }, "a cancelled stream was written to")
        #expect(!afterChange.contains { $0.type == 0x3 || $0.type == 0x7 }, "the connection or a stream was reset")
        let update = try WorkloadAPI_X509SVIDResponse(serializedBytes: Array(afterChange.last!.payload.dropFirst(5)))
        #expect(Set(update.svids.map(\.spiffeID)) == ["spiffe://example.org/workload", "spiffe://example.org/workload/second"])

        // A GET with no body: 405, and the connection still serves.
        try connection.headers(stream: 7, [(":method", "GET"), (":scheme", "http"), (":path", "/"), (":authority", "localhost")], endStream: true)
        let get = try connection.frames { $0.type == 0x1 && $0.stream == 7 }.last!
        #expect(get.headers?.first(name: ":status") == "405")
        try connection.grpcRequest(stream: 9)
        let last = try connection.frames { $0.type == 0x0 && $0.stream == 9 }
        #expect(!last.contains { $0.type == 0x7 }, "the connection was closed after the GET")
        #expect(!agent.log.contains("Fatal error"), "the agent crashed")
    }

    @Test("a stream whose reader lags gets the latest state once it reads, not every state in between")
    func slowReader() async throws {
        let agent = try Self.agentServingThisProcess()
        // A window of one byte: the first message cannot leave the agent until the client allows it.
        let connection = try RawConnection(agent.socket, initialWindow: 1)
        try connection.grpcRequest(stream: 1)
        var frames = try connection.frames { $0.type == 0x0 && $0.stream == 1 }
        var expected: Set<String> = ["spiffe://example.org/workload"]
        for index in 1...3 {
            let id = "spiffe://example.org/workload/\(index)"
            try agent.register("/workload/\(index)", selectors: ["unix:uid:\(getuid())"])
            _ = try agent.waitForSVID(id)
            expected.insert(id)
        }
        // Three changes have reached the agent's cache; now the client reads.
        connection.send(HostileInputTests.frame(length: 4, type: 0x8, stream: 1, payload: RawConnection.bigEndian(1 << 20)))
        var seen = frames
        frames += try connection.frames { frame in
            seen.append(frame)
            return RawConnection.messages(seen, stream: 1).count == 2
        }
        let messages = RawConnection.messages(frames, stream: 1)
        let first = try WorkloadAPI_X509SVIDResponse(serializedBytes: messages[0])
        let latest = try WorkloadAPI_X509SVIDResponse(serializedBytes: messages[1])
        #expect(first.svids.map(\.spiffeID) == ["spiffe://example.org/workload"], "the first message is the state when the stream opened")
        #expect(Set(latest.svids.map(\.spiffeID)) == expected, "the second is the latest state, not an intermediate one")
        // And nothing else follows: no backlog of the states in between.
        let more = (try? connection.frames(until: { $0.type == 0x0 && $0.stream == 1 }, timeout: 1)) ?? []
        #expect(RawConnection.messages(frames + more, stream: 1).count == 2, "states in between were queued")
    }

    @Test("a graceful shutdown ends open streams with OK and the agent exits")
    func gracefulShutdown() async throws {
        let agent = try Self.agentServingThisProcess()
        let received = Mutex(0)
        let client = try WorkloadAPIClient(endpoint: agent.socket)
        let stream = Task {
            try await client.withClient { api in
                try await api.fetchX509SVID(WorkloadAPI_X509SVIDRequest(), metadata: WorkloadAPIClient.securityMetadata) { response in
                    for try await _ in response.messages { received.withLock { $0 += 1 } }
                }
            }
        }
        let opened = Date().addingTimeInterval(20)
        while received.withLock({ $0 }) == 0 && Date() < opened { try await Task.sleep(for: .milliseconds(20)) }
        #expect(received.withLock { $0 } == 1)
        // And one seen frame by frame.
        let raw = try RawConnection(agent.socket)
        try raw.grpcRequest(stream: 1)
        _ = try raw.frames { $0.type == 0x0 && $0.stream == 1 }

        // SIGTERM; a watchdog kills an agent that does not exit.
        let pid = try #require(agent.pid)
        let killed = Mutex(false)
        let watchdog = DispatchWorkItem {
            killed.withLock { $0 = true }
            kill(pid, SIGKILL)
        }
        DispatchQueue.global().asyncAfter(deadline: .now() + 30, execute: watchdog)
        let status = agent.stop()
        watchdog.cancel()
        // GOAWAY with NO_ERROR, then the stream's trailers with status 0, before the connection closes.
        let frames = try raw.frames { $0.type == 0x1 && $0.stream == 1 && $0.flags & 0x1 != 0 }
        let goAway = try #require(frames.first { $0.type == 0x7 }, "no GOAWAY")
        #expect(goAway.payload.count >= 8 && goAway.payload[4..<8].allSatisfy { $0 == 0 }, "GOAWAY's error code is NO_ERROR")
        #expect(frames.last?.headers?.first(name: "grpc-status") == "0")
        #expect(!killed.withLock { $0 }, "the agent did not exit within 30 s of SIGTERM")
        #expect(status == 0, "the agent's exit status")
        #expect(agent.log.contains("hallmark agent shutting down"))
        #expect(!agent.log.contains("Fatal error"), "the agent crashed")
        let ended = await stream.result
        #expect(throws: Never.self, "the stream ended with OK") { try ended.get() }
    }
}
