// Tells when a process exits, through a pidfd (Linux 5.3 and later): one thread polls every
// watched process's pidfd, and a callback runs as each exits. On kernels without
// pidfd_open there is no watcher (`shared` is nil) and callers fall back to polling.

import CHallmarkLinux
import Foundation
import Synchronization

public final class ProcessExits: Sendable {
    /// The process-wide watcher, or nil when this kernel has no pidfd_open.
    public static let shared: ProcessExits? = ProcessExits()

    /// One watched process; ``cancel()`` stops watching (a callback not yet run then never runs).
    public final class Watch: Sendable {
        fileprivate let descriptor: Int32
        private let owner: ProcessExits

        fileprivate init(descriptor: Int32, owner: ProcessExits) {
            self.descriptor = descriptor
            self.owner = owner
        }

        public func cancel() {
            owner.remove(descriptor)
        }
    }

    /// Wakes the watcher's thread when the set of watched processes changes: [read end, write end].
    private let wake: [Int32]
    private let callbacks = Mutex<[Int32: @Sendable () -> Void]>([:])

    private init?() {
        // Probe: a pidfd for this very process.
        let probe = Self.open(getpid())
        guard probe >= 0 else { return nil }
        close(probe)
        var ends: [Int32] = [0, 0]
        guard pipe(&ends) == 0 else { return nil }
        for end in ends {
            _ = fcntl(end, F_SETFD, FD_CLOEXEC)
            _ = fcntl(end, F_SETFL, fcntl(end, F_GETFL) | O_NONBLOCK)
        }
        wake = ends
        let thread = Thread { [self] in run() }
        thread.name = "hallmark.process-exits"
        thread.start()
    }

    private static func open(_ pid: Int32) -> Int32 {
        hallmark_pidfd_open(pid)
    }

    /// Calls `onExit` (on the watcher's thread) once process `pid` exits, provided it is still the
    /// process that started at `startTime` (a pid reused meanwhile names another process).
    /// - Returns: nil when the process is already gone or is not that one: the caller should act at once.
    public func watch(pid: Int32, startTime: UInt64?, _ onExit: @escaping @Sendable () -> Void) -> Watch? {
        let descriptor = Self.open(pid)
        guard descriptor >= 0 else { return nil }
        // The pidfd holds the process it was opened on; if that one started when the caller says,
        // it is the caller's process, even if the pid is reused later.
        guard let startTime, PeerCredentials.startTime(of: pid) == startTime else {
            close(descriptor)
            return nil
        }
        callbacks.withLock { $0[descriptor] = onExit }
        poke()
        return Watch(descriptor: descriptor, owner: self)
    }

    private func remove(_ descriptor: Int32) {
        // Only the first of cancel() and the exit closes the descriptor.
        guard callbacks.withLock({ $0.removeValue(forKey: descriptor) }) != nil else { return }
        close(descriptor)
        poke()
    }

    private func poke() {
        var byte: UInt8 = 1
        _ = write(wake[1], &byte, 1)
    }

    /// Processes watched now.
    public var watching: Int { callbacks.withLock { $0.count } }

    private func run() {
        var drain = [UInt8](repeating: 0, count: 256)
        while true {
            // The watched set is read under the lock; a descriptor closed after that is caught
            // below, where a callback is taken only if still registered.
            var fds = [pollfd(fd: wake[0], events: Int16(POLLIN), revents: 0)]
            fds += callbacks.withLock { $0.keys.map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) } }
            let count = poll(&fds, nfds_t(fds.count), -1)
            if count <= 0 { continue }
            if fds[0].revents != 0 { while read(wake[0], &drain, drain.count) > 0 {} }
            for entry in fds.dropFirst() where entry.revents != 0 {
                guard let callback = callbacks.withLock({ $0.removeValue(forKey: entry.fd) }) else { continue }
                close(entry.fd)
                callback()
            }
        }
    }
}
