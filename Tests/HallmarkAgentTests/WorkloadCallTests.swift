// One Workload API call's state machine, event by event, with no channel: a unary call and a stream
// from request to status, a reader that lags behind changes, a call refused or reset before its
// request ends, malformed requests, and shutdown at every stage a call can be in.

import GRPCCore
@testable import HallmarkAgent
import HallmarkAttestation
import NIOCore
import Testing

@Suite("Workload API call state machine")
struct WorkloadCallTests {
    static let selectors: Set<Selector> = [try! Selector(type: "unix", value: "uid:1000")]

    /// A request's one message with gRPC's prefix: flag 0, 32-bit length.
    static func prefixed(_ message: [UInt8]) -> ByteBuffer {
        var buffer = ByteBuffer()
        buffer.writeInteger(UInt8(0))
        buffer.writeInteger(UInt32(message.count))
        buffer.writeBytes(message)
        return buffer
    }

    /// A call of `method` whose request (`message`) has arrived and ended.
    static func requested(_ method: WorkloadAPIService.Method, _ message: [UInt8] = [1, 2, 3]) -> WorkloadCall {
        var call = WorkloadCall(method: method)
        var request = prefixed(message)
        #expect(call.received(&request, endStream: true) == .attest)
        return call
    }

    /// A FetchX509SVID stream that has sent `first` and whose client took it.
    static func streaming(sent first: [UInt8]) -> WorkloadCall {
        var call = requested(.streaming(.fetchX509SVID))
        _ = call.attested(selectors)
        _ = call.changed(connectionFull: false)
        _ = call.state(first)
        call.written()
        return call
    }

    @Test("the method names: two unary, three streaming, nothing else on the path")
    func methods() {
        #expect(WorkloadAPIService.Method(path: "/SpiffeWorkloadAPI/FetchJWTSVID") == .unary(.fetchJWTSVID))
        #expect(WorkloadAPIService.Method(path: "/SpiffeWorkloadAPI/ValidateJWTSVID") == .unary(.validateJWTSVID))
        #expect(WorkloadAPIService.Method(path: "/SpiffeWorkloadAPI/FetchX509SVID") == .streaming(.fetchX509SVID))
        #expect(WorkloadAPIService.Method(path: "/SpiffeWorkloadAPI/FetchX509Bundles") == .streaming(.fetchX509Bundles))
        #expect(WorkloadAPIService.Method(path: "/SpiffeWorkloadAPI/FetchJWTBundles") == .streaming(.fetchJWTBundles))
        #expect(WorkloadAPIService.Method(path: "/SpiffeWorkloadAPI/fetchx509svid") == nil)
        #expect(WorkloadAPIService.Method(path: "/Other/FetchX509SVID") == nil)
        #expect(WorkloadAPIService.Method(path: "/SpiffeWorkloadAPI/") == nil)
    }

    @Test("a unary call: request in two pieces, attested, run, answered once; later events do nothing")
    func unary() {
        var call = WorkloadCall(method: .unary(.fetchJWTSVID))
        var whole = Self.prefixed([9, 8, 7])
        var first = whole.readSlice(length: 4)!
        #expect(call.received(&first, endStream: false) == .none)
        #expect(call.requestBytes == 4)
        #expect(call.received(&whole, endStream: true) == .attest)
        #expect(call.requestEnded && call.requestBytes == 0 && call.isWorking)
        #expect(call.attested(Self.selectors) == .run(.fetchJWTSVID, request: [9, 8, 7], selectors: Self.selectors))
        #expect(call.isWorking)
        #expect(call.changed(connectionFull: false) == .none, "a unary call follows no changes")
        #expect(call.returned(.success([4, 2])) == .reply([4, 2]))
        #expect(call.isAnswered && !call.isWorking)
        #expect(call.returned(.success([4, 2])) == .none)
        #expect(call.failed(CallStatus(code: .internalError, message: "late")) == .none)
    }

    @Test("a unary call whose work fails ends trailers-only with the error's status")
    func unaryFails() {
        var call = Self.requested(.unary(.fetchJWTSVID))
        _ = call.attested(Self.selectors)
        let error = RPCError(code: .unavailable, message: "the agent cannot reach the server")
        #expect(call.returned(.failure(error)) == .finish(CallStatus(code: .unavailable, message: "the agent cannot reach the server"), trailersOnly: true, reset: false))
    }

    @Test("a stream opens, sends its state with the response headers, and later only what changed")
    func stream() {
        var call = Self.requested(.streaming(.fetchX509Bundles), [])
        #expect(call.attested(Self.selectors) == .openStream(.fetchX509Bundles, request: []))
        #expect(!call.isStreaming)
        #expect(call.changed(connectionFull: false) == .makeState(.fetchX509Bundles, selectors: Self.selectors))
        #expect(call.state([1]) == .send([1], headersFirst: true))
        #expect(call.isStreaming)
        call.written()
        #expect(call.changed(connectionFull: false) == .makeState(.fetchX509Bundles, selectors: Self.selectors))
        #expect(call.state([1]) == .none, "an unchanged state was sent again")
        #expect(call.changed(connectionFull: false) == .makeState(.fetchX509Bundles, selectors: Self.selectors))
        #expect(call.state([2]) == .send([2], headersFirst: false))
        // The caller lost its identity: the stream ends with trailers after what it sent.
        #expect(call.failed(CallStatus(code: .permissionDenied, message: "no identity issued"))
            == .finish(CallStatus(code: .permissionDenied, message: "no identity issued"), trailersOnly: false, reset: false))
    }

    @Test("a lagging reader: changes while a message is being written make one send of the latest state, after it is taken")
    func laggingReader() {
        var call = Self.requested(.streaming(.fetchX509SVID))
        _ = call.attested(Self.selectors)
        _ = call.changed(connectionFull: false)
        #expect(call.state([1]) == .send([1], headersFirst: true))
        // Not taken yet: two changes mark the stream stale and send nothing.
        #expect(call.changed(connectionFull: false) == .none)
        #expect(call.changed(connectionFull: false) == .none)
        #expect(!call.isStale, "stale while still writing: the connection would refresh it too early")
        call.written()
        #expect(call.isStale)
        #expect(call.changed(connectionFull: false) == .makeState(.fetchX509SVID, selectors: Self.selectors))
        #expect(!call.isStale)
        #expect(call.state([3]) == .send([3], headersFirst: false))
    }

    @Test("a connection full of unread answers holds every stream back until it has room")
    func connectionFull() {
        var call = Self.streaming(sent: [1])
        #expect(call.changed(connectionFull: true) == .none)
        #expect(call.isStale)
        #expect(call.changed(connectionFull: false) == .makeState(.fetchX509SVID, selectors: Self.selectors))
        // A stream opened on a full connection waits too, and sends the headers with its first message.
        var fresh = Self.requested(.streaming(.fetchJWTBundles))
        _ = fresh.attested(Self.selectors)
        #expect(fresh.changed(connectionFull: true) == .none)
        #expect(fresh.changed(connectionFull: false) == .makeState(.fetchJWTBundles, selectors: Self.selectors))
        #expect(fresh.state([5]) == .send([5], headersFirst: true))
    }

    @Test("a call refused before its request ended is reset after its status; the rest of the request is ignored")
    func refusedEarly() {
        var call = WorkloadCall(method: .streaming(.fetchX509SVID))
        let status = CallStatus(code: .invalidArgument, message: "security header missing from request")
        #expect(call.failed(status) == .finish(status, trailersOnly: true, reset: true))
        var more = Self.prefixed([1])
        #expect(call.received(&more, endStream: true) == .none)
        #expect(call.requestEnded)
        // Refused with END_STREAM already on the headers: nothing to reset.
        var ended = WorkloadCall(method: .unary(.validateJWTSVID), requestEnded: true)
        #expect(ended.failed(status) == .finish(status, trailersOnly: true, reset: false))
    }

    @Test("a request over the size limit is refused at once, before it ends")
    func oversized() {
        var call = WorkloadCall(method: .unary(.fetchJWTSVID))
        var big = ByteBuffer(repeating: 0, count: WorkloadCall.maxRequestBytes)
        #expect(call.received(&big, endStream: false) == .none)
        var one = ByteBuffer(bytes: [0])
        #expect(call.received(&one, endStream: false) == .finish(
            CallStatus(code: .resourceExhausted, message: "the request is larger than \(WorkloadCall.maxRequestBytes) bytes"), trailersOnly: true, reset: true
        ))
    }

    @Test("requests that are not exactly one uncompressed message are refused, naming what is wrong", arguments: [
        ([UInt8](), "the request held no message; every Workload API method takes exactly one"),
        ([1, 0, 0, 0, 0], "the request's message is marked compressed, but no compression was negotiated"),
        ([0, 0, 0, 0, 4, 1], "the request ended inside its message (4 bytes announced)"),
        ([0, 0, 0, 0, 0, 0, 0, 0, 0, 0], "the request held more than one message; every Workload API method takes exactly one"),
    ])
    func malformed(request: [UInt8], message: String) {
        var call = WorkloadCall(method: .streaming(.fetchX509SVID))
        var bytes = ByteBuffer(bytes: request)
        #expect(call.received(&bytes, endStream: true) == .finish(CallStatus(code: .internalError, message: message), trailersOnly: true, reset: false))
    }

    @Test("shutdown: a sending stream ends OK, a call not yet working is refused, working calls finish first")
    func shutdown() {
        var stream = Self.streaming(sent: [1])
        #expect(stream.drain() == .finish(.ok, trailersOnly: false, reset: false))
        #expect(stream.isAnswered)

        var arriving = WorkloadCall(method: .unary(.fetchJWTSVID))
        #expect(arriving.drain() == .finish(.shuttingDown, trailersOnly: true, reset: true))

        var attesting = Self.requested(.streaming(.fetchX509SVID))
        #expect(attesting.drain() == .none)
        #expect(!attesting.isAnswered)
        #expect(attesting.attested(Self.selectors) == .finish(.shuttingDown, trailersOnly: true, reset: false), "a stream opened during shutdown")

        var running = Self.requested(.unary(.fetchJWTSVID))
        _ = running.attested(Self.selectors)
        #expect(running.drain() == .none)
        #expect(running.returned(.success([7])) == .reply([7]), "a unary answer under way was dropped at shutdown")

        var answered = Self.streaming(sent: [1])
        _ = answered.failed(CallStatus(code: .permissionDenied, message: "gone"))
        #expect(answered.drain() == .none)
    }

    @Test("a stream opened but held back on a full connection has sent nothing: shutdown refuses it trailers-only")
    func shutdownBeforeFirstMessage() {
        var call = Self.requested(.streaming(.fetchX509SVID))
        _ = call.attested(Self.selectors)
        _ = call.changed(connectionFull: true)
        #expect(call.drain() == .finish(.shuttingDown, trailersOnly: true, reset: false))
    }
}
