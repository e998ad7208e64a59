// The mtls-echo example with a real agent: two workloads under different uids authenticate each
// other with their SVIDs; a third is refused; the server's SVID rotates without a restart.

import Foundation
import HallmarkTestSupport
import Testing

@Suite("mtls-echo end to end", .serialized)
struct MTLSEchoEndToEndTests {
    static var binary: String { (Run.hallmarkBinary as NSString).deletingLastPathComponent + "/mtls-echo" }

    /// Starts `mtls-echo serve` as root; returns the process and its HOST:PORT.
    static func serve(_ agent: TestAgent, allow: [String]) throws -> (Process, String) {
        let log = agent.server.dir.path("echo-server.log")
        FileManager.default.createFile(atPath: log, contents: nil)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = ["serve", "--socket", agent.socket] + allow.flatMap { ["--allow", $0] }
        let handle = FileHandle(forWritingAtPath: log)!
        process.standardOutput = handle
        process.standardError = handle
        try process.run()
        try waitFor("mtls-echo listening on", in: log, while: process)
        let text = try String(contentsOfFile: log, encoding: .utf8)
        let range = try #require(text.range(of: #"127\.0\.0\.1:[0-9]+"#, options: .regularExpression))
        return (process, String(text[range]))
    }

    static func call(_ agent: TestAgent, _ address: String, uid: UInt32, gid: UInt32, extra: [String] = []) throws -> ProcessResult {
        try Run.process("/usr/bin/setpriv", [
            "--reuid=\(uid)", "--regid=\(gid)", "--clear-groups", "--", binary, "call", "--socket", agent.socket, "--server", address,
            "--expect", "spiffe://example.org/echo-server", "--message", "ping",
        ] + extra)
    }

    static func serial(_ reply: String) -> String? {
        reply.range(of: #"serial [0-9a-f:]+"#, options: .regularExpression).map { String(reply[$0]) }
    }

    @Test("uid 65534 calls the root service over mTLS; strangers are refused; rotation keeps old connections and changes new ones")
    func echo() throws {
        let server = try TestServer()
        let agent = try TestAgent(server: server)
        try agent.register("/echo-server", selectors: ["unix:uid:0"], extra: ["--x509-ttl", "6"])
        try agent.register("/echo-client", selectors: ["unix:uid:65534"])
        try agent.register("/not-allowed", selectors: ["unix:uid:4243"])
        _ = try agent.waitForSVID("spiffe://example.org/echo-server")
        _ = try agent.waitForSVID("spiffe://example.org/echo-client", uid: 65534)
        let (process, address) = try Self.serve(agent, allow: ["spiffe://example.org/echo-client"])
        defer {
            process.terminate()
            process.waitUntilExit()
        }

        let first = try Self.call(agent, address, uid: 65534, gid: 65534)
        #expect(first.status == 0, "\(first.stderr)")
        #expect(first.stdout.contains("echo to spiffe://example.org/echo-client from spiffe://example.org/echo-server"), "\(first.stdout)")
        #expect(first.stdout.contains("connected to spiffe://example.org/echo-server serial"))

        let unregistered = try Self.call(agent, address, uid: 4242, gid: 4242)
        #expect(unregistered.status != 0 && unregistered.stderr.contains("no identity issued"), "\(unregistered.stderr)")
        let unauthorised = try Self.call(agent, address, uid: 4243, gid: 4243)
        #expect(unauthorised.status != 0, "\(unauthorised.stdout)")
        let serverLog = try String(contentsOfFile: server.dir.path("echo-server.log"), encoding: .utf8)
        #expect(serverLog.contains("refused a caller") && serverLog.contains("not-allowed"), "\(serverLog)")

        // One connection across the server's rotation (6 s SVIDs renew at 3 s), and a new one after.
        let long = try Self.call(agent, address, uid: 65534, gid: 65534, extra: ["--count", "7", "--interval", "1"])
        let replies = long.stdout.split(separator: "\n").filter { $0.hasPrefix("echo to") }
        #expect(long.status == 0 && replies.count == 7, "the open connection kept working: \(long.stdout)\(long.stderr)")
        let during = try #require(Self.serial(long.stdout))
        let after = try Self.call(agent, address, uid: 65534, gid: 65534)
        #expect(after.status == 0)
        #expect(Self.serial(after.stdout) != nil && Self.serial(after.stdout) != during, "a new connection presents the SVID renewed while the old one stayed open")
    }
}
