// Tells the agents' entry streams that something they may care about changed. Every subscriber
// gets a tick at once (to send its first state) and then one per burst of changes: a slow stream
// coalesces, it never falls behind.

import Synchronization

public final class EntryEvents: Sendable {
    private let subscribers = Mutex<[Int: AsyncStream<Void>.Continuation]>([:])
    private let nextID = Atomic<Int>(0)

    public init() {}

    /// Something changed: wake every stream.
    public func changed() {
        subscribers.withLock { for continuation in $0.values { continuation.yield() } }
    }

    /// A stream of ticks, the first one immediate.
    public func subscribe() -> AsyncStream<Void> {
        let id = nextID.add(1, ordering: .relaxed).newValue
        let (stream, continuation) = AsyncStream<Void>.makeStream(bufferingPolicy: .bufferingNewest(1))
        continuation.onTermination = { [weak self] _ in
            _ = self?.subscribers.withLock { $0.removeValue(forKey: id) }
        }
        subscribers.withLock { $0[id] = continuation }
        continuation.yield()
        return stream
    }
}
