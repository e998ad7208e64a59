// Writing secrets and placing sockets where no other user can read or replace them: each refusal
// carries its code and names the path, on real files, directories, links and sockets.

import Foundation
import HallmarkSupport
import HallmarkTestSupport
import Testing

@Suite("private files and socket directories")
struct PrivateFilesTests {
    static func mode(_ path: String) -> mode_t {
        var info = stat()
        _ = lstat(path, &info)
        return info.st_mode & 0o7777
    }

    /// A directory this process does not own: made and given away when running as root, else one of the system's.
    static func foreignDirectory(in dir: TemporaryDirectory) throws -> String {
        guard geteuid() == 0 else { return "/usr" }
        let path = dir.path("foreign")
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: false)
        #expect(chown(path, 65534, 65534) == 0)
        return path
    }

    @Test("a file is written whole with its mode, whatever the umask, replacing the old one and leaving no temporary file")
    func atomicWrite() throws {
        let dir = try TemporaryDirectory("private-files")
        let path = dir.path("key.pem")
        let old = umask(0)
        defer { umask(old) }
        try PrivateFiles.write("first", to: path, mode: 0o640)
        try PrivateFiles.write("second", to: path, mode: 0o600)
        #expect(try String(contentsOfFile: path, encoding: .utf8) == "second")
        #expect(Self.mode(path) == 0o600)
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.url.path) == ["key.pem"])

        let missing = #expect(throws: PrivateFileError.self) { try PrivateFiles.write("x", to: dir.path("no/such/dir/key.pem")) }
        #expect(missing?.code == .io)
        #expect(missing?.message.contains(dir.path("no/such/dir")) == true)
    }

    @Test("a private directory is made 0700, a looser one tightened; a file in its place or another user's directory is refused")
    func privateDirectory() throws {
        let dir = try TemporaryDirectory("private-files")
        let made = dir.path("data")
        try PrivateFiles.ensurePrivateDirectory(made)
        #expect(Self.mode(made) == 0o700)
        chmod(made, 0o755)
        try PrivateFiles.ensurePrivateDirectory(made)
        #expect(Self.mode(made) == 0o700)

        let file = try dir.write("file", "x")
        let notDirectory = #expect(throws: (any Error).self) { try PrivateFiles.ensurePrivateDirectory(file) }
        #expect(notDirectory != nil)

        let foreign = try Self.foreignDirectory(in: dir)
        let refused = #expect(throws: PrivateFileError.self) { try PrivateFiles.ensurePrivateDirectory(foreign) }
        #expect(refused?.code == .wrongOwner)
        #expect(refused?.message.contains(foreign) == true)
    }

    @Test("a socket's directory that is a link, writable by others, or another user's is refused; so is a file where the socket goes")
    func socketDirectory() throws {
        let dir = try TemporaryDirectory("private-files")
        let real = dir.path("run")
        try PrivateFiles.prepareSocketDirectory(for: real + "/agent.sock")
        #expect(Self.mode(real) == 0o755)

        let link = dir.path("link")
        try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: real)
        let linked = #expect(throws: PrivateFileError.self) { try PrivateFiles.prepareSocketDirectory(for: link + "/agent.sock") }
        #expect(linked?.code == .symbolicLink)

        let open = dir.path("open")
        try FileManager.default.createDirectory(atPath: open, withIntermediateDirectories: false)
        chmod(open, 0o777)
        let writable = #expect(throws: PrivateFileError.self) { try PrivateFiles.prepareSocketDirectory(for: open + "/agent.sock") }
        #expect(writable?.code == .wrongOwner)
        #expect(writable?.message.contains("mode 777") == true)

        let foreign = try Self.foreignDirectory(in: dir)
        let owned = #expect(throws: PrivateFileError.self) { try PrivateFiles.prepareSocketDirectory(for: foreign + "/agent.sock") }
        #expect(owned?.code == .wrongOwner)

        let notSocket = try dir.write("run/agent.sock", "not a socket")
        let occupied = #expect(throws: PrivateFileError.self) { try PrivateFiles.prepareSocketDirectory(for: notSocket) }
        #expect(occupied?.code == .notSocket)
        #expect(FileManager.default.fileExists(atPath: notSocket), "the file in the socket's place was removed")

        // A socket's mode is set only while the path is still a socket of this process.
        let replaced = #expect(throws: PrivateFileError.self) { try PrivateFiles.setSocketMode(notSocket, 0o660) }
        #expect(replaced?.code == .replaced)
    }

    @Test("an old socket in the way is removed, so that the new one can bind")
    func staleSocket() throws {
        let dir = try TemporaryDirectory("private-files")
        let path = dir.path("agent.sock")
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { buffer in
            for (index, byte) in path.utf8.enumerated() { buffer[index] = byte }
        }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        #expect(bound == 0)
        try PrivateFiles.setSocketMode(path, 0o660)
        #expect(Self.mode(path) == 0o660)
        try PrivateFiles.prepareSocketDirectory(for: path)
        #expect(!FileManager.default.fileExists(atPath: path))
    }
}
