// What the agent reads about a caller from the kernel and /proc, checked against independent
// witnesses (cut, id, readlink, sha256sum) on real processes.

import Foundation
@testable import HallmarkAgent
import HallmarkAttestation
@testable import HallmarkPeerCredentials
import HallmarkTestSupport
import Testing

@Suite("workload attestation")
struct WorkloadAttestationTests {
    static func output(_ executable: String, _ arguments: [String]) throws -> String {
        let result = try Run.process(executable, arguments)
        #expect(result.status == 0, "\(executable) \(arguments): \(result.stderr)")
        return result.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// A /proc/PID/stat line: pid, (name), then fields 3 to 52, field N holding N (22, starttime, is `start`).
    static func statLine(name: String, start: String = "22") -> [UInt8] {
        let rest = (3...52).map { $0 == 22 ? start : $0 == 3 ? "S" : "\($0)" }
        return Array("4242 (\(name)) \(rest.joined(separator: " "))\n".utf8)
    }

    @Test("starttime is field 22 counted after the last ')', whatever the command name holds")
    func statParsing() {
        #expect(PeerCredentials.startTime(statLine: Self.statLine(name: "python3")) == 22)
        #expect(PeerCredentials.startTime(statLine: Self.statLine(name: "a) 1 2 3 (b")) == 22)
        #expect(PeerCredentials.startTime(statLine: Self.statLine(name: ") )) ", start: "18446744073709551615")) == UInt64.max)
        #expect(PeerCredentials.startTime(statLine: Self.statLine(name: "x", start: "18446744073709551616")) == nil, "overflow")
        #expect(PeerCredentials.startTime(statLine: Self.statLine(name: "x", start: "12a")) == nil)
        #expect(PeerCredentials.startTime(statLine: Array("4242 (x) S 1 2 3".utf8)) == nil, "cut short")
        #expect(PeerCredentials.startTime(statLine: Array("no parenthesis".utf8)) == nil)
    }

    @Test("a live process's start time matches /proc as cut reads it; once it has exited, the pid no longer vouches for it")
    func startTimeOfRealProcesses() throws {
        let own = ProcessInfo.processInfo.processIdentifier
        let witness = try Self.output("/usr/bin/cut", ["-d", " ", "-f", "22", "/proc/\(own)/stat"])
        #expect(PeerCredentials.startTime(of: own).map(String.init) == witness)

        let child = Process()
        child.executableURL = URL(fileURLWithPath: "/bin/sleep")
        child.arguments = ["30"]
        try child.run()
        let credentials = PeerCredentials(pid: child.processIdentifier, uid: getuid(), gid: getgid(), startTime: PeerCredentials.startTime(of: child.processIdentifier))
        #expect(credentials.startTime != nil)
        #expect(credentials.isSameProcessStillRunning)
        // SIGKILL: the test process may ignore SIGTERM, and a child inherits that.
        kill(child.processIdentifier, SIGKILL)
        child.waitUntilExit()
        #expect(!credentials.isSameProcessStillRunning)
        #expect(PeerCredentials.startTime(of: child.processIdentifier) == nil)
    }

    @Test("the caller's selectors: uid, gid, user and group names, executable path and its SHA-256, as the system's tools see them")
    func selectorsOfThisProcess() throws {
        let own = ProcessInfo.processInfo.processIdentifier
        let peer = PeerCredentials(pid: own, uid: getuid(), gid: getgid(), startTime: PeerCredentials.startTime(of: own))
        let selectors = try UnixWorkloadAttestor().selectors(for: peer)
        let path = try Self.output("/usr/bin/readlink", ["/proc/\(own)/exe"])
        let digest = try Self.output("/usr/bin/sha256sum", [path]).split(separator: " ").first.map(String.init) ?? ""
        let expected: Set<Selector> = [
            try Selector(type: "unix", value: "uid:\(getuid())"),
            try Selector(type: "unix", value: "gid:\(getgid())"),
            try Selector(type: "unix", value: "user:\(try Self.output("/usr/bin/id", ["-un"]))"),
            try Selector(type: "unix", value: "group:\(try Self.output("/usr/bin/id", ["-gn"]))"),
            try Selector(type: "unix", value: "path:\(path)"),
            try Selector(type: "unix", value: "sha256:\(digest)"),
        ]
        #expect(selectors == expected)
        // A second call (the digest now cached by size, mtime and inode) answers the same.
        #expect(try UnixWorkloadAttestor().selectors(for: peer) == expected)
    }

    @Test("a caller whose pid now names another process, or no process, is refused")
    func reusedPid() throws {
        let own = ProcessInfo.processInfo.processIdentifier
        let stale = PeerCredentials(pid: own, uid: getuid(), gid: getgid(), startTime: (PeerCredentials.startTime(of: own) ?? 0) + 1)
        let refused = #expect(throws: AgentError.self) { try UnixWorkloadAttestor().selectors(for: stale) }
        #expect(refused?.code == .callerChanged)
        #expect(UnixWorkloadAttestor.executablePath(Int32.max) == nil)
    }
}
