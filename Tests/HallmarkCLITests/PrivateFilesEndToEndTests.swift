// Keys are never readable by others, not even for a moment, and the directories and sockets
// around them cannot be swapped by another local user. Real processes, a real second uid.

import Foundation
import HallmarkTestSupport
import Testing

@Suite("private files end to end", .serialized)
struct PrivateFilesEndToEndTests {
    static let other: UInt32 = 65534

    private func mode(_ path: String) throws -> Int {
        (try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? NSNumber)?.intValue ?? -1
    }

    @Test("another uid watching with inotify never reads a key that x509 mint --write saves, even with umask 0")
    func watchedSave() throws {
        let server = try TestServer()
        let scratch = try TemporaryDirectory("watched")
        chmod(scratch.url.path, 0o755)
        let out = scratch.path("out")
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        chmod(out, 0o755)
        let watcher = try KeyFileWatcher(directory: out, uid: Self.other, scratch: scratch)
        for index in 0..<25 {
            let minted = try Run.process("/bin/sh", [
                "-c", "umask 000; exec \"$0\" \"$@\"", Run.hallmarkBinary, "x509", "mint", "--spiffe-id", "spiffe://example.org/svc\(index)",
                "--write", out, "--admin-socket", server.adminSocket,
            ])
            #expect(minted.status == 0, "\(minted.stderr)")
        }
        let seen = try watcher.finish()
        #expect(seen.events >= 25, "the watcher saw the saves: \(seen.log)")
        #expect(seen.reads == 0, "another uid read a key: \(seen.log)")
        #expect(try mode("\(out)/svid.key") == 0o600 && mode("\(out)/svid.pem") == 0o644)
        #expect(try FileManager.default.contentsOfDirectory(atPath: out).sorted() == ["bundle.pem", "svid.key", "svid.pem"], "no temporary file is left")
    }

    @Test("a data directory another user owns is refused; one others may enter is tightened to 0700")
    func dataDirectories() throws {
        let server = try TestServer()
        let bundle = try server.dir.write("dirs-bundle.pem", try server.hallmark(["bundle", "show"]).stdout)
        let foreign = server.dir.path("foreign-data")
        try FileManager.default.createDirectory(atPath: foreign, withIntermediateDirectories: true)
        chown(foreign, Self.other, Self.other)
        let agent = try Run.process(Run.hallmarkBinary, [
            "agent", "run", "--data-dir", foreign, "--server", server.agentAddress, "--trust-bundle", bundle,
            "--socket", server.dir.path("foreign.sock"), "--join-token", try TestAgent.token(server),
        ], timeout: 60)
        #expect(agent.status != 0 && agent.stderr.contains("--data-dir: \(foreign) is owned by uid 65534"), "\(agent.stderr)")
        let serverRun = try Run.process(Run.hallmarkBinary, ["server", "run", "--data-dir", foreign, "--trust-domain", "example.org", "--listen", "127.0.0.1:0"], timeout: 60)
        #expect(serverRun.status != 0 && serverRun.stderr.contains("is owned by uid 65534"), "\(serverRun.stderr)")

        let loose = server.dir.path("loose-data")
        try FileManager.default.createDirectory(atPath: loose, withIntermediateDirectories: true)
        chmod(loose, 0o755)
        let tightened = try TestAgent(server: server, name: "loose", attestation: ["--join-token", try TestAgent.token(server)])
        _ = tightened
        let agentData = server.dir.path("loose-data")
        #expect(try mode(agentData) == 0o700, "the agent's data directory is 0700")
        #expect(try mode("\(agentData)/agent-svid.key") == 0o600)
        #expect(try mode(server.dataDir) == 0o700)
        let keys = try FileManager.default.subpathsOfDirectory(atPath: server.dataDir).filter { $0.hasSuffix(".key") }
        #expect(!keys.isEmpty)
        for key in keys { #expect(try mode("\(server.dataDir)/\(key)") == 0o600, "\(key)") }
    }

    @Test("a socket directory that is a symbolic link is refused, for the agent and for the admin socket")
    func socketDirectoryLinks() throws {
        let server = try TestServer()
        let bundle = try server.dir.write("links-bundle.pem", try server.hallmark(["bundle", "show"]).stdout)
        let real = server.dir.path("real-socket-dir")
        try FileManager.default.createDirectory(atPath: real, withIntermediateDirectories: true)
        chmod(real, 0o755)
        let link = server.dir.path("linked-socket-dir")
        try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: real)
        let agent = try Run.process(Run.hallmarkBinary, [
            "agent", "run", "--data-dir", server.dir.path("links-data"), "--server", server.agentAddress, "--trust-bundle", bundle,
            "--socket", link + "/api.sock", "--join-token", try TestAgent.token(server),
        ], timeout: 60)
        #expect(agent.status != 0 && agent.stderr.contains("the socket directory \(link) is a symbolic link"), "\(agent.stderr)")
        #expect(!FileManager.default.fileExists(atPath: real + "/api.sock"))

        let admin = try Run.process(Run.hallmarkBinary, [
            "server", "run", "--data-dir", server.dir.path("links-server"), "--trust-domain", "example.org", "--listen", "127.0.0.1:0",
            "--admin-socket", link + "/admin.sock",
        ], timeout: 60)
        #expect(admin.status != 0 && admin.stderr.contains("is a symbolic link"), "\(admin.stderr)")
        let open = server.dir.path("open-admin")
        try FileManager.default.createDirectory(atPath: open, withIntermediateDirectories: true)
        chmod(open, 0o777)
        let writable = try Run.process(Run.hallmarkBinary, [
            "server", "run", "--data-dir", server.dir.path("open-server"), "--trust-domain", "example.org", "--listen", "127.0.0.1:0",
            "--admin-socket", open + "/admin.sock",
        ], timeout: 60)
        #expect(writable.status != 0 && writable.stderr.contains("writable by no one else"), "\(writable.stderr)")
    }
}
