// Security properties of the agent/server channel and of what the processes write, each checked
// on real processes with openssl as the independent party.

import Foundation
import HallmarkTestSupport
import Testing

@Suite("security properties")
struct SecurityPropertyTests {
    /// Runs `openssl s_client` against the agent API with the given protocol flags; true when a
    /// TLS session was established.
    static func handshake(_ server: TestServer, _ flags: [String]) throws -> (established: Bool, output: String) {
        // A self-signed client certificate, as an agent presents to attest: the server requires one.
        let key = server.dir.path("client.key"), certificate = server.dir.path("client.pem")
        if !FileManager.default.fileExists(atPath: certificate) {
            _ = try Run.process("/usr/bin/openssl", [
                "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-subj", "/CN=client",
                "-days", "1", "-keyout", key, "-out", certificate,
            ])
        }
        let result = try Run.process(
            "/usr/bin/openssl", ["s_client", "-connect", server.agentAddress, "-brief", "-cert", certificate, "-key", key] + flags, input: "", timeout: 30
        )
        let output = result.stdout + result.stderr
        return (output.contains("CONNECTION ESTABLISHED") || output.contains("Protocol version:"), output)
    }

    @Test("the agent API refuses TLS 1.0 and 1.1 and accepts 1.2 and 1.3")
    func tlsVersions() throws {
        let server = try TestServer()
        // SECLEVEL=0 lets openssl itself offer the old versions; the server must still refuse them.
        for version in ["-tls1", "-tls1_1"] {
            let old = try Self.handshake(server, [version, "-cipher", "DEFAULT@SECLEVEL=0"])
            #expect(!old.established, "\(version) was accepted: \(old.output)")
            #expect(old.output.contains("protocol version") || old.output.contains("unsupported protocol"), "\(version): \(old.output)")
        }
        for version in ["-tls1_2", "-tls1_3"] {
            let current = try Self.handshake(server, [version])
            #expect(current.established, "\(version) was refused: \(current.output)")
        }
    }

    @Test("an agent refuses a server whose certificate is not spiffe://TD/hallmark/server, even from the right CA")
    func wrongServerID() throws {
        let server = try TestServer()
        let impostor = server.dir.path("impostor")
        let minted = try server.hallmark(["x509", "mint", "--spiffe-id", "spiffe://example.org/impostor", "--write", impostor])
        #expect(minted.status == 0, "\(minted.stderr)")
        let port = 20_000 + Int.random(in: 0..<20_000)
        let fake = Process()
        fake.executableURL = URL(fileURLWithPath: "/usr/bin/openssl")
        fake.arguments = [
            "s_server", "-accept", "127.0.0.1:\(port)", "-cert", impostor + "/svid.pem", "-key", impostor + "/svid.key",
            "-Verify", "1", "-quiet", "-naccept", "1",
        ]
        fake.standardOutput = FileHandle.nullDevice
        fake.standardError = FileHandle.nullDevice
        try fake.run()
        defer { if fake.isRunning { fake.terminate() } }
        usleep(300_000)
        let bundle = try server.dir.write("bundle.pem", try server.hallmark(["bundle", "show", "--format", "pem"]).stdout)
        let agent = Process()
        agent.executableURL = URL(fileURLWithPath: Run.hallmarkBinary)
        agent.arguments = [
            "agent", "run", "--data-dir", server.dir.path("fooled-data"), "--server", "127.0.0.1:\(port)", "--trust-bundle", bundle,
            "--socket", server.dir.path("fooled.sock"), "--join-token", try TestAgent.token(server),
        ]
        let log = server.dir.path("fooled.log")
        FileManager.default.createFile(atPath: log, contents: nil)
        agent.standardOutput = FileHandle(forWritingAtPath: log)
        agent.standardError = FileHandle(forWritingAtPath: log)
        try agent.run()
        defer { if agent.isRunning { kill(agent.processIdentifier, SIGKILL); agent.waitUntilExit() } }
        try waitFor("refused the server's certificate", in: log, while: agent, requireRunning: false)
        let text = try String(contentsOfFile: log, encoding: .utf8)
        #expect(text.contains("spiffe://example.org/impostor"), "the refusal does not name the ID presented: \(text)")
        #expect(!FileManager.default.fileExists(atPath: server.dir.path("fooled-data/agent-svid.pem")), "the agent attested to an impostor")
    }

    @Test("a join token from a file or standard input never appears in the agent's command line")
    func joinTokenNotOnCommandLine() throws {
        let server = try TestServer()
        let token = try TestAgent.token(server)
        let file = try server.dir.write("join-token", token + "\n")
        chmod(file, 0o600)
        let agent = try TestAgent(server: server, name: "from-file", attestation: ["--join-token-file", file])
        #expect(agent.spiffeID.hasPrefix("spiffe://example.org/hallmark/agent/join-token/"))
        let pid = try #require(agent.pid)
        let cmdline = try #require(FileManager.default.contents(atPath: "/proc/\(pid)/cmdline"))
        #expect(!String(decoding: cmdline, as: UTF8.self).contains(token), "the token is not in /proc/PID/cmdline")

        // From standard input.
        let stdinToken = try TestAgent.token(server)
        let bundle = try server.dir.write("stdin-bundle.pem", try server.hallmark(["bundle", "show"]).stdout)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Run.hallmarkBinary)
        process.arguments = [
            "agent", "run", "--data-dir", server.dir.path("stdin-data"), "--server", server.agentAddress, "--trust-bundle", bundle,
            "--socket", server.dir.path("stdin.sock"), "--join-token-file", "-",
        ]
        let log = server.dir.path("stdin-agent.log")
        FileManager.default.createFile(atPath: log, contents: nil)
        process.standardOutput = FileHandle(forWritingAtPath: log)
        process.standardError = FileHandle(forWritingAtPath: log)
        let input = Pipe()
        process.standardInput = input
        try process.run()
        defer { process.terminate(); process.waitUntilExit() }
        input.fileHandleForWriting.write(Data((stdinToken + "\n").utf8))
        try input.fileHandleForWriting.close()
        try waitFor("hallmark agent listening", in: log, while: process)

        let empty = try Run.process(Run.hallmarkBinary, [
            "agent", "run", "--data-dir", server.dir.path("empty-data"), "--server", server.agentAddress, "--trust-bundle", bundle,
            "--socket", server.dir.path("empty.sock"), "--join-token-file", "-",
        ], input: "")
        #expect(empty.status != 0 && empty.stderr.contains("--join-token-file: standard input holds no token"), "\(empty.stderr)")
        let both = try Run.process(Run.hallmarkBinary, [
            "agent", "run", "--data-dir", server.dir.path("both-data"), "--server", server.agentAddress, "--trust-bundle", bundle,
            "--socket", server.dir.path("both.sock"), "--join-token", "x", "--join-token-file", file,
        ])
        #expect(both.status != 0 && both.stderr.contains("give one, not both"), "\(both.stderr)")
        let help = try Run.process(Run.hallmarkBinary, ["agent", "run", "--help"])
        #expect(help.stdout.contains("/proc/PID/cmdline"), "the help says why the flag form is for tests")
    }

    @Test("no private key and no join token ever appears in the server's or the agent's log")
    func noSecretsInLogs() throws {
        let server = try TestServer(arguments: ["--log-level", "trace"])
        let token = try TestAgent.token(server)
        let agent = try TestAgent(server: server, token: token)
        try agent.register("/workload", selectors: ["unix:uid:\(getuid())"])
        _ = try agent.waitForSVID("spiffe://example.org/workload")
        _ = try agent.workload(["jwt", "fetch", "--audience", "a"])
        // A refused token is logged too; the token itself must not be.
        let wrong = "hallmark-wrong-token-0123456789"
        _ = try Run.process(Run.hallmarkBinary, [
            "agent", "run", "--data-dir", server.dir.path("wrong-data"), "--server", server.agentAddress, "--insecure-bootstrap",
            "--socket", server.dir.path("wrong.sock"), "--join-token", wrong,
        ], timeout: 60)
        agent.stop()
        _ = server.stop()

        // Every key Hallmark wrote, as the base64 lines of its PEM body.
        var secrets = [token, wrong]
        let keyFiles = try FileManager.default.subpathsOfDirectory(atPath: server.dir.url.path).filter { $0.hasSuffix(".key") }
        #expect(keyFiles.count >= 3, "expected the CA keys and the agent's key: \(keyFiles)")
        for file in keyFiles {
            let pem = try String(contentsOfFile: server.dir.path(file), encoding: .utf8)
            secrets += pem.split(separator: "\n").filter { !$0.hasPrefix("-----") && $0.count >= 16 }.map { String($0.prefix(40)) }
        }
        let logs = try FileManager.default.subpathsOfDirectory(atPath: server.dir.url.path).filter { $0.hasSuffix(".log") }
        #expect(logs.count >= 2)
        var scanned = 0
        for file in logs {
            let text = try String(contentsOfFile: server.dir.path(file), encoding: .utf8)
            scanned += text.count
            #expect(!text.contains("PRIVATE KEY"), "\(file) contains a PEM private key")
            for secret in secrets { #expect(!text.contains(secret), "\(file) contains a secret: \(secret.prefix(8))…") }
        }
        #expect(scanned > 1000, "the logs are nearly empty; the scan proves nothing")
    }
}
