// An X509Source holds a workload's current X509-SVIDs and bundles, kept up to date from the
// Workload API's stream; it reconnects with backoff when the agent goes away and yields every
// update to whoever is listening. It is also a bundle source for verifying peers.

public import Foundation
public import SPIFFE
import Synchronization

public final class X509Source: X509BundleSource, Sendable {
    /// How long to wait between reconnection attempts: doubling from `initial` up to `maximum`.
    public struct Backoff: Sendable {
        public var initial: Duration
        public var maximum: Duration
        public init(initial: Duration = .milliseconds(200), maximum: Duration = .seconds(10)) {
            self.initial = initial
            self.maximum = maximum
        }
    }

    private struct State {
        var context: X509Context?
        var listeners: [UUID: AsyncStream<X509Context>.Continuation] = [:]
        var task: Task<Void, Never>?
        var lastError: String?
        var updateCount = 0
        var closed = false
    }

    private let client: WorkloadAPIClient
    private let backoff: Backoff
    private let state = Mutex(State())

    public init(client: WorkloadAPIClient, backoff: Backoff = Backoff()) {
        self.client = client
        self.backoff = backoff
    }

    /// A source on `endpoint` (`unix:///path` or a path), or on `SPIFFE_ENDPOINT_SOCKET` when nil.
    public convenience init(endpoint: String? = nil, backoff: Backoff = Backoff()) throws {
        self.init(client: try endpoint.map(WorkloadAPIClient.init(endpoint:)) ?? WorkloadAPIClient.fromEnvironment(), backoff: backoff)
    }

    deinit { close() }

    /// Starts watching (once); updates arrive on ``updates()``.
    public func start() {
        state.withLock { state in
            guard state.task == nil, !state.closed else { return }
            state.task = Task { [weak self] in await self?.watch() }
        }
    }

    private func watch() async {
        var delay = backoff.initial
        while !Task.isCancelled {
            let before = state.withLock { $0.updateCount }
            do {
                try await client.watchX509Contexts { [weak self] context in
                    guard let self else { return false }
                    self.publish(context)
                    return !Task.isCancelled
                }
            } catch {
                state.withLock { $0.lastError = "\(error)" }
            }
            guard !Task.isCancelled else { return }
            // A stream that delivered something was healthy: start the backoff afresh.
            if state.withLock({ $0.updateCount }) > before { delay = backoff.initial }
            try? await Task.sleep(for: delay)
            delay = min(delay * 2, backoff.maximum)
        }
    }

    private func publish(_ context: X509Context) {
        let listeners = state.withLock { state in
            state.context = context
            state.updateCount += 1
            return Array(state.listeners.values)
        }
        for listener in listeners { listener.yield(context) }
    }

    /// Stops watching and ends every update stream.
    public func close() {
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

    /// The latest context, if one has arrived.
    public var context: X509Context? { state.withLock { $0.context } }

    /// The default SVID (the first), if any.
    public var svid: X509SVID? { context?.defaultSVID }

    /// The last error from the Workload API, while the source is reconnecting.
    public var lastError: String? { state.withLock { $0.lastError } }

    /// Every update from now on, starting with the current context when there is one.
    public func updates() -> AsyncStream<X509Context> {
        let (stream, continuation) = AsyncStream<X509Context>.makeStream(bufferingPolicy: .bufferingNewest(8))
        let id = UUID()
        let current: X509Context? = state.withLock { state in
            guard !state.closed else {
                continuation.finish()
                return nil
            }
            state.listeners[id] = continuation
            return state.context
        }
        if let current { continuation.yield(current) }
        continuation.onTermination = { [weak self] _ in
            _ = self?.state.withLock { $0.listeners.removeValue(forKey: id) }
        }
        return stream
    }

    /// Waits for the first context (starting the source if needed), or throws after `timeout`.
    public func waitForFirstUpdate(timeout: Duration) async throws -> X509Context {
        start()
        if let context { return context }
        return try await withThrowingTaskGroup(of: X509Context?.self) { group in
            group.addTask {
                for await context in self.updates() { return context }
                return nil
            }
            group.addTask {
                try await Task.sleep(for: timeout)
                return nil
            }
            defer { group.cancelAll() }
            if let first = try await group.next(), let context = first { return context }
            let reason = self.lastError.map { " (last error: \($0))" } ?? ""
            throw WorkloadAPIClientError("workloadapi: no X.509 context within \(timeout)\(reason)")
        }
    }

    public func x509Bundle(for trustDomain: TrustDomain) throws -> X509Bundle {
        guard let context else {
            throw SPIFFEError(.bundleNotFound, "x509source: no X.509 context has arrived yet, so no bundle for \(trustDomain)")
        }
        return try context.bundles.x509Bundle(for: trustDomain)
    }
}
