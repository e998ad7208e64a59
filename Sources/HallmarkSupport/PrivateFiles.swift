// Secrets on disk (the agent's key, the CA keys, keys written by `x509 mint --write` and
// `svid fetch --write`) and the directories and sockets around them, made so that no other local
// user can read a secret even for a moment, or swap a file or socket for a link of their own.
//
// A file is written to a new name in its own directory, opened with O_CREAT|O_EXCL|O_NOFOLLOW and
// its final mode from the first instant, synced, then renamed over the old one (rename replaces a
// link rather than following it). Directories holding secrets are 0700 and the process's own.

public import Foundation

/// A refusal to write or use a file, directory or socket: a stable code, and a message naming
/// the path and the rule.
///
/// Match on ``code``; read ``message`` for the cause. New codes may be added, so a `switch` over
/// codes needs a `default`.
public struct PrivateFileError: Error, Hashable, Sendable, CustomStringConvertible {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        fileprivate enum Base: String, Hashable, Sendable {
            case io, notDirectory, wrongOwner, symbolicLink, notSocket, replaced
        }

        fileprivate let base: Base
        fileprivate init(_ base: Base) { self.base = base }

        public var description: String { base.rawValue }

        /// A system call on the path failed (the message carries its reason).
        public static let io = Code(.io)
        /// A directory was expected.
        public static let notDirectory = Code(.notDirectory)
        /// The path belongs to another user, or others may write to it.
        public static let wrongOwner = Code(.wrongOwner)
        /// A symbolic link where the real directory is required.
        public static let symbolicLink = Code(.symbolicLink)
        /// Something other than a socket is in the socket's place.
        public static let notSocket = Code(.notSocket)
        /// The socket was replaced by another process's.
        public static let replaced = Code(.replaced)
    }

    public let code: Code
    /// A sentence naming the cause and the path.
    public let message: String
    /// The error this one came from, described, when another error caused it.
    public let underlying: String?

    public init(_ code: Code, _ message: String, underlying: (any Error)? = nil) {
        self.code = code
        self.message = message
        self.underlying = underlying.map { "\($0)" }
    }

    public var description: String { message }
}

public enum PrivateFiles {
    /// Writes `bytes` to `path` with `mode`, atomically: readers see the old file or the new one,
    /// never a partial one, and the new file never exists with a wider mode.
    public static func write(_ bytes: [UInt8], to path: String, mode: mode_t = 0o600) throws {
        let directory = (path as NSString).deletingLastPathComponent
        let name = (path as NSString).lastPathComponent
        let temporary = (directory.isEmpty ? "." : directory) + "/.\(name).\(UInt64.random(in: 0...UInt64.max)).tmp"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode)
        guard fd >= 0 else { throw PrivateFileError(.io, "cannot create \(temporary): \(String(cString: strerror(errno)))") }
        var renamed = false
        defer {
            close(fd)
            if !renamed { unlink(temporary) }
        }
        // The umask may have narrowed the mode; never widened it. Set exactly what was asked.
        guard fchmod(fd, mode) == 0 else { throw PrivateFileError(.io, "cannot set the mode of \(temporary): \(String(cString: strerror(errno)))") }
        var offset = 0
        while offset < bytes.count {
            let written = bytes[offset...].withUnsafeBytes { Foundation.write(fd, $0.baseAddress, $0.count) }
            if written < 0, errno == EINTR { continue }
            guard written > 0 else { throw PrivateFileError(.io, "cannot write \(temporary): \(String(cString: strerror(errno)))") }
            offset += written
        }
        guard fsync(fd) == 0 else { throw PrivateFileError(.io, "cannot sync \(temporary): \(String(cString: strerror(errno)))") }
        guard rename(temporary, path) == 0 else { throw PrivateFileError(.io, "cannot rename \(temporary) to \(path): \(String(cString: strerror(errno)))") }
        renamed = true
        let directoryFD = open(directory.isEmpty ? "." : directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if directoryFD >= 0 {
            fsync(directoryFD)
            close(directoryFD)
        }
    }

    public static func write(_ text: String, to path: String, mode: mode_t = 0o600) throws {
        try write(Array(text.utf8), to: path, mode: mode)
    }

    /// Creates `path` (mode 0700) if it does not exist; refuses one another user owns; tightens
    /// one that others may enter to 0700.
    public static func ensurePrivateDirectory(_ path: String) throws {
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        var info = stat()
        guard stat(path, &info) == 0, (info.st_mode & S_IFMT) == S_IFDIR else {
            throw PrivateFileError(.notDirectory, "\(path) is not a directory")
        }
        guard info.st_uid == geteuid() else {
            throw PrivateFileError(.wrongOwner, "\(path) is owned by uid \(info.st_uid), not this process's uid \(geteuid()); refusing to keep secrets there")
        }
        if info.st_mode & 0o077 != 0 {
            guard chmod(path, 0o700) == 0 else { throw PrivateFileError(.io, "cannot make \(path) 0700: \(String(cString: strerror(errno)))") }
        }
    }

    /// Creates a socket's directory (mode 0755) if it does not exist, and refuses one that is a
    /// link, that another user owns, or that others may write: each would let another user put
    /// a socket of their own in its place.
    public static func prepareSocketDirectory(for socketPath: String) throws {
        let directory = (socketPath as NSString).deletingLastPathComponent
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o755])
        var info = stat()
        guard lstat(directory, &info) == 0 else { throw PrivateFileError(.io, "cannot read the socket directory \(directory)") }
        guard (info.st_mode & S_IFMT) != S_IFLNK else {
            throw PrivateFileError(.symbolicLink, "the socket directory \(directory) is a symbolic link; give the real directory")
        }
        guard (info.st_mode & S_IFMT) == S_IFDIR else { throw PrivateFileError(.notDirectory, "the socket directory \(directory) is not a directory") }
        guard info.st_mode & 0o022 == 0, info.st_uid == geteuid() else {
            throw PrivateFileError(
                .wrongOwner,
                "the socket directory \(directory) (mode \(String(info.st_mode & 0o7777, radix: 8)), owner uid \(info.st_uid)) must be "
                    + "owned by this process's user and writable by no one else, or another user could replace the socket; use chmod 755"
            )
        }
        if lstat(socketPath, &info) == 0 {
            guard (info.st_mode & S_IFMT) == S_IFSOCK else { throw PrivateFileError(.notSocket, "\(socketPath) exists and is not a socket; refusing to replace it") }
            unlink(socketPath)
        }
    }

    /// Sets a bound socket's mode without following a link: the path must still be this
    /// process's socket.
    public static func setSocketMode(_ socketPath: String, _ mode: mode_t) throws {
        var info = stat()
        guard lstat(socketPath, &info) == 0, (info.st_mode & S_IFMT) == S_IFSOCK, info.st_uid == geteuid() else {
            throw PrivateFileError(.replaced, "\(socketPath) is no longer this process's socket")
        }
        guard fchmodat(AT_FDCWD, socketPath, mode, AT_SYMLINK_NOFOLLOW) == 0 else {
            throw PrivateFileError(.io, "cannot set the mode of \(socketPath): \(String(cString: strerror(errno)))")
        }
    }
}
