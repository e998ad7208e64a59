// Workload attestation on Unix: selectors from the kernel's credentials for the caller (never
// from anything it sends) and from its executable, guarded against pid reuse.

import Crypto
import Foundation
public import HallmarkAttestation
public import HallmarkPeerCredentials
import Synchronization

public final class UnixWorkloadAttestor: Sendable {
    private struct Digest { let size: Int; let modified: Date; let inode: UInt64; let hex: String }
    /// Executables' SHA-256 by path, reused while size, mtime and inode are unchanged.
    private let digests = Mutex<[String: Digest]>([:])

    public init() {}

    /// The caller's selectors: `unix:uid`, `unix:gid`, `unix:user`, `unix:group`, `unix:path`, `unix:sha256`.
    ///
    /// - Throws: ``AgentError`` when the process is gone or its pid now names another process.
    public func selectors(for peer: PeerCredentials) throws -> Set<Selector> {
        var selectors: Set<Selector> = [
            try Selector(type: "unix", value: "uid:\(peer.uid)"),
            try Selector(type: "unix", value: "gid:\(peer.gid)"),
        ]
        if let user = Self.userName(peer.uid) { selectors.insert(try Selector(type: "unix", value: "user:\(user)")) }
        if let group = Self.groupName(peer.gid) { selectors.insert(try Selector(type: "unix", value: "group:\(group)")) }
        if let path = Self.executablePath(peer.pid) {
            selectors.insert(try Selector(type: "unix", value: "path:\(path)"))
            // Hash what the process actually runs: /proc/PID/exe opens the mapped file even if it was replaced on disk.
            if let hex = digest(exe: "/proc/\(peer.pid)/exe", path: path) {
                selectors.insert(try Selector(type: "unix", value: "sha256:\(hex)"))
            }
        }
        // What was read about the pid is only about the caller if the caller still owns the pid.
        guard peer.isSameProcessStillRunning else {
            throw AgentError("workload: process \(peer.pid) exited or its pid was reused during attestation")
        }
        return selectors
    }

    private func digest(exe: String, path: String) -> String? {
        // stat(2) directly: this runs on every Workload API call.
        var info = stat()
        guard stat(exe, &info) == 0 else { return nil }
        let size = Int(info.st_size)
        let modified = Date(timeIntervalSince1970: TimeInterval(info.st_mtim.tv_sec) + TimeInterval(info.st_mtim.tv_nsec) / 1e9)
        let inode = UInt64(info.st_ino)
        if let cached = digests.withLock({ $0[path] }), cached.size == size, cached.modified == modified, cached.inode == inode {
            return cached.hex
        }
        guard let handle = FileHandle(forReadingAtPath: exe) else { return nil }
        defer { try? handle.close() }
        var hasher = SHA256()
        while let chunk = try? handle.read(upToCount: 1 << 20), !chunk.isEmpty { hasher.update(data: chunk) }
        let hex = hasher.finalize().map { String(format: "%02x", $0) }.joined()
        digests.withLock { $0[path] = Digest(size: size, modified: modified, inode: inode, hex: hex) }
        return hex
    }

    /// Where /proc/PID/exe points, by readlink(2); nil when unreadable or not UTF-8 (two such
    /// paths could otherwise yield the same selector).
    static func executablePath(_ pid: Int32) -> String? {
        withUnsafeTemporaryAllocation(of: CChar.self, capacity: Int(PATH_MAX) + 1) { buffer in
            let count = readlink("/proc/\(pid)/exe", buffer.baseAddress!, buffer.count)
            guard count > 0, count < buffer.count else { return nil }
            return UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(buffer)[..<count]).withMemoryRebound(to: UInt8.self) {
                String(validating: $0, as: UTF8.self)
            }
        }
    }

    static func userName(_ uid: UInt32) -> String? {
        var record = passwd()
        var result: UnsafeMutablePointer<passwd>?
        var buffer = [CChar](repeating: 0, count: 4096)
        guard getpwuid_r(uid, &record, &buffer, buffer.count, &result) == 0, result != nil else { return nil }
        return String(cString: record.pw_name)
    }

    static func groupName(_ gid: UInt32) -> String? {
        var record = group()
        var result: UnsafeMutablePointer<group>?
        var buffer = [CChar](repeating: 0, count: 4096)
        guard getgrgid_r(gid, &record, &buffer, buffer.count, &result) == 0, result != nil else { return nil }
        return String(cString: record.gr_name)
    }
}
