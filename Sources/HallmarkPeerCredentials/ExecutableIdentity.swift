// What a process runs, as the file behind /proc/PID/exe: device, inode, change and modification
// times, size. exec(2) keeps the pid and the start time, so a process could connect, hand its
// socket to a child and exec an allowed binary; recording this at accept and comparing it at
// every request and push tells that apart. And whether the process shares the agent's mount
// namespace: a path read from another namespace names a file the host may not have.

import Foundation
#if canImport(Glibc)
import Glibc
#endif

public struct ExecutableIdentity: Hashable, Sendable {
    public let device: UInt64
    public let inode: UInt64
    public let size: Int64
    public let changed: Int64
    public let changedNanoseconds: Int
    public let modified: Int64
    public let modifiedNanoseconds: Int

    init(_ info: stat) {
        device = UInt64(info.st_dev)
        inode = UInt64(info.st_ino)
        size = Int64(info.st_size)
        changed = Int64(info.st_ctim.tv_sec)
        changedNanoseconds = Int(info.st_ctim.tv_nsec)
        modified = Int64(info.st_mtim.tv_sec)
        modifiedNanoseconds = Int(info.st_mtim.tv_nsec)
    }

    /// The executable process `pid` runs now, or nil when it is gone or unreadable.
    public static func of(pid: Int32) -> ExecutableIdentity? {
        var info = stat()
        guard stat("/proc/\(pid)/exe", &info) == 0 else { return nil }
        return ExecutableIdentity(info)
    }

    /// The file open at `descriptor`.
    public static func of(descriptor: Int32) -> ExecutableIdentity? {
        var info = stat()
        guard fstat(descriptor, &info) == 0 else { return nil }
        return ExecutableIdentity(info)
    }
}

extension PeerCredentials {
    /// Whether process `pid` is in this process's mount namespace (nil: cannot tell).
    public static func sharesMountNamespace(_ pid: Int32) -> Bool? {
        var theirs = stat()
        var ours = stat()
        guard stat("/proc/\(pid)/ns/mnt", &theirs) == 0, stat("/proc/self/ns/mnt", &ours) == 0 else { return nil }
        return theirs.st_ino == ours.st_ino && theirs.st_dev == ours.st_dev
    }

    /// Whether the process that connected still runs, under its pid, the executable it ran when it
    /// connected (no exit, no pid reuse, no exec).
    public var isUnchanged: Bool {
        guard isSameProcessStillRunning else { return false }
        guard let executable else { return true }
        return ExecutableIdentity.of(pid: pid) == executable
    }
}
