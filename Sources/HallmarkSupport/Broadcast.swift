// Wakes every long-lived stream when something changes. Each subscriber gets a tick at once (to
// send its first state) and then one per burst of changes: a slow reader coalesces, it never falls
// behind. Streams end when their RPC is cancelled or the process shuts down.

public import GRPCCore
import Synchronization

public final class Broadcast: Sendable {
    /// A waiting stream, or a callback told `true` once, when the broadcast finishes.
    private enum Subscriber {
        case stream(AsyncStream<Void>.Continuation)
        case callback(@Sendable (_ finished: Bool) -> Void)

        func wake() {
            switch self {
            case .stream(let continuation): continuation.yield()
            case .callback(let body): body(false)
            }
        }

        func finish() {
            switch self {
            case .stream(let continuation): continuation.finish()
            case .callback(let body): body(true)
            }
        }
    }

    private struct State {
        var subscribers: [Int: Subscriber] = [:]
        var next = 0
        var finished = false
    }

    private let state = Mutex(State())

    public init() {}

    /// Something changed: wake every subscriber.
    public func notify() {
        // Woken outside the lock, as in finishAll: a callback may unsubscribe.
        for subscriber in state.withLock({ Array($0.subscribers.values) }) { subscriber.wake() }
    }

    /// Ends every subscription, now and from now on (graceful shutdown).
    public func finishAll() {
        let subscribers = state.withLock { state -> [Subscriber] in
            state.finished = true
            defer { state.subscribers = [:] }
            return Array(state.subscribers.values)
        }
        for subscriber in subscribers { subscriber.finish() }
    }

    /// Calls `body(false)` on every later change and `body(true)` once when the broadcast
    /// finishes; `body` runs on the notifying thread, so it should only hand the work on.
    ///
    /// - Returns: the subscription, for ``unsubscribe(_:)``; nil when already finished.
    public func subscribe(_ body: @escaping @Sendable (_ finished: Bool) -> Void) -> Int? {
        subscribe(.callback(body))
    }

    public func unsubscribe(_ subscription: Int) {
        state.withLock { _ = $0.subscribers.removeValue(forKey: subscription) }
    }

    private func subscribe(_ subscriber: Subscriber) -> Int? {
        state.withLock { state -> Int? in
            guard !state.finished else { return nil }
            state.next += 1
            state.subscribers[state.next] = subscriber
            return state.next
        }
    }

    public var subscriberCount: Int { state.withLock { $0.subscribers.count } }

    /// Runs `body` once now and once per later burst of changes, until the RPC is cancelled, the
    /// broadcast is finished, or `body` throws.
    public func forEachChange(_ body: () async throws -> Void) async throws {
        let (stream, continuation) = AsyncStream<Void>.makeStream(bufferingPolicy: .bufferingNewest(1))
        guard let id = subscribe(.stream(continuation)) else { return }
        defer { unsubscribe(id) }
        continuation.yield()
        try await withRPCCancellationHandler {
            for await _ in stream { try await body() }
        } onCancelRPC: {
            continuation.finish()
        }
    }
}
