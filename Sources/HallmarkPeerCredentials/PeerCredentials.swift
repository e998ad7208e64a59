// The kernel's word on who is at the other end of a Unix socket (SO_PEERCRED), carried to gRPC
// handlers. A handler first in every HTTP/2 stream's pipeline strips any client-sent header of
// the same name and adds the kernel's values; an interceptor refuses calls without them, so a
// missing or spoofed value can only fail closed.

public import GRPCCore
public import GRPCNIOTransportHTTP2
public import NIOCore
import NIOHTTP2
import NIOPosix
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The process at the other end of a Unix-socket connection, as the kernel reports it.
public struct PeerCredentials: Hashable, Sendable, CustomStringConvertible {
    public let pid: Int32
    public let uid: UInt32
    public let gid: UInt32
    /// The process's start time in clock ticks since boot (/proc/PID/stat field 22), read when the
    /// stream was accepted; compare it again before trusting anything read about the pid later.
    public let startTime: UInt64?
    /// The executable the process ran when it connected (nil where it was not read).
    public var executable: ExecutableIdentity?
    /// Whether the process was in this process's mount namespace when it connected.
    public var sameMountNamespace = true

    public init(pid: Int32, uid: UInt32, gid: UInt32, startTime: UInt64?) {
        self.pid = pid
        self.uid = uid
        self.gid = gid
        self.startTime = startTime
    }

    /// The metadata key the transport fills in; whatever a client sends under it is discarded.
    public static let metadataKey = "x-hallmark-peer-credentials"

    public var description: String { "pid=\(pid) uid=\(uid) gid=\(gid)" }

    var headerValue: String { "\(pid),\(uid),\(gid),\(startTime.map(String.init) ?? "")" }

    init?(headerValue: String) {
        let parts = headerValue.split(separator: ",", omittingEmptySubsequences: false)
        guard parts.count == 4, let pid = Int32(parts[0]), let uid = UInt32(parts[1]), let gid = UInt32(parts[2]) else {
            return nil
        }
        self.init(pid: pid, uid: uid, gid: gid, startTime: UInt64(parts[3]))
    }

    /// The refusal of a caller whose credentials the kernel did not give.
    public static let unknownCallerError = RPCError(code: .permissionDenied, message: "the caller's identity could not be established from the kernel")

    /// The credentials the transport attached to a request.
    ///
    /// - Throws: `RPCError(.permissionDenied)` when there are none (the call did not come through
    ///   a transport configured with ``PeerCredentials/serverTransportConfig(_:)``).
    public init(metadata: Metadata) throws {
        let values = Array(metadata[stringValues: Self.metadataKey])
        guard values.count == 1, let credentials = PeerCredentials(headerValue: values[0]) else {
            throw Self.unknownCallerError
        }
        self = credentials
    }

    /// The start time of a process, or nil when it is gone.
    public static func startTime(of pid: Int32) -> UInt64? {
        // open(2) and read(2) into a stack buffer: this runs for every stream and every Workload API call.
        let descriptor = open("/proc/\(pid)/stat", O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { return nil }
        defer { close(descriptor) }
        return withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 4096) { buffer -> UInt64? in
            var count = 0
            while count < buffer.count {
                let got = read(descriptor, buffer.baseAddress! + count, buffer.count - count)
                if got < 0 && errno == EINTR { continue }
                guard got >= 0 else { return nil }
                if got == 0 { break }
                count += got
            }
            // A full buffer means the line may be cut short: no answer rather than a wrong one.
            guard count < buffer.count else { return nil }
            return startTime(statLine: UnsafeBufferPointer(rebasing: buffer[..<count]))
        }
    }

    /// Field 22 (starttime) of a /proc/PID/stat line. The command name (field 2) is in
    /// parentheses and may itself hold spaces and parentheses: fields are counted after the last `)`.
    static func startTime(statLine: some BidirectionalCollection<UInt8>) -> UInt64? {
        guard let close = statLine.lastIndex(of: UInt8(ascii: ")")) else { return nil }
        // After the name and one space come field 3 (state) onwards: starttime is the 20th of
        // them. An empty field stays a field, so that a malformed line cannot shift them.
        let rest = statLine[statLine.index(after: close)...]
        guard rest.first == UInt8(ascii: " ") else { return nil }
        let fields = rest.dropFirst().split(separator: UInt8(ascii: " "), maxSplits: 20, omittingEmptySubsequences: false)
        guard fields.count > 19, !fields[19].isEmpty else { return nil }
        var value: UInt64 = 0
        for digit in fields[19] {
            guard (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(digit) else { return nil }
            let (times10, overflow) = value.multipliedReportingOverflow(by: 10)
            let (sum, carry) = times10.addingReportingOverflow(UInt64(digit - UInt8(ascii: "0")))
            guard !overflow, !carry else { return nil }
            value = sum
        }
        return value
    }

    /// Whether the process that connected is still the one with this pid.
    public var isSameProcessStillRunning: Bool {
        guard let startTime else { return false }
        return Self.startTime(of: pid) == startTime
    }

    /// The process at the other end of a Unix-socket connection, with its start time read now (so
    /// that a pid reused later is told apart); nil when the channel is not a socket the kernel can
    /// be asked about.
    public static func of(_ connection: any Channel) -> EventLoopFuture<PeerCredentials?> {
        guard let provider = connection as? any SocketOptionProvider else { return connection.eventLoop.makeSucceededFuture(nil) }
        return provider.unsafeGetSocketOption(level: SocketOptionLevel(SOL_SOCKET), name: SocketOptionName(SO_PEERCRED))
            .map { (credentials: KernelUCred) -> PeerCredentials? in
                var peer = PeerCredentials(
                    pid: credentials.pid, uid: credentials.uid, gid: credentials.gid,
                    startTime: PeerCredentials.startTime(of: credentials.pid)
                )
                peer.executable = ExecutableIdentity.of(pid: credentials.pid)
                peer.sameMountNamespace = PeerCredentials.sharesMountNamespace(credentials.pid) ?? false
                return peer
            }
            .recover { _ in nil }
    }

    /// A server transport configuration that attaches peer credentials to every call.
    public static func serverTransportConfig(
        _ base: HTTP2ServerTransport.Posix.Config = .defaults
    ) -> HTTP2ServerTransport.Posix.Config {
        var config = base
        config.channelDebuggingCallbacks.onAcceptHTTP2Stream = { stream in
            // Without credentials (not a socket the kernel can be asked about) the handler only
            // strips the client's header, and the interceptor refuses the call.
            let credentials = stream.parent.map(PeerCredentials.of) ?? stream.eventLoop.makeSucceededFuture(nil)
            return credentials.flatMapThrowing { credentials in
                try stream.pipeline.syncOperations.addHandler(PeerCredentialsHandler(credentials), position: .first)
            }
        }
        return config
    }
}

/// `struct ucred` from <sys/socket.h>, which glibc declares only under _GNU_SOURCE.
struct KernelUCred {
    var pid: Int32 = 0
    var uid: UInt32 = 0
    var gid: UInt32 = 0
}

/// Rewrites the request headers of one stream: drops the client's copy of the credentials header
/// and adds the kernel's.
final class PeerCredentialsHandler: ChannelInboundHandler, Sendable {
    typealias InboundIn = HTTP2Frame.FramePayload
    typealias InboundOut = HTTP2Frame.FramePayload

    private let value: String?

    init(_ credentials: PeerCredentials?) {
        value = credentials?.headerValue
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var payload = unwrapInboundIn(data)
        if case .headers(var headers) = payload {
            headers.headers.remove(name: PeerCredentials.metadataKey)
            if let value { headers.headers.add(name: PeerCredentials.metadataKey, value: value) }
            payload = .headers(headers)
        }
        context.fireChannelRead(wrapInboundOut(payload))
    }
}

/// Refuses every call that does not carry kernel credentials, then lets `authorize` decide.
public struct PeerCredentialsInterceptor: ServerInterceptor {
    private let authorize: @Sendable (PeerCredentials, MethodDescriptor) throws -> Void

    /// - Parameter authorize: throws an `RPCError` to refuse a caller.
    public init(authorize: @escaping @Sendable (PeerCredentials, MethodDescriptor) throws -> Void = { _, _ in }) {
        self.authorize = authorize
    }

    public func intercept<Input: Sendable, Output: Sendable>(
        request: StreamingServerRequest<Input>,
        context: ServerContext,
        next: @Sendable (StreamingServerRequest<Input>, ServerContext) async throws -> StreamingServerResponse<Output>
    ) async throws -> StreamingServerResponse<Output> {
        do {
            let credentials = try PeerCredentials(metadata: request.metadata)
            try authorize(credentials, context.descriptor)
        } catch let error as RPCError {
            return StreamingServerResponse(error: error)
        }
        return try await next(request, context)
    }
}
