// A Workload API client written frame by frame, for driving one connection's handler on NIO's
// testing channels: HTTP/2 frames out, frames in, header blocks through HPACK in order.

import Foundation
import GRPCCore
@testable import HallmarkAgent
import Logging
import NIOCore
import NIOHPACK

/// A Workload API service over `cache` (empty by default), minting JWT-SVIDs with `minter` (by
/// default, none: the server is unreachable).
func testWorkloadAPIService(
    attestor: UnixWorkloadAttestor = UnixWorkloadAttestor(), limits: WorkloadAPILimits = WorkloadAPILimits(),
    cache: AgentCache = AgentCache(), minter: any JWTMinter = UnreachableServer(), clock: @escaping @Sendable () -> Date = { Date() }
) -> WorkloadAPIService {
    let logger = Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() })
    return WorkloadAPIService(cache: cache, attestor: attestor, minter: minter, logger: logger, jwtMints: .init(limits.jwtMintsPerUID), clock: clock)
}

/// A JWT minter for an agent that has no session with its server.
struct UnreachableServer: JWTMinter {
    func mintJWTSVID(entryID: String, audience: [String]) async throws -> (token: String, expiresAt: Date) {
        throw RPCError(code: .unavailable, message: "the agent cannot reach the server to sign a JWT-SVID; retry")
    }
}

struct H2TestClient {
    struct Frame {
        var type: UInt8
        var flags: UInt8
        var stream: UInt32
        var payload: [UInt8]
        var headers: HPACKHeaders?
    }

    private var encoder = HPACKEncoder(allocator: ByteBufferAllocator())
    private var decoder = HPACKDecoder(allocator: ByteBufferAllocator())
    private var pending = ByteBuffer()
    /// Every frame received so far.
    private(set) var received: [Frame] = []

    static func frame(type: UInt8, flags: UInt8 = 0, stream: UInt32 = 0, _ payload: [UInt8] = []) -> [UInt8] {
        let length = payload.count
        return [UInt8(length >> 16 & 0xff), UInt8(length >> 8 & 0xff), UInt8(length & 0xff), type, flags]
            + [UInt8(stream >> 24 & 0x7f), UInt8(stream >> 16 & 0xff), UInt8(stream >> 8 & 0xff), UInt8(stream & 0xff)] + payload
    }

    /// The client's preface: the magic string and an empty SETTINGS frame.
    static let preface = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8) + frame(type: 0x4)

    /// A Workload API call's HEADERS; with `endStream` false the request stays open.
    mutating func headers(
        _ stream: UInt32, method: String = "FetchX509SVID", contentType: String = "application/grpc", endStream: Bool = false,
        extra: [(String, String)] = []
    ) throws -> [UInt8] {
        var block = ByteBuffer()
        try encoder.encode(headers: HPACKHeaders([
            (":method", "POST"), (":scheme", "http"), (":path", "/SpiffeWorkloadAPI/\(method)"), (":authority", "localhost"),
            ("content-type", contentType), ("te", "trailers"), ("workload.spiffe.io", "true"),
        ] + extra), to: &block)
        return Self.frame(type: 0x1, flags: 0x4 | (endStream ? 0x1 : 0), stream: stream, Array(block.readableBytesView))
    }

    /// A whole call: HEADERS, one request message (empty by default), END_STREAM.
    mutating func call(
        _ stream: UInt32, method: String = "FetchX509SVID", contentType: String = "application/grpc", message: [UInt8] = []
    ) throws -> [UInt8] {
        let length = UInt32(message.count)
        let prefixed = [0, UInt8(length >> 24), UInt8(length >> 16 & 0xff), UInt8(length >> 8 & 0xff), UInt8(length & 0xff)] + message
        return try headers(stream, method: method, contentType: contentType) + Self.frame(type: 0x0, flags: 0x1, stream: stream, prefixed)
    }

    /// RST_STREAM with CANCEL (0x8): the client gives up on a call.
    static func cancel(_ stream: UInt32) -> [UInt8] {
        frame(type: 0x3, stream: stream, [0, 0, 0, 0x8])
    }

    /// Takes in bytes the server wrote.
    mutating func receive(_ bytes: ByteBuffer) throws {
        var bytes = bytes
        pending.writeBuffer(&bytes)
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
    }

    /// The gRPC status a stream ended with, if it has ended.
    func status(_ stream: UInt32) -> (code: String, message: String)? {
        guard let trailers = received.last(where: { $0.stream == stream && $0.type == 0x1 && $0.flags & 0x1 != 0 })?.headers,
              let code = trailers.first(name: "grpc-status") else { return nil }
        return (code, (trailers.first(name: "grpc-message") ?? "").removingPercentEncoding ?? "")
    }
}
