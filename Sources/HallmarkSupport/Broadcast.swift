// Wakes every long-lived stream when something changes. Each subscriber gets a tick at once (to
// send its first state) and then one per burst of changes: a slow reader coalesces, it never falls
// behind. Streams end when their RPC is cancelled or the process shuts down.

public import GRPCCore
import Synchronization

public final class Broadcast: Sendable {
    private struct State {
        var subscribers: [Int: AsyncStream<Void>.Continuation] = [:]
        var next = 0
        var finished = false
    }

    private let state = Mutex(State())

    public init() {}

    /// Something changed: wake every subscriber.
    public func notify() {
        state.withLock { for continuation in $0.subscribers.values { continuation.yield() } }
    }

    /// Ends every subscription, now and from now on (graceful shutdown).
    public func finishAll() {
        let continuations = state.withLock { state -> [AsyncStream<Void>.Continuation] in
            state.finished = true
            defer { state.subscribers = [:] }
            return Array(state.subscribers.values)
        }
        for continuation in continuations { continuation.finish() }
    }

    public var subscriberCount: Int { state.withLock { $0.subscribers.count } }

    /// Runs `body` once now and once per later burst of changes, until the RPC is cancelled, the
    /// broadcast is finished, or `body` throws.
    public func forEachChange(_ body: () async throws -> Void) async throws {
        let (stream, continuation) = AsyncStream<Void>.makeStream(bufferingPolicy: .bufferingNewest(1))
        let id = state.withLock { state -> Int? in
            guard !state.finished else { return nil }
            state.next += 1
            state.subscribers[state.next] = continuation
            return state.next
        }
        guard let id else { return }
        defer { state.withLock { _ = $0.subscribers.removeValue(forKey: id) } }
        continuation.yield()
        try await withRPCCancellationHandler {
            for await _ in stream { try await body() }
        } onCancelRPC: {
            continuation.finish()
        }
    }
}
