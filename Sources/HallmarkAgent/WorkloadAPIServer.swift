// The Workload API's gRPC server on the agent's Unix socket. gRPC over HTTP/2 is answered at the
// frame level: each connection's HTTP/2 frames reach one handler that keeps a small record per
// call, instead of a channel, a pipeline and a task per stream (most of a call's cost under a
// general-purpose gRPC server). A FetchX509SVID answer is a few frames written from the cached
// state. The protocol is the one any gRPC client speaks (PROTOCOL-HTTP2 in gRPC's docs):
// request HEADERS (POST, :path /SpiffeWorkloadAPI/NAME, content-type application/grpc), one
// length-prefixed message, END_STREAM; response HEADERS, length-prefixed messages, and trailers
// carrying grpc-status and grpc-message — or, for a call refused before answering, one HEADERS
// frame holding both (trailers-only).

import Foundation
import GRPCCore
import HallmarkAttestation
import HallmarkPeerCredentials
import HallmarkSupport
import Logging
import NIOCore
import NIOHPACK
import NIOHTTP2
import NIOPosix
import SPIFFEWorkloadAPI
import Synchronization

final class WorkloadAPIServer: Sendable {
    /// The largest request, prefix included. Requests are an audience list or a JWT, far smaller;
    /// as it is below HTTP/2's initial stream window (65,535), an oversized request is answered
    /// before its sender could stall waiting for more window.
    static let maxRequestBytes = 32 * 1024

    private let serverChannel: any Channel

    /// Listens on `socketPath` (which must not exist) and serves `service` until
    /// ``beginGracefulShutdown()``; connections end their streams when `service.cache.changes` finishes.
    static func bind(
        socketPath: String, service: WorkloadAPIService, limits: WorkloadAPILimits = WorkloadAPILimits(),
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) async throws -> WorkloadAPIServer {
        let registry = Registry()
        let counter = WorkloadConnectionCounter(limits: limits)
        // One line per limit every ten seconds at most: a flood is reported, not echoed.
        let reported = RateLimiter<String>(.init(rate: 0.1, burst: 1))
        let channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 256)
            .childChannelInitializer { channel in
                registry.add(channel)
                // The kernel's credentials, once per connection: they are fixed when the client connects.
                return PeerCredentials.of(channel).flatMapThrowing { peer in
                    var refusal: CallStatus?
                    switch counter.admit(uid: peer?.uid) {
                    case .admitted:
                        channel.closeFuture.whenComplete { _ in counter.release(uid: peer?.uid) }
                    case .refused(let flag, let message):
                        refusal = CallStatus(code: .resourceExhausted, message: message)
                        channel.closeFuture.whenComplete { _ in counter.releaseRefused() }
                        if reported.take(flag) == nil {
                            service.logger.notice("Workload API connection refused", metadata: ["caller": "\(peer.map { "\($0)" } ?? "?")", "reason": "\(message)"])
                        }
                    case .closed:
                        channel.close(promise: nil)
                        return
                    }
                    let settings = [
                        HTTP2Setting(parameter: .maxConcurrentStreams, value: limits.streamsPerConnection),
                        HTTP2Setting(parameter: .maxHeaderListSize, value: HPACKDecoder.defaultMaxHeaderListSize),
                    ]
                    try channel.pipeline.syncOperations.addHandlers([
                        NIOHTTP2Handler(mode: .server, initialSettings: settings),
                        WorkloadAPIConnection(service: service, peer: peer, limits: limits, refusal: refusal),
                    ])
                }
            }
            .bind(unixDomainSocketPath: socketPath)
            .get()
        return WorkloadAPIServer(channel: channel, registry: registry)
    }

    /// The connections accepted and not yet closed, so that shutdown can wait for them.
    private final class Registry: Sendable {
        let channels = Mutex<[ObjectIdentifier: any Channel]>([:])

        func add(_ channel: any Channel) {
            let key = ObjectIdentifier(channel)
            channels.withLock { $0[key] = channel }
            channel.closeFuture.whenComplete { [self] _ in channels.withLock { _ = $0.removeValue(forKey: key) } }
        }
    }

    private let registry: Registry

    private init(channel: any Channel, registry: Registry) {
        self.serverChannel = channel
        self.registry = registry
    }

    /// Serves until shut down and every connection has closed.
    func run() async throws {
        try await serverChannel.closeFuture.get()
        while let open = registry.channels.withLock({ $0.values.first }) {
            try? await open.closeFuture.get()
        }
    }

    /// Stops accepting connections; open ones finish once their calls have (see ``bind``).
    func beginGracefulShutdown() {
        serverChannel.close(promise: nil)
    }
}

/// gRPC's status for a call, as the trailers carry it.
struct CallStatus {
    var code: RPCError.Code?
    var message: String

    static let ok = CallStatus(code: nil, message: "")

    init(code: RPCError.Code?, message: String) {
        self.code = code
        self.message = message
    }

    init(_ error: any Error) {
        if let error = error as? RPCError {
            self.init(code: error.code, message: error.message)
        } else {
            self.init(code: .unknown, message: "\(error)")
        }
    }

    var headers: [(String, String)] {
        var headers = [("grpc-status", String(code?.rawValue ?? 0))]
        if !message.isEmpty { headers.append(("grpc-message", Self.percentEncoded(message))) }
        return headers
    }

    /// grpc-message is percent-encoded UTF-8: every byte outside printable ASCII, and `%` itself.
    static func percentEncoded(_ message: String) -> String {
        var encoded = ""
        for byte in message.utf8 {
            if byte >= 0x20 && byte <= 0x7e && byte != UInt8(ascii: "%") {
                encoded.unicodeScalars.append(Unicode.Scalar(byte))
            } else {
                encoded += "%" + String(byte >> 4, radix: 16, uppercase: true) + String(byte & 0xf, radix: 16, uppercase: true)
            }
        }
        return encoded
    }
}

/// One HTTP/2 connection's calls. Confined to the connection's event loop.
final class WorkloadAPIConnection: ChannelInboundHandler {
    typealias InboundIn = HTTP2Frame
    typealias OutboundOut = HTTP2Frame

    private struct Call {
        let method: WorkloadAPIService.Method
        var request: ByteBuffer
        /// Response HEADERS sent: the call ends with trailers, not trailers-only.
        var started = false
        /// Trailers sent: nothing more is written.
        var answered = false
        /// The client has ended its side (END_STREAM).
        var requestEnded = false
        var selectors: Set<Selector> = []
        /// The last message a stream sent, to send again only what changed.
        var sent: [UInt8]?
        /// A stream's message is still being written; `stale` asks for another once it is.
        var writing = false
        var stale = false
        var task: Task<Void, Never>?
    }

    private let service: WorkloadAPIService
    private let peer: PeerCredentials?
    private var context: ChannelHandlerContext?
    private var calls: [HTTP2StreamID: Call] = [:]
    private var subscription: Int?
    private var draining = false
    private var lastStreamID = HTTP2StreamID.rootStream
    /// Request bytes taken off the connection's window and not yet given back.
    private var consumed = 0
    private var needsFlush = false
    /// Checks, while the connection is open, that its process still runs what it ran at accept.
    private var watch: RepeatedTask?
    /// Ends the connection's calls the moment its process exits (a pidfd, where the kernel has one).
    private var exitWatch: ProcessExits.Watch?
    private let limits: WorkloadAPILimits
    /// Set when the connection is over a limit: its first call is answered with this, then it closes.
    private let refusal: CallStatus?
    /// Closes a connection that has not begun HTTP/2 in time (a refused one: that has not been told why).
    private var deadline: Scheduled<Void>?
    /// Closes a connection with no call open for the idle timeout.
    private var idleTimer: Scheduled<Void>?
    private var heardFrom = false
    /// Bytes of answers written and not yet taken by the client's socket.
    private var unread = 0

    init(service: WorkloadAPIService, peer: PeerCredentials?, limits: WorkloadAPILimits = WorkloadAPILimits(), refusal: CallStatus? = nil) {
        self.service = service
        self.peer = peer
        self.limits = limits
        self.refusal = refusal
    }

    static func timeAmount(_ seconds: TimeInterval) -> TimeAmount {
        .nanoseconds(Int64((seconds * 1e9).rounded()))
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        let connection = NIOLoopBound(self, eventLoop: context.eventLoop)
        let loop = context.eventLoop
        let wait = refusal == nil ? limits.prefaceTimeout : min(limits.prefaceTimeout, WorkloadAPILimits.refusedConnectionGrace)
        deadline = loop.scheduleTask(in: Self.timeAmount(wait)) { connection.value.deadlinePassed() }
        // A refused connection is told why and closed; it follows nothing.
        guard refusal == nil else { return }
        subscription = service.cache.changes.subscribe { finished in
            loop.execute {
                if finished { connection.value.drain() } else { connection.value.refreshStreams() }
            }
        }
        // A process that exits or execs another program loses its streams within a second, even
        // when nothing changes to push (a bounded poll: works on every kernel, and exec leaves no
        // other trace); an exit ends them at once where the kernel has pidfds.
        watch = loop.scheduleRepeatedTask(initialDelay: .seconds(1), delay: .seconds(1)) { _ in
            connection.value.checkProcess()
        }
        if let peer, let exits = ProcessExits.shared {
            exitWatch = exits.watch(pid: peer.pid, startTime: peer.startTime) {
                loop.execute { connection.value.checkProcess() }
            }
            if exitWatch == nil { loop.execute { connection.value.checkProcess() } }
        }
        if subscription == nil {
            // Connected after the broadcast finished: the agent is shutting down.
            draining = true
            loop.execute { connection.value.closeIfDrained() }
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        end()
        self.context = nil
    }

    func channelInactive(context: ChannelHandlerContext) {
        end()
        context.fireChannelInactive()
    }

    private func end() {
        if let subscription { service.cache.changes.unsubscribe(subscription) }
        subscription = nil
        watch?.cancel()
        watch = nil
        exitWatch?.cancel()
        exitWatch = nil
        deadline?.cancel()
        deadline = nil
        idleTimer?.cancel()
        idleTimer = nil
        for call in calls.values { call.task?.cancel() }
        calls = [:]
    }

    /// The preface did not come in time, or a refused connection had its grace.
    private func deadlinePassed() {
        deadline = nil
        guard let context else { return }
        if refusal == nil {
            service.logger.debug("Workload API connection closed: no HTTP/2 preface", metadata: ["caller": "\(peer.map { "\($0)" } ?? "?")", "after": "\(limits.prefaceTimeout) s"])
        }
        context.close(promise: nil)
    }

    /// Starts the idle clock when the connection holds no call.
    private func armIdleTimer() {
        guard calls.isEmpty, idleTimer == nil, refusal == nil, !draining, let context else { return }
        let connection = NIOLoopBound(self, eventLoop: context.eventLoop)
        idleTimer = context.eventLoop.scheduleTask(in: Self.timeAmount(limits.idleTimeout)) { connection.value.idleTimedOut() }
    }

    /// No call for the idle timeout: GOAWAY (NO_ERROR, so clients reconnect when they next need to) and close.
    private func idleTimedOut() {
        idleTimer = nil
        guard calls.isEmpty, let context else { return }
        service.logger.debug("Workload API connection closed: idle", metadata: ["caller": "\(peer.map { "\($0)" } ?? "?")", "after": "\(limits.idleTimeout) s"])
        write(HTTP2Frame(streamID: .rootStream, payload: .goAway(lastStreamID: lastStreamID, errorCode: .noError, opaqueData: nil)))
        flushIfNeeded()
        context.close(promise: nil)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // NIOHTTP2Handler has already told the peer (GOAWAY or RST_STREAM); a client that sends
        // malformed HTTP/2 loses its connection, and only its own.
        context.close(promise: nil)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        if !heardFrom {
            // The first frame is the client's SETTINGS, which ends its preface.
            heardFrom = true
            if refusal == nil {
                deadline?.cancel()
                deadline = nil
                armIdleTimer()
            }
        }
        switch frame.payload {
        case .headers(let headers):
            if calls[frame.streamID] == nil {
                open(frame.streamID, headers.headers, endStream: headers.endStream)
            } else if headers.endStream {
                // Trailers from the client: its side is over.
                requestEnded(frame.streamID)
            }
        case .data(let payload):
            giveBackWindow(payload.data.readableBytes + (payload.paddingBytes.map { $0 + 1 } ?? 0))
            guard case .byteBuffer(var bytes) = payload.data else { return }
            received(frame.streamID, &bytes, endStream: payload.endStream)
        default:
            // SETTINGS, PING, WINDOW_UPDATE and the rest are NIOHTTP2Handler's; RST_STREAM shows
            // as the stream's StreamClosedEvent.
            break
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        flushIfNeeded()
        context.fireChannelReadComplete()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let closed = event as? StreamClosedEvent {
            calls.removeValue(forKey: closed.streamID)?.task?.cancel()
            armIdleTimer()
            if draining {
                // Streams close while frames are being written, drain's own included: close the
                // connection only after the writer is done.
                let connection = NIOLoopBound(self, eventLoop: context.eventLoop)
                context.eventLoop.execute { connection.value.closeIfDrained() }
            }
        }
        context.fireUserInboundEventTriggered(event)
    }

    // MARK: requests

    private func open(_ streamID: HTTP2StreamID, _ headers: HPACKHeaders, endStream: Bool) {
        lastStreamID = max(lastStreamID, streamID)
        guard !draining else {
            return write(HTTP2Frame(streamID: streamID, payload: .rstStream(.refusedStream)))
        }
        if let refusal {
            answer(streamID, refusal, endsRequest: endStream)
            draining = true
            write(HTTP2Frame(streamID: .rootStream, payload: .goAway(lastStreamID: streamID, errorCode: .noError, opaqueData: nil)))
            flushIfNeeded()
            context?.close(promise: nil)
            return
        }
        guard calls.count < limits.streamsPerConnection else {
            return answer(streamID, CallStatus(
                code: .resourceExhausted,
                message: "this connection has \(calls.count) calls open, the most one connection may (--workload-streams-per-connection); end some or open another connection"
            ), endsRequest: endStream)
        }
        let held = buffered
        guard held < limits.bufferedBytesPerConnection else {
            return answer(streamID, CallStatus(
                code: .resourceExhausted,
                message: "this connection holds \(held) bytes its client has not read or not finished sending, the most one connection may (--workload-buffered-bytes); read the open streams first"
            ), endsRequest: endStream)
        }
        guard headers.first(name: ":method") == "POST" else {
            return refuse(streamID, httpStatus: "405", endsRequest: endStream)
        }
        guard let contentType = headers.first(name: "content-type"), contentType.hasPrefix("application/grpc") else {
            return refuse(streamID, httpStatus: "415", endsRequest: endStream)
        }
        let path = headers.first(name: ":path") ?? ""
        guard let method = WorkloadAPIService.Method(path: path) else {
            return answer(streamID, CallStatus(code: .unimplemented, message: "no method \(path) on the SPIFFE Workload API"), endsRequest: endStream)
        }
        calls[streamID] = Call(method: method, request: ByteBuffer())
        idleTimer?.cancel()
        idleTimer = nil
        if let encoding = headers.first(name: "grpc-encoding"), encoding != "identity" {
            return answer(streamID, CallStatus(code: .unimplemented, message: "message compression \(encoding) is not supported; send messages uncompressed"))
        }
        do {
            try service.checkSecurityHeader(headers[WorkloadAPI.securityHeaderKey], method)
        } catch {
            return answer(streamID, CallStatus(error))
        }
        if endStream { requestEnded(streamID) }
    }

    private func received(_ streamID: HTTP2StreamID, _ bytes: inout ByteBuffer, endStream: Bool) {
        guard var call = calls[streamID], !call.answered, !call.requestEnded else { return }
        if call.request.readableBytes + bytes.readableBytes > WorkloadAPIServer.maxRequestBytes {
            return answer(streamID, CallStatus(
                code: .resourceExhausted, message: "the request is larger than \(WorkloadAPIServer.maxRequestBytes) bytes"
            ))
        }
        let held = buffered
        if held + bytes.readableBytes > limits.bufferedBytesPerConnection {
            return answer(streamID, CallStatus(
                code: .resourceExhausted,
                message: "this connection holds \(held) bytes its client has not read or not finished sending, the most one connection may (--workload-buffered-bytes); read the open streams first"
            ))
        }
        call.request.writeBuffer(&bytes)
        calls[streamID] = call
        if endStream { requestEnded(streamID) }
    }

    /// The request is complete: one length-prefixed message, then END_STREAM.
    private func requestEnded(_ streamID: HTTP2StreamID) {
        guard var call = calls[streamID] else { return }
        call.requestEnded = true
        let request = call.request
        call.request = ByteBuffer()
        calls[streamID] = call
        guard !call.answered else { return }
        let message: [UInt8]
        do {
            message = try Self.singleMessage(request)
        } catch {
            return answer(streamID, CallStatus(error))
        }
        guard let peer else { return answer(streamID, CallStatus(PeerCredentials.unknownCallerError)) }
        guard peer.isUnchanged else { return retire() }
        do {
            guard let selectors = try service.cachedSelectors(of: peer, call.method) else {
                return attestOffLoop(streamID, message, peer)
            }
            try proceed(streamID, message, selectors, peer)
        } catch {
            answer(streamID, CallStatus(error))
        }
    }

    /// The caller is attested: a stream sends its first state, a unary call runs.
    private func proceed(_ streamID: HTTP2StreamID, _ message: [UInt8], _ selectors: Set<Selector>, _ peer: PeerCredentials) throws {
        guard var call = calls[streamID], !call.answered else { return }
        call.selectors = selectors
        calls[streamID] = call
        if call.method.streams {
            try service.checkStreamRequest(call.method, message)
            service.logger.debug("stream opened", metadata: ["method": "\(call.method.rawValue)", "caller": "\(peer)"])
            refresh(streamID)
        } else {
            runUnary(streamID, call, message, peer)
        }
    }

    /// The caller runs an executable not hashed yet: it is hashed off the event loop (a large
    /// binary must not hold up every other connection on this loop), then the call goes on here.
    private func attestOffLoop(_ streamID: HTTP2StreamID, _ message: [UInt8], _ peer: PeerCredentials) {
        guard let loop = context?.eventLoop, let method = calls[streamID]?.method else { return }
        let connection = NIOLoopBound(self, eventLoop: loop)
        let service = service
        calls[streamID]?.task = Task {
            let result: Result<Set<Selector>, any Error>
            do {
                result = .success(try await service.hashedSelectors(of: peer, method))
            } catch {
                result = .failure(error)
            }
            loop.execute {
                let connection = connection.value
                guard connection.calls[streamID]?.answered == false else { return }
                connection.calls[streamID]?.task = nil
                if connection.draining {
                    connection.answer(streamID, CallStatus(code: .unavailable, message: "the agent is shutting down"))
                } else {
                    do {
                        try connection.proceed(streamID, message, try result.get(), peer)
                    } catch {
                        connection.answer(streamID, CallStatus(error))
                    }
                }
                connection.flushIfNeeded()
                connection.closeIfDrained()
            }
        }
    }

    /// The request's one message. gRPC frames each message with a compression flag and a 32-bit length.
    static func singleMessage(_ request: ByteBuffer) throws(RPCError) -> [UInt8] {
        var request = request
        guard let flag = request.readInteger(as: UInt8.self), let length = request.readInteger(as: UInt32.self) else {
            throw RPCError(code: .internalError, message: "the request held no message; every Workload API method takes exactly one")
        }
        guard flag == 0 else {
            throw RPCError(code: .internalError, message: "the request's message is marked compressed, but no compression was negotiated")
        }
        guard let message = request.readBytes(length: Int(length)) else {
            throw RPCError(code: .internalError, message: "the request ended inside its message (\(length) bytes announced)")
        }
        guard request.readableBytes == 0 else {
            throw RPCError(code: .internalError, message: "the request held more than one message; every Workload API method takes exactly one")
        }
        return message
    }

    private func runUnary(_ streamID: HTTP2StreamID, _ call: Call, _ message: [UInt8], _ peer: PeerCredentials) {
        guard let loop = context?.eventLoop else { return }
        let connection = NIOLoopBound(self, eventLoop: loop)
        let service = service
        let selectors = call.selectors
        let method = call.method
        calls[streamID]?.task = Task {
            let result: Result<[UInt8], any Error>
            do {
                result = .success(try await service.unary(method, message, selectors: selectors, peer: peer))
            } catch {
                result = .failure(error)
            }
            loop.execute {
                let connection = connection.value
                guard connection.calls[streamID]?.answered == false else { return }
                switch result {
                case .success(let response):
                    connection.send(streamID, response)
                    connection.answer(streamID, .ok)
                case .failure(let error):
                    connection.answer(streamID, CallStatus(error))
                }
                connection.flushIfNeeded()
            }
        }
    }

    // MARK: streams

    /// The cache changed: every open stream sends its state if it differs from what it sent.
    private func refreshStreams() {
        for (streamID, call) in calls where call.method.streams && call.started && !call.answered {
            refresh(streamID)
        }
        flushIfNeeded()
    }

    private func refresh(_ streamID: HTTP2StreamID) {
        guard var call = calls[streamID], !call.answered, let peer else { return }
        guard peer.isUnchanged else { return retire() }
        if call.writing || unread >= limits.bufferedBytesPerConnection {
            // The last message is not out yet (a slow reader), or the connection holds all it may
            // of unread answers: send the state once they are out.
            call.stale = true
            calls[streamID] = call
            return
        }
        do {
            let message = try service.streamMessage(call.method, selectors: call.selectors, peer: peer)
            if message != call.sent { send(streamID, message, tracked: true) }
        } catch {
            answer(streamID, CallStatus(error))
        }
    }

    /// Ends the connection if its process exited or exec'd another program since it connected.
    private func checkProcess() {
        guard let peer, !peer.isUnchanged else { return }
        retire()
    }

    /// The process behind the connection is no longer the one that connected: every call is
    /// refused, and the connection closed (a new one is attested afresh).
    private func retire() {
        guard let context else { return }
        let status = CallStatus(
            code: .permissionDenied,
            message: "the process that connected exited or exec'd another program; connect again to be attested as what runs now"
        )
        service.logger.notice("Workload API connection closed: its process changed", metadata: ["caller": "\(peer.map { "\($0)" } ?? "?")"])
        for (streamID, call) in calls where !call.answered { answer(streamID, status) }
        watch?.cancel()
        watch = nil
        flushIfNeeded()
        context.close(promise: nil)
    }

    private func drain() {
        guard !draining else { return }
        draining = true
        subscription = nil
        write(HTTP2Frame(streamID: .rootStream, payload: .goAway(lastStreamID: lastStreamID, errorCode: .noError, opaqueData: nil)))
        for (streamID, call) in calls where !call.answered {
            if call.method.streams && call.started {
                answer(streamID, .ok)
            } else if call.task == nil {
                answer(streamID, CallStatus(code: .unavailable, message: "the agent is shutting down"))
            }
        }
        flushIfNeeded()
        closeIfDrained()
    }

    private func closeIfDrained() {
        guard draining, calls.values.allSatisfy(\.answered), let context else { return }
        flushIfNeeded()
        context.close(promise: nil)
    }

    // MARK: responses

    private static let responseHeaders = HPACKHeaders([(":status", "200"), ("content-type", "application/grpc")])

    /// Sends one message on a call, after the response headers if they have not gone yet.
    private func send(_ streamID: HTTP2StreamID, _ message: [UInt8], tracked: Bool = false) {
        guard var call = calls[streamID], !call.answered, let context else { return }
        if !call.started {
            write(HTTP2Frame(streamID: streamID, payload: .headers(.init(headers: Self.responseHeaders))))
            call.started = true
        }
        var buffer = context.channel.allocator.buffer(capacity: 5 + message.count)
        buffer.writeInteger(UInt8(0))
        buffer.writeInteger(UInt32(message.count))
        buffer.writeBytes(message)
        if tracked {
            call.sent = message
            call.writing = true
        }
        let size = buffer.readableBytes
        unread += size
        let connection = NIOLoopBound(self, eventLoop: context.eventLoop)
        let promise = context.eventLoop.makePromise(of: Void.self)
        promise.futureResult.whenComplete { _ in connection.value.written(streamID, size, tracked: tracked) }
        calls[streamID] = call
        write(HTTP2Frame(streamID: streamID, payload: .data(.init(data: .byteBuffer(buffer)))), promise: promise)
    }

    /// An answer left the agent: its stream may send again, and streams held back while the
    /// connection held too many unread bytes send their latest state.
    private func written(_ streamID: HTTP2StreamID, _ size: Int, tracked: Bool) {
        unread -= size
        if tracked, calls[streamID] != nil { calls[streamID]?.writing = false }
        guard unread < limits.bufferedBytesPerConnection else { return }
        var refreshed = false
        for (id, call) in calls where call.stale && !call.writing {
            calls[id]?.stale = false
            refresh(id)
            refreshed = true
        }
        if refreshed { flushIfNeeded() }
    }

    /// Bytes the connection holds: unread answers, and requests still arriving.
    private var buffered: Int {
        calls.values.reduce(unread) { $0 + ($1.requestEnded ? 0 : $1.request.readableBytes) }
    }

    /// Ends a call with its status: as trailers after a response, or trailers-only before one.
    ///
    /// - Parameter endsRequest: for a stream with no call record, whether the client has ended its side.
    private func answer(_ streamID: HTTP2StreamID, _ status: CallStatus, endsRequest: Bool = false) {
        let call = calls[streamID]
        guard call?.answered != true else { return }
        let started = call?.started ?? false
        var headers = started ? HPACKHeaders() : Self.responseHeaders
        headers.add(contentsOf: status.headers)
        end(streamID, headers, requestEnded: call?.requestEnded ?? endsRequest)
        calls[streamID]?.answered = true
        if let call, call.method.streams, started, let peer {
            service.logger.debug("stream ended", metadata: ["method": "\(call.method.rawValue)", "caller": "\(peer)"])
        }
    }

    /// A response that is not gRPC at all: the request was not a gRPC call.
    private func refuse(_ streamID: HTTP2StreamID, httpStatus: String, endsRequest: Bool) {
        end(streamID, HPACKHeaders([(":status", httpStatus)]), requestEnded: endsRequest)
    }

    /// The last HEADERS of a stream. Answered before its request ended, the client need send no
    /// more: RST_STREAM with NO_ERROR tells it so (RFC 9113 §8.1).
    private func end(_ streamID: HTTP2StreamID, _ headers: HPACKHeaders, requestEnded: Bool) {
        write(HTTP2Frame(streamID: streamID, payload: .headers(.init(headers: headers, endStream: true))))
        if !requestEnded { write(HTTP2Frame(streamID: streamID, payload: .rstStream(.noError))) }
    }

    private func giveBackWindow(_ bytes: Int) {
        consumed += bytes
        // In halves of the initial window, so that a sender never waits on it.
        if consumed >= 32 * 1024 {
            write(HTTP2Frame(streamID: .rootStream, payload: .windowUpdate(windowSizeIncrement: consumed)))
            consumed = 0
        }
    }

    private func write(_ frame: HTTP2Frame, promise: EventLoopPromise<Void>? = nil) {
        guard let context else {
            promise?.fail(ChannelError.ioOnClosedChannel)
            return
        }
        context.write(wrapOutboundOut(frame), promise: promise)
        needsFlush = true
    }

    private func flushIfNeeded() {
        guard needsFlush, let context else { return }
        needsFlush = false
        context.flush()
    }
}
