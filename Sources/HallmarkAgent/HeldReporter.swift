// The agent's report of which authorities its workloads' X509-SVIDs chain to, so that the server
// refuses to revoke a key still in use. One task per session sends it, one report at a time and
// always the latest set: two senders can land their reports out of order, and the server would
// then keep believing an old key is held after the workloads have moved on (and refuse its
// revocation for up to an SVID's life). A refused report is tried again on its own, with backoff.

import Foundation
import HallmarkSupport

struct HeldReporter: Sendable {
    /// The authorities the held workload SVIDs chain to now.
    var held: @Sendable () -> Set<String>
    /// Sends one report; returns once the server has accepted it.
    var send: @Sendable (Set<String>) async throws -> Void
    /// The first pause after a refused report; it doubles up to `maximumRetry`.
    var retry: Duration = .milliseconds(500)
    var maximumRetry: Duration = .seconds(5)
    var pause: @Sendable (Duration) async throws -> Void = { try await Task.sleep(for: $0) }

    /// Reports the held set now and after every change that alters it, until cancelled.
    /// - Parameter refused: told of each refused report and the pause before the next try.
    func run(changes: Broadcast.Waiter, refused: @Sendable (any Error, Duration) -> Void = { _, _ in }) async throws {
        var reported: Set<String>?
        var backoff = retry
        while true {
            try Task.checkCancellation()
            let current = held()
            if current != reported {
                do {
                    try await send(current)
                    reported = current
                    backoff = retry
                } catch is CancellationError {
                    throw CancellationError()
                } catch {
                    refused(error, backoff)
                    try await pause(backoff)
                    backoff = min(backoff * 2, maximumRetry)
                    continue
                }
            }
            await changes.wait(timeout: nil)
        }
    }
}
