// A caller whose executable has not been hashed yet is attested off the event loop: while its
// executable is hashed, the loop keeps serving; the digest, once known, answers at once.

import Dispatch
import Foundation
import GRPCCore
@testable import HallmarkAgent
import HallmarkPeerCredentials
import Logging
import NIOCore
import NIOEmbedded
import NIOHPACK
import NIOHTTP2
import Testing

@Suite("Workload API executable digests")
struct WorkloadDigestTests {
    /// This test process, as the kernel would describe it to the agent.
    static func thisProcess() -> PeerCredentials {
        var peer = PeerCredentials(pid: getpid(), uid: getuid(), gid: getgid(), startTime: PeerCredentials.startTime(of: getpid()))
        peer.executable = ExecutableIdentity.of(pid: getpid())
        return peer
    }

    @Test("the first call of a new executable waits for its digest off the event loop; the next is answered at once")
    func hashedOffTheLoop() async throws {
        let hashing = DispatchQueue(label: "test.executable-digest")
        hashing.suspend()
        let attestor = UnixWorkloadAttestor(hashing: hashing)
        let service = testWorkloadAPIService(attestor: attestor)
        let loop = NIOAsyncTestingEventLoop()
        let channel = NIOAsyncTestingChannel(loop: loop)
        try await loop.executeInContext {
            try channel.pipeline.syncOperations.addHandlers([
                NIOHTTP2Handler(mode: .server), WorkloadAPIConnection(service: service, peer: Self.thisProcess()),
            ])
        }
        try await channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1))
        var client = H2TestClient()
        func read() async throws {
            while let out = try await channel.readOutbound(as: IOData.self) {
                if case .byteBuffer(let bytes) = out { try client.receive(bytes) }
            }
        }
        try await channel.writeInbound(ByteBuffer(bytes: H2TestClient.preface + client.call(1) + client.call(3)))

        // Both calls wait for the digest: the loop did not hash (it would have answered them).
        try await read()
        #expect(client.status(1) == nil && client.status(3) == nil, "a call was answered before its executable was hashed")
        #expect(attestor.digestCount == 0)

        hashing.resume()
        let deadline = Date().addingTimeInterval(30)
        while (client.status(1) == nil || client.status(3) == nil) && Date() < deadline {
            try await Task.sleep(for: .milliseconds(10))
            await loop.run()
            try await read()
        }
        // The agent holds no identity for this test: attested, then refused as having none.
        #expect(client.status(1)?.message == "no identity issued")
        #expect(client.status(3)?.message == "no identity issued")
        #expect(attestor.digestCount == 1)

        // Now the digest is known: with the hashing queue stopped, a new call is answered at once.
        hashing.suspend()
        defer { hashing.resume() }
        try await channel.writeInbound(ByteBuffer(bytes: client.call(5)))
        try await read()
        #expect(client.status(5)?.message == "no identity issued", "a known digest waited on the hashing queue")
    }
}
