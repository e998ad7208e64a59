// What the kernel says about a caller, and how it is kept honest: the start time read from
// /proc/PID/stat however odd the command name, credentials passed between transport and handler
// refused unless whole, and a process that exits told apart from one that still runs — on real
// child processes.

import Foundation
import GRPCCore
@testable import HallmarkPeerCredentials
import Synchronization
import Testing

@Suite("peer credentials")
struct PeerCredentialsTests {
    /// A /proc/PID/stat line for `name` whose 22nd field (starttime) is `start`.
    static func statLine(name: String, start: String) -> [UInt8] {
        let after = ["S", "1", "1", "1", "0", "-1", "4194560", "100", "0", "0", "0", "1", "2", "0", "0", "20", "0", "1", "0", start, "5000", "300"]
        return Array("4242 (\(name)) \(after.joined(separator: " "))\n".utf8)
    }

    @Test("the start time is field 22, counted after the last ')', whatever the command name holds", arguments: [
        "sh", "my app", "a) S 1 2 (b", ")", "((", "x y z 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20",
    ])
    func startTimeField(name: String) {
        #expect(PeerCredentials.startTime(statLine: Self.statLine(name: name, start: "987654321")) == 987_654_321)
    }

    @Test("a stat line that is not one gives no start time rather than a wrong one", arguments: [
        Array("4242 no-parenthesis S 1".utf8),
        Array("4242 (sh) S 1 1 1".utf8),
        statLine(name: "sh", start: "12a"),
        statLine(name: "sh", start: "99999999999999999999999"),
        statLine(name: "sh", start: ""),
    ])
    func malformedStatLine(line: [UInt8]) {
        #expect(PeerCredentials.startTime(statLine: line) == nil)
    }

    @Test("credentials travel from transport to handler whole, or the call is refused")
    func metadata() throws {
        let peer = PeerCredentials(pid: 42, uid: 1000, gid: 100, startTime: 123)
        var metadata = Metadata()
        metadata.addString(peer.headerValue, forKey: PeerCredentials.metadataKey)
        #expect(try PeerCredentials(metadata: metadata) == peer)
        // A second value (a client adding its own header) and malformed values are refused.
        var doubled = metadata
        doubled.addString("1,0,0,1", forKey: PeerCredentials.metadataKey)
        for bad in [doubled, Metadata(), ["x-hallmark-peer-credentials": "42,1000"], ["x-hallmark-peer-credentials": "a,b,c,d"]] as [Metadata] {
            let refused = #expect(throws: RPCError.self) { try PeerCredentials(metadata: bad) }
            #expect(refused?.code == .permissionDenied)
        }
    }

    @Test("a process that exits is no longer the one that connected; this one still is")
    func exitedProcess() throws {
        let own = getpid()
        var this = PeerCredentials(pid: own, uid: getuid(), gid: getgid(), startTime: PeerCredentials.startTime(of: own))
        this.executable = ExecutableIdentity.of(pid: own)
        #expect(this.isSameProcessStillRunning && this.isUnchanged)
        #expect(!PeerCredentials(pid: own, uid: 0, gid: 0, startTime: (this.startTime ?? 0) + 1).isSameProcessStillRunning, "pid reuse not told apart")
        #expect(!PeerCredentials(pid: own, uid: 0, gid: 0, startTime: nil).isSameProcessStillRunning)

        let child = Process()
        child.executableURL = URL(fileURLWithPath: "/bin/sleep")
        child.arguments = ["30"]
        try child.run()
        let peer = PeerCredentials(pid: child.processIdentifier, uid: getuid(), gid: getgid(), startTime: PeerCredentials.startTime(of: child.processIdentifier))
        #expect(peer.startTime != nil && peer.isSameProcessStillRunning)
        #expect(ExecutableIdentity.of(pid: child.processIdentifier) != this.executable, "two executables share an identity")
        kill(child.processIdentifier, SIGKILL)
        child.waitUntilExit()
        #expect(!peer.isSameProcessStillRunning)
        #expect(PeerCredentials.startTime(of: child.processIdentifier) == nil)
    }

    @Test("an exit is reported the moment it happens (pidfd), and a cancelled watch reports nothing")
    func exitWatch() async throws {
        let exits = try #require(ProcessExits.shared, "this kernel has no pidfds")
        func spawn() throws -> Process {
            let child = Process()
            child.executableURL = URL(fileURLWithPath: "/bin/sleep")
            child.arguments = ["30"]
            try child.run()
            return child
        }
        let watched = try spawn()
        let cancelled = try spawn()
        let reported = Mutex<[Int32]>([])
        let first = try #require(exits.watch(pid: watched.processIdentifier, startTime: PeerCredentials.startTime(of: watched.processIdentifier)) {
            reported.withLock { $0.append(watched.processIdentifier) }
        })
        let second = try #require(exits.watch(pid: cancelled.processIdentifier, startTime: PeerCredentials.startTime(of: cancelled.processIdentifier)) {
            reported.withLock { $0.append(cancelled.processIdentifier) }
        })
        second.cancel()
        defer { first.cancel() }
        #expect(reported.withLock { $0 }.isEmpty)

        kill(cancelled.processIdentifier, SIGKILL)
        cancelled.waitUntilExit()
        kill(watched.processIdentifier, SIGKILL)
        watched.waitUntilExit()
        let deadline = ContinuousClock.now + .seconds(10)
        while reported.withLock({ $0 }).isEmpty && ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(10)) }
        #expect(reported.withLock { $0 } == [watched.processIdentifier])

        // A process already gone when the watch begins is not watched.
        #expect(exits.watch(pid: watched.processIdentifier, startTime: 1) { reported.withLock { $0.append(-1) } } == nil)
    }
}
