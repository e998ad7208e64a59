// The agent's report of the authorities its workloads' SVIDs chain to: a refused report is sent
// again without waiting for another change, a change made while a report is in flight is sent
// after it (never beside it, where the two could land out of order), and an unchanged set is not
// sent twice. Driven by a real Broadcast; the pause between retries is recorded, not slept.

import Foundation
@testable import HallmarkAgent
import HallmarkSupport
import Synchronization
import Testing

@Suite("held-authority reporter", .timeLimit(.minutes(1)))
struct HeldReporterTests {
    struct Refused: Error {}

    /// A send the test controls: each call is announced on `calls` and waits for the test's answer.
    final class Server: Sendable {
        let calls: AsyncStream<Set<String>>
        private let callsContinuation: AsyncStream<Set<String>>.Continuation
        private let answers = Mutex<[CheckedContinuation<Bool, Never>]>([])
        let inFlight = Atomic<Int>(0)
        let mostInFlight = Atomic<Int>(0)

        init() { (calls, callsContinuation) = AsyncStream.makeStream() }

        func send(_ held: Set<String>) async throws {
            let now = inFlight.add(1, ordering: .sequentiallyConsistent).newValue
            mostInFlight.max(now, ordering: .sequentiallyConsistent)
            defer { inFlight.subtract(1, ordering: .sequentiallyConsistent) }
            let accepted = await withCheckedContinuation { continuation in
                answers.withLock { $0.append(continuation) }
                callsContinuation.yield(held)
            }
            if !accepted { throw Refused() }
        }

        /// Answers the oldest call waiting.
        func answer(_ accepted: Bool) {
            answers.withLock { $0.removeFirst() }.resume(returning: accepted)
        }
    }

    /// The reporter running against a controlled server, with the held set and the pauses it took.
    final class Harness: Sendable {
        let server = Server()
        let changes = Broadcast()
        private let heldSet: Mutex<Set<String>>
        let pauses = Mutex<[Duration]>([])
        private let task = Mutex<Task<Void, any Error>?>(nil)

        init(held: Set<String>) {
            heldSet = Mutex(held)
            let waiter = changes.waiter()!
            let reporter = HeldReporter(
                held: { [self] in self.heldSet.withLock { $0 } },
                send: { [server] in try await server.send($0) },
                pause: { [self] duration in self.pauses.withLock { $0.append(duration) } }
            )
            task.withLock { $0 = Task { try await reporter.run(changes: waiter) } }
        }

        /// The workloads now hold SVIDs from these authorities.
        func hold(_ held: Set<String>) {
            heldSet.withLock { $0 = held }
            changes.notify()
        }

        func stop() { task.withLock { $0?.cancel() } }
    }

    @Test("a refused report is sent again, with growing pauses, though nothing changed")
    func refusedIsRetried() async throws {
        let harness = Harness(held: ["old"])
        defer { harness.stop() }
        let server = harness.server
        var calls = server.calls.makeAsyncIterator()

        #expect(await calls.next() == ["old"])
        server.answer(true)
        harness.hold(["new"])
        #expect(await calls.next() == ["new"])
        server.answer(false)  // rate-limited, say
        #expect(await calls.next() == ["new"])
        server.answer(false)
        #expect(await calls.next() == ["new"])
        server.answer(true)
        #expect(harness.pauses.withLock { $0 } == [.milliseconds(500), .seconds(1)])
    }

    @Test("a change during a report is sent after it, one report at a time, and the last one sent is the latest set")
    func oneAtATimeInOrder() async throws {
        let harness = Harness(held: ["old"])
        defer { harness.stop() }
        let server = harness.server
        var calls = server.calls.makeAsyncIterator()

        #expect(await calls.next() == ["old"])
        // While that report is in flight, the workloads move to the new key in two steps.
        harness.hold(["old", "new"])
        // Gives a reporter that sent beside the report in flight the chance to do so (it cannot
        // make a correct one fail: that one is suspended in its send).
        for _ in 0..<1000 { await Task.yield() }
        #expect(server.mostInFlight.load(ordering: .sequentiallyConsistent) == 1)
        harness.hold(["new"])
        server.answer(true)
        #expect(await calls.next() == ["new"])
        server.answer(true)
        // An unchanged set is not sent again: the next call is the next real change.
        harness.changes.notify()
        harness.hold(["newer"])
        #expect(await calls.next() == ["newer"])
        server.answer(true)
        #expect(server.mostInFlight.load(ordering: .sequentiallyConsistent) == 1)
        #expect(harness.pauses.withLock { $0 }.isEmpty)
    }
}
