// What X509Source and JWTSource share: a value kept up to date from one of the Workload API's
// streams, watched again with backoff whenever the stream ends, with every update handed to
// whoever listens and the first one awaitable with a deadline.

public import Foundation
import Synchronization

/// How long a source waits between reconnection attempts: doubling from `initial` up to `maximum`.
public struct WorkloadAPIBackoff: Sendable {
    public var initial: Duration
    public var maximum: Duration
    public init(initial: Duration = .milliseconds(200), maximum: Duration = .seconds(10)) {
        self.initial = initial
        self.maximum = maximum
    }
}

final class WatchedValue<Value: Sendable>: Sendable {
    private struct State {
        var value: Value?
        var listeners: [UUID: AsyncStream<Value>.Continuation] = [:]
        var task: Task<Void, Never>?
        var lastError: String?
        var updateCount = 0
        var closed = false
    }

    private let backoff: WorkloadAPIBackoff
    private let state = Mutex(State())

    init(backoff: WorkloadAPIBackoff) {
        self.backoff = backoff
    }

    /// Starts `watch` (once): it calls its argument with every value until the stream ends, and
    /// is called again, after a backoff, until ``close()``.
    func start(_ watch: @escaping @Sendable (_ publish: @escaping @Sendable (Value) -> Bool) async throws -> Void) {
        state.withLock { state in
            guard state.task == nil, !state.closed else { return }
            state.task = Task { [weak self, backoff] in
                var delay = backoff.initial
                while !Task.isCancelled {
                    guard let before = self?.state.withLock({ $0.updateCount }) else { return }
                    do {
                        try await watch { [weak self] value in
                            guard let self else { return false }
                            self.publish(value)
                            return !Task.isCancelled
                        }
                    } catch {
                        self?.state.withLock { $0.lastError = "\(error)" }
                    }
                    guard !Task.isCancelled, let after = self?.state.withLock({ $0.updateCount }) else { return }
                    // A stream that delivered something was healthy: start the backoff afresh.
                    if after > before { delay = backoff.initial }
                    try? await Task.sleep(for: delay)
                    delay = min(delay * 2, backoff.maximum)
                }
            }
        }
    }

    private func publish(_ value: Value) {
        let listeners = state.withLock { state in
            state.value = value
            state.updateCount += 1
            return Array(state.listeners.values)
        }
        for listener in listeners { listener.yield(value) }
    }

    /// Stops watching and ends every update stream.
    func close() {
        let (task, listeners) = state.withLock { state in
            state.closed = true
            defer {
                state.task = nil
                state.listeners = [:]
            }
            return (state.task, Array(state.listeners.values))
        }
        task?.cancel()
        for listener in listeners { listener.finish() }
    }

    var value: Value? { state.withLock { $0.value } }

    var lastError: String? { state.withLock { $0.lastError } }

    /// Every update from now on, starting with the current value when there is one.
    func updates() -> AsyncStream<Value> {
        let (stream, continuation) = AsyncStream<Value>.makeStream(bufferingPolicy: .bufferingNewest(8))
        let id = UUID()
        let current: Value? = state.withLock { state in
            guard !state.closed else {
                continuation.finish()
                return nil
            }
            state.listeners[id] = continuation
            return state.value
        }
        if let current { continuation.yield(current) }
        continuation.onTermination = { [weak self] _ in
            _ = self?.state.withLock { $0.listeners.removeValue(forKey: id) }
        }
        return stream
    }

    /// The first value, or `WorkloadAPIClientError` naming `what` after `timeout`.
    func first(timeout: Duration, what: String) async throws -> Value {
        if let value { return value }
        return try await withThrowingTaskGroup(of: Value?.self) { group in
            group.addTask {
                for await value in self.updates() { return value }
                return nil
            }
            group.addTask {
                try await Task.sleep(for: timeout)
                return nil
            }
            defer { group.cancelAll() }
            if let first = try await group.next(), let value = first { return value }
            let reason = self.lastError.map { " (last error: \($0))" } ?? ""
            throw WorkloadAPIClientError(.timeout, "workloadapi: no \(what) within \(timeout)\(reason)")
        }
    }
}
