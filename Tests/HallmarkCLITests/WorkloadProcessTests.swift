// A workload cannot swap itself after connecting, and a path from another mount namespace is not
// believed. Real agent, real processes: a Python process that connects, forks, and execs an
// allowed binary while its child speaks on the inherited socket; `unshare --mount`.

import Foundation
import HallmarkTestSupport
import NIOCore
import NIOHPACK
import Testing

@Suite("workload processes", .serialized)
struct WorkloadProcessTests {
    /// Connects to the Workload API and waits for the agent's SETTINGS (so the agent has accepted
    /// the connection and recorded what the process runs), then forks; the parent execs `exe`
    /// (keeping its pid) unless `exe` is "-", while the child sends the call on the inherited
    /// socket and saves what comes back.
    static let swapper = #"""
    import os, socket, sys, time
    path, preface, request, out, exe = sys.argv[1:6]
    s = socket.socket(socket.AF_UNIX)
    s.connect(path)
    s.sendall(open(preface, "rb").read())
    s.settimeout(10)
    received = s.recv(65536)
    if os.fork() == 0:
        time.sleep(0.5)
        s.sendall(open(request, "rb").read())
        s.settimeout(3)
        data = received
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        except socket.timeout:
            pass
        open(out, "wb").write(data)
        os._exit(0)
    if exe == "-":
        time.sleep(5)
    else:
        os.execv(exe, [exe, "5"])
    """#

    /// An HTTP/2 connection preface with SETTINGS, and then one FetchX509SVID call, as bytes.
    static func fetchRequest() throws -> (preface: [UInt8], call: [UInt8]) {
        var encoder = HPACKEncoder(allocator: ByteBufferAllocator())
        var block = ByteBuffer()
        try encoder.encode(headers: HPACKHeaders([
            (":method", "POST"), (":scheme", "http"), (":path", "/SpiffeWorkloadAPI/FetchX509SVID"), (":authority", "localhost"),
            ("content-type", "application/grpc"), ("te", "trailers"), ("workload.spiffe.io", "true"),
        ]), to: &block)
        let headers = Array(block.readableBytesView)
        return (
            HostileInputTests.preface + HostileInputTests.frame(length: 0, type: 0x4),
            HostileInputTests.frame(length: headers.count, type: 0x1, flags: 0x4, stream: 1, payload: headers)
                + HostileInputTests.frame(length: 5, type: 0x0, flags: 0x1, stream: 1, payload: [0, 0, 0, 0, 0])
        )
    }

    @Test("a process that connects, hands its socket to a child and execs an allowed binary gets nothing for that binary")
    func execSwap() throws {
        let server = try TestServer()
        let agent = try TestAgent(server: server)
        let python = URL(fileURLWithPath: "/usr/bin/python3").resolvingSymlinksInPath().path
        try agent.register("/sleeper", selectors: ["unix:path:/usr/bin/sleep"])
        try agent.register("/python", selectors: ["unix:path:\(python)"])
        let bytes = try Self.fetchRequest()
        let preface = try server.dir.write("preface.bin", "")
        try Data(bytes.preface).write(to: URL(fileURLWithPath: preface))
        let request = try server.dir.write("request.bin", "")
        try Data(bytes.call).write(to: URL(fileURLWithPath: request))
        let script = try server.dir.write("swapper.py", Self.swapper)
        // The entries reach the agent's cache together; one a command can fetch shows they are there.
        try agent.register("/ready", selectors: ["unix:uid:0"])
        _ = try agent.waitForSVID("spiffe://example.org/ready")

        // Control: no exec; the child, speaking for the Python process that connected, is served.
        let honest = server.dir.path("honest.out")
        let control = try Run.process("/usr/bin/python3", [script, agent.socket, preface, request, honest, "-"], timeout: 30)
        #expect(control.status == 0, "\(control.stderr)")
        let served = try Data(contentsOf: URL(fileURLWithPath: honest))
        #expect(served.range(of: Data("spiffe://example.org/python".utf8)) != nil, "the harness speaks the protocol (\(served.count) bytes back)")

        // The attack: the process that connected becomes /usr/bin/sleep; its child asks.
        let swapped = server.dir.path("swapped.out")
        let attack = try Run.process("/usr/bin/python3", [script, agent.socket, preface, request, swapped, "/usr/bin/sleep"], timeout: 30)
        // Run.process returns once both processes are gone: the child holds the output pipes too.
        #expect(attack.status == 0, "\(attack.stderr)")
        let answer = try Data(contentsOf: URL(fileURLWithPath: swapped))
        #expect(answer.range(of: Data("spiffe://example.org/sleeper".utf8)) == nil, "the child received the sleeper's SVID")
        #expect(answer.range(of: Data("spiffe://example.org/python".utf8)) == nil, "nor the identity of what connected")
        #expect(agent.log.contains("Workload API connection closed: its process changed"), "\(agent.log.suffix(1500))")
    }

    @Test("a process in another mount namespace gets no unix:path selector")
    func otherMountNamespace() throws {
        let server = try TestServer()
        let agent = try TestAgent(server: server)
        try agent.register("/by-path", selectors: ["unix:path:\(Run.hallmarkBinary)"])
        try agent.register("/by-uid", selectors: ["unix:uid:0"])
        let host = try agent.waitForSVID("spiffe://example.org/by-path")
        #expect(host.stdout.contains("spiffe://example.org/by-uid"))
        let inside = try Run.process("/usr/bin/unshare", ["--mount", "--propagation", "private", Run.hallmarkBinary, "svid", "fetch", "--output", "json", "--socket", agent.socket])
        #expect(inside.status == 0, "\(inside.stderr)")
        #expect(inside.stdout.contains("spiffe://example.org/by-uid") && !inside.stdout.contains("spiffe://example.org/by-path"), "\(inside.stdout)")
    }
}
