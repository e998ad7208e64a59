// A Workload API connection ends the moment its process exits: the agent holds a pidfd for each
// connection's process (no waiting for the once-a-second check, which never runs here: the test
// event loop's clock does not move).

import Foundation
import GRPCCore
@testable import HallmarkAgent
import HallmarkPeerCredentials
import Logging
import NIOCore
import NIOEmbedded
import NIOHTTP2
import Synchronization
import Testing

@Suite("process exits", .serialized)
struct ProcessExitTests {
    static func sleeper() throws -> Process {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/sleep")
        process.arguments = ["60"]
        try process.run()
        return process
    }

    static func credentials(_ process: Process) -> PeerCredentials {
        let pid = process.processIdentifier
        var peer = PeerCredentials(pid: pid, uid: getuid(), gid: getgid(), startTime: PeerCredentials.startTime(of: pid))
        peer.executable = ExecutableIdentity.of(pid: pid)
        return peer
    }

    @Test("the watcher calls back when the process exits, refuses a pid whose start time differs, and forgets a cancelled watch")
    func watcher() async throws {
        let exits = try #require(ProcessExits.shared, "this kernel has no pidfd_open")
        let child = try Self.sleeper()
        let peer = Self.credentials(child)
        #expect(exits.watch(pid: peer.pid, startTime: (peer.startTime ?? 0) + 1) { } == nil, "a pid whose start time differs was watched")

        let exited = Mutex(false)
        let watch = try #require(exits.watch(pid: peer.pid, startTime: peer.startTime) { exited.withLock { $0 = true } })
        #expect(!exited.withLock { $0 })
        kill(peer.pid, SIGKILL)
        child.waitUntilExit()
        let deadline = Date().addingTimeInterval(10)
        while !exited.withLock({ $0 }) && Date() < deadline { try await Task.sleep(for: .milliseconds(10)) }
        #expect(exited.withLock { $0 }, "no callback after the process exited")
        watch.cancel()

        let other = try Self.sleeper()
        let before = exits.watching
        let cancelled = try #require(exits.watch(pid: other.processIdentifier, startTime: Self.credentials(other).startTime) { })
        #expect(exits.watching == before + 1)
        cancelled.cancel()
        #expect(exits.watching == before, "a cancelled watch is still registered")
        kill(other.processIdentifier, SIGKILL)
        other.waitUntilExit()
        #expect(exits.watch(pid: other.processIdentifier, startTime: Self.credentials(other).startTime) { } == nil, "a process already gone was watched")
    }

    @Test("a connection whose process exits has its open call refused and is closed, without the periodic check")
    func connectionEnds() async throws {
        let child = try Self.sleeper()
        let service = testWorkloadAPIService()
        let loop = NIOAsyncTestingEventLoop()
        let channel = NIOAsyncTestingChannel(loop: loop)
        try await loop.executeInContext {
            try channel.pipeline.syncOperations.addHandlers([
                NIOHTTP2Handler(mode: .server), WorkloadAPIConnection(service: service, peer: Self.credentials(child)),
            ])
        }
        try await channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1))
        var client = H2TestClient()
        // A call whose request is still open: nothing answers it until something ends it.
        try await channel.writeInbound(ByteBuffer(bytes: H2TestClient.preface + client.headers(1)))
        #expect(client.status(1) == nil)

        kill(child.processIdentifier, SIGKILL)
        child.waitUntilExit()
        let deadline = Date().addingTimeInterval(10)
        var open = true
        while open && Date() < deadline {
            try await Task.sleep(for: .milliseconds(10))
            await loop.run()
            open = try await loop.submit { channel.isActive }.get()
        }
        while let out = try await channel.readOutbound(as: IOData.self) {
            if case .byteBuffer(let bytes) = out { try client.receive(bytes) }
        }
        #expect(!open, "the connection stayed open after its process exited")
        let status = try #require(client.status(1), "the open call was not answered")
        #expect(status.code == String(RPCError.Code.permissionDenied.rawValue))
        #expect(status.message.contains("exited or exec'd"), "\(status.message)")
    }
}
