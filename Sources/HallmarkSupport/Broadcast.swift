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

    /// A subscription to wait on: it remembers whether anything changed since it was last waited
    /// on, so that no change between two waits is missed.
    /// - Returns: nil when the broadcast has finished.
    public func waiter() -> Waiter? {
        let waiter = Waiter()
        guard let id = subscribe(.callback { [weak waiter] _ in waiter?.fire() }) else { return nil }
        waiter.cancelSubscription = { [weak self] in self?.unsubscribe(id) }
        return waiter
    }

    public final class Waiter: @unchecked Sendable {
        private struct State {
            var changed = false
            var continuation: CheckedContinuation<Void, Never>?
        }
        private let state = Mutex(State())
        // Set once, before the waiter is handed out.
        fileprivate var cancelSubscription: @Sendable () -> Void = {}

        deinit { cancelSubscription() }

        fileprivate func fire() {
            let continuation = state.withLock { state -> CheckedContinuation<Void, Never>? in
                state.changed = true
                defer { state.continuation = nil }
                return state.continuation
            }
            continuation?.resume()
        }

        /// Returns once something has changed since the last wait (at once if it already has), or
        /// when `timeout` has passed, or when the broadcast finishes or the task is cancelled.
        public func wait(timeout: Duration?) async {
            await withTaskGroup(of: Void.self) { group in
                group.addTask { await self.changed() }
                if let timeout { group.addTask { try? await Task.sleep(for: timeout) } }
                await group.next()
                group.cancelAll()
            }
            state.withLock { $0.changed = false }
        }

        private func changed() async {
            await withTaskCancellationHandler {
                await withCheckedContinuation { continuation in
                    // A cancellation that came before the continuation was stored found none to
                    // resume: checked again here, under the same lock.
                    let already = state.withLock { state -> Bool in
                        if state.changed || Task.isCancelled { return true }
                        state.continuation = continuation
                        return false
                    }
                    if already { continuation.resume() }
                }
            } onCancel: {
                let continuation = state.withLock { state -> CheckedContinuation<Void, Never>? in
                    defer { state.continuation = nil }
                    return state.continuation
                }
                continuation?.resume()
            }
        }
    }

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
