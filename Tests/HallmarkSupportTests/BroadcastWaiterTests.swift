// A waiter on a broadcast misses no change: one that came before the wait ends it at once, one
// that comes during it wakes it, a finished broadcast gives no waiter, and cancelling ends a wait.

import HallmarkSupport
import Synchronization
import Testing

@Suite("broadcast waiter")
struct BroadcastWaiterTests {
    @Test("a change before the wait returns it at once; once seen, the next wait waits for the next change")
    func remembers() async throws {
        let broadcast = Broadcast()
        let waiter = try #require(broadcast.waiter())
        broadcast.notify()
        await waiter.wait(timeout: nil)
        let woken = Mutex(false)
        let waiting = Task {
            await waiter.wait(timeout: nil)
            woken.withLock { $0 = true }
        }
        // The change seen above does not end this wait; a new one does.
        for _ in 0..<100 { await Task.yield() }
        #expect(!woken.withLock { $0 }, "a change already seen ended a later wait")
        broadcast.notify()
        await waiting.value
        #expect(woken.withLock { $0 })
    }

    @Test("cancelling the task ends the wait; a finished broadcast gives no waiter")
    func cancelAndFinish() async throws {
        let broadcast = Broadcast()
        let waiter = try #require(broadcast.waiter())
        let waiting = Task { await waiter.wait(timeout: nil) }
        waiting.cancel()
        await waiting.value
        broadcast.finishAll()
        #expect(broadcast.waiter() == nil)
    }

    @Test("a waiter that goes away unsubscribes")
    func unsubscribes() throws {
        let broadcast = Broadcast()
        var waiter = broadcast.waiter()
        #expect(broadcast.subscriberCount == 1)
        #expect(waiter != nil)
        waiter = nil
        #expect(broadcast.subscriberCount == 0)
    }
}
