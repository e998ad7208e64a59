// One Workload API connection's HTTP/2 frames, answered without a channel or a task per stream:
// each call is a `WorkloadCall` value that decides what happens next, and this handler carries it
// out — it reads frames, writes answers, runs the off-loop work, and keeps the connection's own
// limits and timers. Confined to the connection's event loop.

import Foundation
import GRPCCore
import HallmarkAttestation
import HallmarkPeerCredentials
import Logging
import NIOCore
import NIOHPACK
import NIOHTTP2
import SPIFFEWorkloadAPI

final class WorkloadAPIConnection: ChannelInboundHandler {
    typealias InboundIn = HTTP2Frame
    typealias OutboundOut = HTTP2Frame

    private let service: WorkloadAPIService
    private let peer: PeerCredentials?
    private let limits: WorkloadAPILimits
    /// Set when the connection is over a limit: its first call is answered with this, then it closes.
    private let refusal: CallStatus?
    private var context: ChannelHandlerContext?
    private var calls: [HTTP2StreamID: WorkloadCall] = [:]
    /// Calls reset by their client while their work ran: each holds its place in the call limit
    /// until the work returns, so resetting calls cannot pile up work.
    private var orphans: Set<HTTP2StreamID> = []
    /// The calls' off-loop work, started with the first.
    private var work: ConnectionTasks?
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
        work?.cancel()
        work = nil
        calls = [:]
        orphans = []
    }

    /// The preface did not come in time, or a refused connection had its grace.
    private func deadlinePassed() {
        deadline = nil
        guard let context else { return }
        if refusal == nil {
            service.logger.debug("Workload API connection closed: no HTTP/2 preface", metadata: ["caller": "\(caller)", "after": "\(limits.prefaceTimeout) s"])
        }
        context.close(promise: nil)
    }

    private var caller: String { peer.map { "\($0)" } ?? "?" }

    /// Starts the idle clock when the connection holds no call.
    private func armIdleTimer() {
        guard calls.isEmpty, orphans.isEmpty, idleTimer == nil, refusal == nil, !draining, let context else { return }
        let connection = NIOLoopBound(self, eventLoop: context.eventLoop)
        idleTimer = context.eventLoop.scheduleTask(in: Self.timeAmount(limits.idleTimeout)) { connection.value.idleTimedOut() }
    }

    /// No call for the idle timeout: GOAWAY (NO_ERROR, so clients reconnect when they next need to) and close.
    private func idleTimedOut() {
        idleTimer = nil
        guard calls.isEmpty, orphans.isEmpty, let context else { return }
        service.logger.debug("Workload API connection closed: idle", metadata: ["caller": "\(caller)", "after": "\(limits.idleTimeout) s"])
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
                update(frame.streamID) { $0.requestComplete() }
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
            if let call = calls.removeValue(forKey: closed.streamID), call.isWorking {
                orphans.insert(closed.streamID)
            }
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

    /// Content types of a gRPC request (gRPC over HTTP/2: `application/grpc`, optionally `+proto`;
    /// the Workload API's messages are protobuf, so no other subtype).
    static let grpcContentTypes: Set<String> = ["application/grpc", "application/grpc+proto"]

    private func open(_ streamID: HTTP2StreamID, _ headers: HPACKHeaders, endStream: Bool) {
        lastStreamID = max(lastStreamID, streamID)
        guard !draining else {
            return write(HTTP2Frame(streamID: streamID, payload: .rstStream(.refusedStream)))
        }
        if let refusal {
            finish(streamID, refusal, trailersOnly: true, reset: !endStream)
            draining = true
            write(HTTP2Frame(streamID: .rootStream, payload: .goAway(lastStreamID: streamID, errorCode: .noError, opaqueData: nil)))
            flushIfNeeded()
            context?.close(promise: nil)
            return
        }
        let open = calls.count + orphans.count
        guard open < limits.streamsPerConnection else {
            return finish(streamID, CallStatus(
                code: .resourceExhausted,
                message: "this connection has \(open) calls open, the most one connection may (--workload-streams-per-connection); end some or open another connection"
            ), trailersOnly: true, reset: !endStream)
        }
        let held = buffered
        guard held < limits.bufferedBytesPerConnection else {
            return finish(streamID, Self.overBuffered(held), trailersOnly: true, reset: !endStream)
        }
        guard headers.first(name: ":method") == "POST" else {
            return refuse(streamID, httpStatus: "405", endsRequest: endStream)
        }
        guard let contentType = headers.first(name: "content-type"), Self.grpcContentTypes.contains(contentType) else {
            return refuse(streamID, httpStatus: "415", endsRequest: endStream)
        }
        let path = headers.first(name: ":path") ?? ""
        guard let method = WorkloadAPIService.Method(path: path) else {
            return finish(streamID, CallStatus(code: .unimplemented, message: "no method \(path) on the SPIFFE Workload API"), trailersOnly: true, reset: !endStream)
        }
        calls[streamID] = WorkloadCall(method: method, requestEnded: endStream)
        idleTimer?.cancel()
        idleTimer = nil
        if let encoding = headers.first(name: "grpc-encoding"), encoding != "identity" {
            update(streamID) { $0.failed(CallStatus(code: .unimplemented, message: "message compression \(encoding) is not supported; send messages uncompressed")) }
        } else {
            do {
                try service.checkSecurityHeader(headers[WorkloadAPI.securityHeaderKey], method)
            } catch {
                update(streamID) { $0.failed(CallStatus(error)) }
            }
        }
        if endStream { update(streamID) { $0.requestComplete() } }
    }

    private static func overBuffered(_ held: Int) -> CallStatus {
        CallStatus(
            code: .resourceExhausted,
            message: "this connection holds \(held) bytes its client has not read or not finished sending, the most one connection may (--workload-buffered-bytes); read the open streams first"
        )
    }

    private func received(_ streamID: HTTP2StreamID, _ bytes: inout ByteBuffer, endStream: Bool) {
        guard let call = calls[streamID] else { return }
        if case .receiving = call.state {
            let held = buffered
            if held + bytes.readableBytes > limits.bufferedBytesPerConnection {
                return update(streamID) { $0.failed(Self.overBuffered(held)) }
            }
        }
        update(streamID) { $0.received(&bytes, endStream: endStream) }
    }

    /// Bytes the connection holds: unread answers, and requests still arriving.
    private var buffered: Int {
        calls.values.reduce(unread) { $0 + $1.requestBytes }
    }

    // MARK: carrying out a call's actions

    /// Tells a call what happened and carries out what it decides.
    private func update(_ streamID: HTTP2StreamID, _ event: (inout WorkloadCall) -> WorkloadCall.Action) {
        guard calls[streamID] != nil else { return }
        let action = event(&calls[streamID]!)
        perform(action, on: streamID)
    }

    private func perform(_ action: WorkloadCall.Action, on streamID: HTTP2StreamID) {
        switch action {
        case .none:
            break
        case .attest:
            attest(streamID)
        case .run(let method, let request, let selectors):
            run(streamID, method, request, selectors)
        case .openStream(let method, let request):
            do {
                try service.checkStreamRequest(method, request)
                service.logger.debug("stream opened", metadata: ["method": "\(method.rawValue)", "caller": "\(caller)"])
                update(streamID) { $0.changed(connectionFull: unread >= limits.bufferedBytesPerConnection) }
            } catch {
                update(streamID) { $0.failed(CallStatus(error)) }
            }
        case .makeState(let method, let selectors):
            guard let peer else { return }
            guard peer.isUnchanged else { return retire() }
            do {
                let message = try service.streamMessage(method, selectors: selectors, peer: peer)
                update(streamID) { $0.state(message) }
            } catch {
                update(streamID) { $0.failed(CallStatus(error)) }
            }
        case .send(let message, let headersFirst):
            if headersFirst { write(HTTP2Frame(streamID: streamID, payload: .headers(.init(headers: Self.responseHeaders)))) }
            sendMessage(streamID, message, tracked: true)
        case .reply(let message):
            write(HTTP2Frame(streamID: streamID, payload: .headers(.init(headers: Self.responseHeaders))))
            sendMessage(streamID, message, tracked: false)
            finish(streamID, .ok, trailersOnly: false, reset: false)
        case .finish(let status, let trailersOnly, let reset):
            finish(streamID, status, trailersOnly: trailersOnly, reset: reset)
            if case .streaming(let method) = calls[streamID]?.method, !trailersOnly {
                service.logger.debug("stream ended", metadata: ["method": "\(method.rawValue)", "caller": "\(caller)"])
            }
        }
    }

    /// Attests the caller: from what is known when its executable has been hashed before, else
    /// hashing it off the event loop (a large binary must not hold up every other connection on
    /// this loop) and going on here.
    private func attest(_ streamID: HTTP2StreamID) {
        guard let peer else { return update(streamID) { $0.failed(CallStatus(PeerCredentials.unknownCallerError)) } }
        guard peer.isUnchanged else { return retire() }
        guard let method = calls[streamID]?.method else { return }
        do {
            if let selectors = try service.cachedSelectors(of: peer, method) {
                return update(streamID) { $0.attested(selectors) }
            }
        } catch {
            return update(streamID) { $0.failed(CallStatus(error)) }
        }
        let service = service
        start(streamID) {
            try await service.hashedSelectors(of: peer, method)
        } then: { call, result in
            switch result {
            case .success(let selectors): call.attested(selectors)
            case .failure(let error): call.failed(CallStatus(error))
            }
        }
    }

    private func run(_ streamID: HTTP2StreamID, _ method: WorkloadAPIService.UnaryMethod, _ request: [UInt8], _ selectors: Set<Selector>) {
        guard let peer else { return }
        let service = service
        start(streamID) {
            try await service.unary(method, request, selectors: selectors, peer: peer)
        } then: { call, result in
            call.returned(result)
        }
    }

    /// Runs `body` as a child task of the connection's work, and tells the call its result on the
    /// event loop (a call reset meanwhile only gives back its place).
    private func start<Value: Sendable>(
        _ streamID: HTTP2StreamID, _ body: @escaping @Sendable () async throws -> Value,
        then event: @escaping (inout WorkloadCall, Result<Value, any Error>) -> WorkloadCall.Action
    ) {
        guard let loop = context?.eventLoop else { return }
        let connection = NIOLoopBound(self, eventLoop: loop)
        let event = NIOLoopBound(event, eventLoop: loop)
        if work == nil { work = ConnectionTasks() }
        work?.run {
            let result: Result<Value, any Error>
            do {
                result = .success(try await body())
            } catch {
                result = .failure(error)
            }
            loop.execute {
                let connection = connection.value
                if connection.orphans.remove(streamID) != nil {
                    connection.armIdleTimer()
                } else {
                    connection.update(streamID) { event.value(&$0, result) }
                }
                connection.flushIfNeeded()
                connection.closeIfDrained()
            }
        }
    }

    // MARK: streams

    /// The cache changed: every open stream sends its state if it differs from what it sent.
    private func refreshStreams() {
        let full = unread >= limits.bufferedBytesPerConnection
        for streamID in calls.keys {
            update(streamID) { $0.changed(connectionFull: full) }
        }
        flushIfNeeded()
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
        service.logger.notice("Workload API connection closed: its process changed", metadata: ["caller": "\(caller)"])
        for streamID in calls.keys {
            update(streamID) { $0.failed(status) }
        }
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
        for streamID in calls.keys {
            update(streamID) { $0.drain() }
        }
        flushIfNeeded()
        closeIfDrained()
    }

    private func closeIfDrained() {
        guard draining, calls.values.allSatisfy(\.isAnswered), let context else { return }
        flushIfNeeded()
        context.close(promise: nil)
    }

    // MARK: frames out

    private static let responseHeaders = HPACKHeaders([(":status", "200"), ("content-type", "application/grpc")])

    /// One length-prefixed message. A stream's (`tracked`) tells the call when the client's socket took it.
    private func sendMessage(_ streamID: HTTP2StreamID, _ message: [UInt8], tracked: Bool) {
        guard let context else { return }
        var buffer = context.channel.allocator.buffer(capacity: 5 + message.count)
        buffer.writeInteger(UInt8(0))
        buffer.writeInteger(UInt32(message.count))
        buffer.writeBytes(message)
        let size = buffer.readableBytes
        unread += size
        let connection = NIOLoopBound(self, eventLoop: context.eventLoop)
        let promise = context.eventLoop.makePromise(of: Void.self)
        promise.futureResult.whenComplete { _ in connection.value.written(streamID, size, tracked: tracked) }
        write(HTTP2Frame(streamID: streamID, payload: .data(.init(data: .byteBuffer(buffer)))), promise: promise)
    }

    /// An answer left the agent: its stream may send again, and streams held back while the
    /// connection held too many unread bytes send their latest state.
    private func written(_ streamID: HTTP2StreamID, _ size: Int, tracked: Bool) {
        unread -= size
        if tracked { calls[streamID]?.written() }
        guard unread < limits.bufferedBytesPerConnection else { return }
        var refreshed = false
        for (id, call) in calls where call.isStale {
            update(id) { $0.changed(connectionFull: false) }
            refreshed = true
        }
        if refreshed { flushIfNeeded() }
    }

    /// Ends a call with its status: as trailers after a response, or trailers-only before one.
    private func finish(_ streamID: HTTP2StreamID, _ status: CallStatus, trailersOnly: Bool, reset: Bool) {
        var headers = trailersOnly ? Self.responseHeaders : HPACKHeaders()
        headers.add(contentsOf: status.headers)
        end(streamID, headers, reset: reset)
    }

    /// A response that is not gRPC at all: the request was not a gRPC call.
    private func refuse(_ streamID: HTTP2StreamID, httpStatus: String, endsRequest: Bool) {
        end(streamID, HPACKHeaders([(":status", httpStatus)]), reset: !endsRequest)
    }

    /// The last HEADERS of a stream. Answered before its request ended, the client need send no
    /// more: RST_STREAM with NO_ERROR tells it so (RFC 9113 §8.1).
    private func end(_ streamID: HTTP2StreamID, _ headers: HPACKHeaders, reset: Bool) {
        write(HTTP2Frame(streamID: streamID, payload: .headers(.init(headers: headers, endStream: true))))
        if reset { write(HTTP2Frame(streamID: streamID, payload: .rstStream(.noError))) }
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

/// The off-loop work of one connection's calls (hashing a caller's executable, a unary method's
/// answer), run as child tasks of one task group that lives as long as the connection: closing the
/// connection cancels what still runs, and no call's work outlives it.
final class ConnectionTasks: Sendable {
    private let jobs: AsyncStream<@Sendable () async -> Void>.Continuation
    private let group: Task<Void, Never>

    init() {
        let (stream, jobs) = AsyncStream.makeStream(of: (@Sendable () async -> Void).self)
        self.jobs = jobs
        group = Task {
            await withDiscardingTaskGroup { group in
                for await job in stream {
                    group.addTask { await job() }
                }
            }
        }
    }

    func run(_ job: @escaping @Sendable () async -> Void) {
        jobs.yield(job)
    }

    /// Cancels the work still running and takes no more.
    func cancel() {
        jobs.finish()
        group.cancel()
    }
}
