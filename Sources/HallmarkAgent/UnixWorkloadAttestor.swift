// Workload attestation on Unix: selectors from the kernel's credentials for the caller (never
// from anything it sends) and from its executable, guarded against pid reuse.

import Crypto
public import Foundation
public import HallmarkAttestation
public import HallmarkPeerCredentials
import SPIFFE
import Synchronization

public final class UnixWorkloadAttestor: Sendable {
    /// Executables' SHA-256, by the identity of the file (device, inode, ctime, size, mtime): a
    /// file changed or replaced is a new key, whatever its path.
    private let digests = Mutex<[ExecutableIdentity: String]>([:])
    /// Digests kept at most: every new or touched file is a new key, so a user could otherwise
    /// grow the cache without end. Past it an eighth is dropped (hashed again when next needed).
    static let digestCapacity = 1024
    /// Where executables are hashed: one at a time, never on an event loop or the task pool, so
    /// that a large binary delays only the calls that wait for its digest.
    private let hashing: DispatchQueue

    public init(hashing: DispatchQueue = DispatchQueue(label: "hallmark.agent.executable-digest")) {
        self.hashing = hashing
    }

    /// The caller's selectors: `unix:uid`, `unix:gid`, `unix:user`, `unix:group`, `unix:path`
    /// (only for a process in the agent's mount namespace), `unix:sha256`.
    ///
    /// - Throws: ``AgentError`` when the process is gone, its pid names another process, or it runs
    ///   another executable than when it connected.
    public func selectors(for peer: PeerCredentials) throws -> Set<Selector> {
        try selectors(for: peer, hashing: true)!
    }

    /// The caller's selectors when its executable's digest is already known; nil when it would
    /// have to be hashed first (see ``hashedSelectors(for:)``).
    public func cachedSelectors(for peer: PeerCredentials) throws -> Set<Selector>? {
        try selectors(for: peer, hashing: false)
    }

    /// The caller's selectors, hashing its executable on the hashing queue if needed.
    public func hashedSelectors(for peer: PeerCredentials) async throws -> Set<Selector> {
        try await withCheckedThrowingContinuation { continuation in
            hashing.async { continuation.resume(with: Result { try self.selectors(for: peer) }) }
        }
    }

    private func selectors(for peer: PeerCredentials, hashing: Bool) throws -> Set<Selector>? {
        var selectors: Set<Selector> = [
            try Selector(type: "unix", value: "uid:\(peer.uid)"),
            try Selector(type: "unix", value: "gid:\(peer.gid)"),
        ]
        if let user = Self.userName(peer.uid) { selectors.insert(try Selector(type: "unix", value: "user:\(user)")) }
        if let group = Self.groupName(peer.gid) { selectors.insert(try Selector(type: "unix", value: "group:\(group)")) }
        // A path read from another mount namespace names a file the host may not have.
        if peer.sameMountNamespace, let path = Self.executablePath(peer.pid) {
            selectors.insert(try Selector(type: "unix", value: "path:\(path)"))
        }
        // Hash what the process actually runs: /proc/PID/exe opens the mapped file even if it was replaced on disk.
        switch digest(of: peer, hashing: hashing) {
        case .known(let hex):
            selectors.insert(try Selector(type: "unix", value: "sha256:\(hex)"))
        case .needsHashing:
            return nil
        case .unavailable:
            break
        }
        // What was read about the pid is only about the caller if the caller still owns the pid
        // and still runs what it ran when it connected.
        guard peer.isUnchanged else {
            throw AgentError(.callerChanged, "workload: process \(peer.pid) exited, its pid was reused, or it exec'd another program since it connected")
        }
        return selectors
    }

    /// SHA-256 of the executable, read through one opened descriptor whose identity keys the cache
    /// and must be the one recorded when the process connected.
    private enum Digest {
        case known(String)
        case needsHashing
        /// Not readable, or not the executable recorded at connect: no sha256 selector.
        case unavailable
    }

    private func digest(of peer: PeerCredentials, hashing: Bool) -> Digest {
        let descriptor = open("/proc/\(peer.pid)/exe", O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { return .unavailable }
        defer { close(descriptor) }
        guard let identity = ExecutableIdentity.of(descriptor: descriptor), peer.executable == nil || identity == peer.executable else { return .unavailable }
        if let cached = digests.withLock({ $0[identity] }) { return .known(cached) }
        guard hashing else { return .needsHashing }
        var hasher = SHA256()
        let chunk = 1 << 20
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: chunk, alignment: 16)
        defer { buffer.deallocate() }
        while true {
            let count = read(descriptor, buffer.baseAddress, chunk)
            if count < 0, errno == EINTR { continue }
            guard count >= 0 else { return .unavailable }
            if count == 0 { break }
            hasher.update(bufferPointer: UnsafeRawBufferPointer(rebasing: buffer[..<count]))
        }
        let hex = Hex.encode(hasher.finalize())
        digests.withLock { digests in
            if digests.count >= Self.digestCapacity {
                for key in digests.keys.prefix(Self.digestCapacity / 8) { digests[key] = nil }
            }
            digests[identity] = hex
        }
        return .known(hex)
    }

    /// Digests held now.
    var digestCount: Int { digests.withLock { $0.count } }

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
