// The life of one Workload API call as a value: the connection tells it what happened (request
// bytes, the caller attested, a unary answer, a change to the cache, a message written, shutdown)
// and carries out the one action it returns. No I/O and no clock here, so every path of a call can
// be walked event by event in a test.
//
//   receiving ──request ends──▶ attesting ──attested──▶ running (unary) ──returned──▶ answered
//       │                           │                └─▶ streaming ──changed/written──▶ streaming
//       └────────── refused, reset, shut down: answered, from any state ─────────────────┘

import GRPCCore
import HallmarkAttestation
import NIOCore

struct WorkloadCall {
    enum State {
        /// The request headers are in; its message is arriving.
        case receiving(ByteBuffer)
        /// The request is in; the caller is being attested (its executable may be hashed off the loop).
        case attesting([UInt8])
        /// A unary method's answer is being made.
        case running(WorkloadAPIService.UnaryMethod)
        /// A stream that sends its state at once and again on every change.
        case streaming(Stream)
        /// The status is sent: nothing more is written.
        case answered
    }

    struct Stream {
        let method: WorkloadAPIService.StreamingMethod
        let selectors: Set<Selector>
        /// The last message sent (nil before the first: the response headers go with it).
        var sent: [UInt8]?
        /// The last message is still being written to the client.
        var writing = false
        /// A change came while the stream could not send: it sends its state once it can.
        var stale = false
    }

    enum Action: Equatable {
        case none
        /// Attest the caller, then tell the call ``attested(_:)`` (or ``failed(_:)``).
        case attest
        /// Make the unary method's answer to `request` off the event loop, then tell the call ``returned(_:)``.
        case run(WorkloadAPIService.UnaryMethod, request: [UInt8], selectors: Set<Selector>)
        /// Check the stream's request, then send its state (``changed(connectionFull:)``).
        case openStream(WorkloadAPIService.StreamingMethod, request: [UInt8])
        /// Make the stream's current state and tell the call ``state(_:)``.
        case makeState(WorkloadAPIService.StreamingMethod, selectors: Set<Selector>)
        /// Write one message; `headersFirst` when the response headers have not gone yet. The call
        /// is told ``written()`` when the client's socket has taken it.
        case send([UInt8], headersFirst: Bool)
        /// Write a unary answer: headers, the message, trailers with OK.
        case reply([UInt8])
        /// End the call with `status`: in one HEADERS frame when nothing was sent (trailers-only);
        /// followed by RST_STREAM(NO_ERROR) when the client has not finished sending (RFC 9113 §8.1).
        case finish(CallStatus, trailersOnly: Bool, reset: Bool)
    }

    /// The largest request, prefix included. Requests are an audience list or a JWT, far smaller;
    /// as it is below HTTP/2's initial stream window (65,535), an oversized request is answered
    /// before its sender could stall waiting for more window.
    static let maxRequestBytes = 32 * 1024

    let method: WorkloadAPIService.Method
    private(set) var state: State = .receiving(ByteBuffer())
    /// The client has ended its side (END_STREAM).
    private(set) var requestEnded = false
    /// The agent is shutting down: an attested call is refused rather than started.
    private var draining = false

    /// - Parameter requestEnded: the request's HEADERS ended it (END_STREAM): a refusal needs no RST_STREAM.
    init(method: WorkloadAPIService.Method, requestEnded: Bool = false) {
        self.method = method
        self.requestEnded = requestEnded
    }

    // MARK: what the connection asks

    var isAnswered: Bool {
        if case .answered = state { true } else { false }
    }

    /// Work off the event loop is under way; its result is still to come.
    var isWorking: Bool {
        switch state {
        case .attesting, .running: true
        case .receiving, .streaming, .answered: false
        }
    }

    /// Request bytes held while the request arrives.
    var requestBytes: Int {
        if case .receiving(let request) = state { request.readableBytes } else { 0 }
    }

    /// A stream waiting to send its state, and free to once the connection has room.
    var isStale: Bool {
        if case .streaming(let stream) = state { stream.stale && !stream.writing } else { false }
    }

    /// A stream that has sent its first message (ended with OK at shutdown).
    var isStreaming: Bool {
        if case .streaming(let stream) = state { stream.sent != nil } else { false }
    }

    // MARK: events

    /// Request bytes arrived; `endStream` when they are the last.
    mutating func received(_ bytes: inout ByteBuffer, endStream: Bool) -> Action {
        guard case .receiving(var request) = state else {
            // Answered before the request ended (refused): the rest is not read.
            if endStream { requestEnded = true }
            return .none
        }
        guard request.readableBytes + bytes.readableBytes <= Self.maxRequestBytes else {
            if endStream { requestEnded = true }
            return failed(CallStatus(code: .resourceExhausted, message: "the request is larger than \(Self.maxRequestBytes) bytes"))
        }
        // The state holds the only reference while it is written to: no copy.
        state = .answered
        request.writeBuffer(&bytes)
        state = .receiving(request)
        return endStream ? requestComplete() : .none
    }

    /// The client ended its side: the request is one length-prefixed message.
    mutating func requestComplete() -> Action {
        requestEnded = true
        guard case .receiving(let request) = state else { return .none }
        do {
            let message = try Self.singleMessage(request)
            state = .attesting(message)
            return .attest
        } catch {
            return failed(CallStatus(error))
        }
    }

    /// The caller is attested as `selectors`: a unary call runs, a stream opens.
    mutating func attested(_ selectors: Set<Selector>) -> Action {
        guard case .attesting(let request) = state else { return .none }
        if draining { return failed(.shuttingDown) }
        switch method {
        case .unary(let method):
            state = .running(method)
            return .run(method, request: request, selectors: selectors)
        case .streaming(let method):
            state = .streaming(Stream(method: method, selectors: selectors))
            return .openStream(method, request: request)
        }
    }

    /// A unary method's answer, serialized, or why there is none.
    mutating func returned(_ result: Result<[UInt8], any Error>) -> Action {
        guard case .running = state else { return .none }
        switch result {
        case .success(let answer):
            state = .answered
            return .reply(answer)
        case .failure(let error):
            return failed(CallStatus(error))
        }
    }

    /// The stream should send its state: it has just opened, or the cache changed.
    ///
    /// - Parameter connectionFull: the connection holds all it may of answers its client has not read.
    mutating func changed(connectionFull: Bool) -> Action {
        guard case .streaming(var stream) = state else { return .none }
        if stream.writing || connectionFull {
            // A slow reader: it gets the state current when it has read, not every state between.
            stream.stale = true
            state = .streaming(stream)
            return .none
        }
        stream.stale = false
        state = .streaming(stream)
        return .makeState(stream.method, selectors: stream.selectors)
    }

    /// The stream's current state, serialized: sent when it differs from what was sent last.
    mutating func state(_ message: [UInt8]) -> Action {
        guard case .streaming(var stream) = state, message != stream.sent else { return .none }
        let first = stream.sent == nil
        stream.sent = message
        stream.writing = true
        state = .streaming(stream)
        return .send(message, headersFirst: first)
    }

    /// The client's socket took the stream's last message.
    mutating func written() {
        guard case .streaming(var stream) = state else { return }
        stream.writing = false
        state = .streaming(stream)
    }

    /// The call ends with `status` (a refusal, an error, the process behind it gone).
    mutating func failed(_ status: CallStatus) -> Action {
        if case .answered = state { return .none }
        let trailersOnly = !isStreaming
        state = .answered
        return .finish(status, trailersOnly: trailersOnly, reset: !requestEnded)
    }

    /// The agent is shutting down: a stream ends with OK, a call not yet working is refused, and a
    /// call whose work is under way gets its answer when the work returns.
    mutating func drain() -> Action {
        draining = true
        switch state {
        case .streaming where isStreaming:
            state = .answered
            return .finish(.ok, trailersOnly: false, reset: !requestEnded)
        case .receiving, .streaming:
            return failed(.shuttingDown)
        case .attesting, .running, .answered:
            return .none
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
}

extension CallStatus {
    static let shuttingDown = CallStatus(code: .unavailable, message: "the agent is shutting down")
}
