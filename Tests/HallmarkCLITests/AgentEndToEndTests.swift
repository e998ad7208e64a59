// The agent as a workload meets it: a real server and a real agent, the Workload API over its
// Unix socket, callers told apart by the kernel, and the faults the issue names.

import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import HallmarkProto
import HallmarkTestSupport
import SPIFFE
import SPIFFETLS
import SwiftASN1
import X509
import Crypto
import Testing

@Suite("agent end to end", .serialized)
struct AgentEndToEndTests {
    private func json(_ text: String) throws -> Any { try JSONSerialization.jsonObject(with: Data(text.utf8)) }

    @Test("a workload gets its SVID, which verifies against the bundle with openssl too")
    func fetch() throws {
        let server = try TestServer()
        let agent = try TestAgent(server: server)
        #expect(agent.spiffeID.hasPrefix("spiffe://example.org/hallmark/agent/join-token/"))
        try agent.register("/model/llama", selectors: ["unix:uid:0"], extra: ["--dns-name", "llama.local"])
        _ = try agent.waitForSVID("spiffe://example.org/model/llama")
        let out = server.dir.path("fetched")
        let fetched = try agent.workload(["svid", "fetch", "--write", out])
        #expect(fetched.status == 0, "\(fetched.stderr)")
        #expect(fetched.stdout.contains("Verified against the bundle: yes"))
        let openssl = try Run.process("/usr/bin/openssl", ["verify", "-x509_strict", "-CAfile", "\(out)/bundle.pem", "\(out)/svid.pem"])
        #expect(openssl.status == 0, "\(openssl.stdout)\(openssl.stderr)")
        let mode = try FileManager.default.attributesOfItem(atPath: "\(out)/svid.key")[.posixPermissions] as? NSNumber
        #expect(mode?.intValue == 0o600)
    }

    /// A local TCP port nothing listens on: connections to it are refused.
    static func closedPort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0 }
        }
        guard bound else { throw TestFailure("could not find a free port") }
        return Int(UInt16(bigEndian: address.sin_port))
    }

    @Test("an agent given several servers attests and serves through the first that answers, past one that refuses connections")
    func serverList() throws {
        let server = try TestServer()
        let closed = try Self.closedPort()
        let agent = try TestAgent(server: server, servers: ["127.0.0.1:\(closed)", server.agentAddress])
        #expect(agent.spiffeID.hasPrefix("spiffe://example.org/hallmark/agent/join-token/"))
        try agent.register("/model/llama", selectors: ["unix:uid:0"])
        _ = try agent.waitForSVID("spiffe://example.org/model/llama")
        #expect(agent.log.contains("127.0.0.1:\(closed)"), "the unreachable server was never tried")

        for (arguments, message) in [
            ([String](), "--server: give the server's agent API as HOST:PORT"),
            (["--server", server.agentAddress, "--server", server.agentAddress], "--server: \(server.agentAddress) is given more than once"),
        ] {
            let refused = try Run.process(Run.hallmarkBinary, ["agent", "run", "--data-dir", server.dir.path("unused"), "--socket", server.dir.path("unused.sock")] + arguments)
            #expect(refused.status != 0 && refused.stderr.contains(message), "\(arguments): \(refused.stderr)")
        }
    }

    @Test("callers are told apart by the kernel: uid, user, path; an unknown caller is refused")
    func workloadAttestation() throws {
        let server = try TestServer()
        let agent = try TestAgent(server: server)
        try agent.register("/nobody", selectors: ["unix:uid:65534"])
        try agent.register("/nobody-by-name", selectors: ["unix:user:nobody", "unix:path:\(URL(fileURLWithPath: Run.hallmarkBinary).resolvingSymlinksInPath().path)"])
        try agent.register("/root-only", selectors: ["unix:uid:0"])
        let fetched = try agent.waitForSVID("spiffe://example.org/nobody-by-name", uid: 65534)
        let ids = Set(((try json(fetched.stdout) as? [[String: Any]]) ?? []).compactMap { $0["spiffe_id"] as? String })
        #expect(ids == ["spiffe://example.org/nobody", "spiffe://example.org/nobody-by-name"], "every SVID whose selectors all match, and no other")
        let stranger = try agent.workload(["svid", "fetch"], uid: 4242, gid: 4242)
        #expect(stranger.status == 1)
        #expect(stranger.stderr.contains("permissionDenied") && stranger.stderr.contains("no identity issued"))
        #expect(agent.log.contains("uid=4242") && agent.log.contains("no identity issued"), "the refusal is logged")
        let byHash = try agent.workload(["svid", "fetch", "--output", "json"])
        #expect(byHash.stdout.contains("spiffe://example.org/root-only") && !byHash.stdout.contains("nobody"))
    }

    @Test("the Workload API socket is reachable by everyone in a directory only the agent writes")
    func socketModes() throws {
        let server = try TestServer()
        let agent = try TestAgent(server: server)
        let socketMode = (try FileManager.default.attributesOfItem(atPath: agent.socket)[.posixPermissions] as? NSNumber)?.intValue
        #expect(socketMode == 0o777)
        let directory = (agent.socket as NSString).deletingLastPathComponent
        let directoryMode = (try FileManager.default.attributesOfItem(atPath: directory)[.posixPermissions] as? NSNumber)?.intValue ?? 0o777
        #expect(directoryMode & 0o022 == 0)
        let dataMode = (try FileManager.default.attributesOfItem(atPath: agent.dataDir)[.posixPermissions] as? NSNumber)?.intValue
        #expect(dataMode == 0o700)
        let keyMode = (try FileManager.default.attributesOfItem(atPath: "\(agent.dataDir)/agent-svid.key")[.posixPermissions] as? NSNumber)?.intValue
        #expect(keyMode == 0o600)

        // A socket directory others may write is refused: anyone could swap the socket for their own.
        let open = server.dir.path("open-socket")
        try FileManager.default.createDirectory(atPath: open, withIntermediateDirectories: true)
        chmod(open, 0o777)
        let refused = try Run.process(Run.hallmarkBinary, [
            "agent", "run", "--data-dir", server.dir.path("open-data"), "--server", server.agentAddress, "--insecure-bootstrap",
            "--socket", open + "/api.sock", "--join-token", try TestAgent.token(server),
        ], timeout: 60)
        #expect(refused.status != 0)
        #expect(refused.stderr.contains("socket directory \(open) (mode 777"), "\(refused.stderr)")
        #expect(!FileManager.default.fileExists(atPath: open + "/api.sock"))
    }

    @Test("JWT-SVIDs: fetched over the Workload API and validated by the agent")
    func jwt() throws {
        let server = try TestServer()
        let agent = try TestAgent(server: server)
        try agent.register("/svc", selectors: ["unix:uid:0"])
        _ = try agent.waitForSVID("spiffe://example.org/svc")
        let token = try agent.workload(["jwt", "fetch", "--audience", "inference"]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(token.split(separator: ".").count == 3)
        let valid = try agent.workload(["jwt", "validate", "--audience", "inference", "--token", token])
        #expect(valid.stdout.contains("valid: spiffe://example.org/svc"), "\(valid.stderr)")
        let wrong = try agent.workload(["jwt", "validate", "--audience", "other", "--token", token])
        #expect(wrong.status == 1)
        #expect(wrong.stderr.contains("does not contain 'other'"))
        let missing = try agent.workload(["jwt", "fetch"])
        #expect(missing.status != 0)
    }

    @Test("a reused join token is refused, and the refusal is logged")
    func reusedToken() throws {
        let server = try TestServer()
        let token = try TestAgent.token(server)
        let bundle = try server.dir.write("bundle.pem", try server.hallmark(["bundle", "show"]).stdout)
        let first = try Run.process(Run.hallmarkBinary, [
            "agent", "run", "--data-dir", server.dir.path("a1"), "--server", server.agentAddress, "--trust-bundle", bundle,
            "--socket", server.dir.path("a1.sock"), "--join-token", "not-a-token",
        ])
        #expect(first.status != 0)
        #expect(first.stderr.contains("the join token is not known"), "\(first.stderr)")
        // A real agent spends the token; the same token again is refused.
        let agent = try TestAgent(server: server, name: "real", token: token)
        #expect(!agent.spiffeID.isEmpty)
        let spent = try Run.process(Run.hallmarkBinary, [
            "agent", "run", "--data-dir", server.dir.path("a3"), "--server", server.agentAddress, "--trust-bundle", bundle,
            "--socket", server.dir.path("a3.sock"), "--join-token", token,
        ])
        #expect(spent.status != 0)
        #expect(spent.stderr.contains("already used"), "\(spent.stderr)")
        #expect(server.log.contains("attestation refused"))
    }

    @Test("an agent that restarts resumes with its saved SVID, without a token")
    func restartResumes() throws {
        let server = try TestServer()
        let agent = try TestAgent(server: server)
        try agent.register("/svc", selectors: ["unix:uid:0"])
        _ = try agent.waitForSVID("spiffe://example.org/svc")
        agent.kill()
        try agent.start(["--insecure-bootstrap"])
        #expect(agent.log.contains("resuming as \(agent.spiffeID)"))
        _ = try agent.waitForSVID("spiffe://example.org/svc", timeout: 5)
    }

    @Test("with the server away, workloads keep their SVIDs; when it returns the agent resumes by itself")
    func serverOutage() throws {
        let server = try TestServer()
        let agent = try TestAgent(server: server)
        try agent.register("/svc", selectors: ["unix:uid:0"])
        _ = try agent.waitForSVID("spiffe://example.org/svc")
        #expect(server.stop() == 0)
        let cached = try agent.workload(["svid", "fetch"])
        #expect(cached.status == 0, "cached SVIDs are served while the server is away: \(cached.stderr)")
        try server.start()
        try agent.register("/after-outage", selectors: ["unix:uid:0"])
        _ = try agent.waitForSVID("spiffe://example.org/after-outage", timeout: 60)
        #expect(agent.log.contains("lost the server"))
    }

    @Test("an SVID with a short TTL rotates, and the open stream sees it")
    func rotation() throws {
        let server = try TestServer()
        let agent = try TestAgent(server: server)
        try agent.register("/short", selectors: ["unix:uid:0"], extra: ["--x509-ttl", "4"])
        _ = try agent.waitForSVID("spiffe://example.org/short")
        let watch = try agent.workload(["svid", "watch", "--count", "2"])
        let lines = watch.stdout.split(separator: "\n")
        #expect(lines.count == 2, "\(watch.stdout)\(watch.stderr)")
        let serials = Set(lines.compactMap { $0.components(separatedBy: "serial ").last })
        #expect(serials.count == 2, "the second message carries a new certificate")
    }

    @Test("the agent renews its own SVID at half-life and keeps serving; healthcheck answers")
    func agentRenewal() throws {
        let server = try TestServer(arguments: ["--agent-svid-ttl", "4"])
        let agent = try TestAgent(server: server)
        try agent.register("/svc", selectors: ["unix:uid:0"])
        _ = try agent.waitForSVID("spiffe://example.org/svc")
        let before = try String(contentsOfFile: "\(agent.dataDir)/agent-svid.pem", encoding: .utf8)
        // Renewed at half-life and saved for the next start.
        try waitUntil("the agent's SVID renewed and saved") {
            (try? String(contentsOfFile: "\(agent.dataDir)/agent-svid.pem", encoding: .utf8)).map { $0 != before } ?? false
        }
        // New SVIDs still come after the agent reconnected with its renewed certificate.
        try agent.register("/after-renewal", selectors: ["unix:uid:0"])
        _ = try agent.waitForSVID("spiffe://example.org/after-renewal")
        let health = try agent.workload(["healthcheck"])
        #expect(health.status == 0 && health.stdout.contains("healthy"))
        let stranger = try agent.workload(["healthcheck"], uid: 4242, gid: 4242)
        #expect(stranger.status == 0, "a process without an identity still learns that the agent is up")
        let nowhere = try Run.process(Run.hallmarkBinary, ["healthcheck", "--socket", server.dir.path("nowhere.sock")])
        #expect(nowhere.status == 1)
    }

    @Test("an entry past expires_at is removed by the server and leaves the workload's SVIDs")
    func entryExpiry() throws {
        let server = try TestServer()
        let agent = try TestAgent(server: server)
        try agent.register("/stays", selectors: ["unix:uid:0"])
        // A real expiry a few seconds out: the server's clock is a process's, like a rotation's.
        let expiresAt = Date().addingTimeInterval(3).formatted(.iso8601)
        let id = try agent.register("/expires", selectors: ["unix:uid:0"], extra: ["--expires-at", expiresAt])
        _ = try agent.waitForSVID("spiffe://example.org/expires")
        let deadline = Date().addingTimeInterval(30)
        var listing = ""
        while Date() < deadline {
            listing = try agent.workload(["svid", "fetch", "--output", "json"]).stdout
            if !listing.contains("/expires"), listing.contains("/stays") { break }
            usleep(100_000)
        }
        #expect(!listing.contains("spiffe://example.org/expires") && listing.contains("spiffe://example.org/stays"), "\(listing)")
        let shown = try server.hallmark(["entry", "show", "--id", id, "--output", "json"])
        #expect(shown.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "[\n\n]" || !shown.stdout.contains(id))
        let audit = try server.hallmark(["audit", "show", "--output", "json"]).stdout
        #expect(audit.contains("entry.expire"))
    }

    // MARK: The agent API, called directly

    private func agentAPI(_ server: TestServer, certificate: [UInt8], key: [UInt8]) throws -> HTTP2ClientTransport.Posix {
        try HTTP2ClientTransport.Posix(
            target: .ipv4(host: "127.0.0.1", port: server.agentPort ?? 0),
            transportSecurity: .mTLS(certificateChain: [.bytes(certificate, format: .der)], privateKey: .bytes(key, format: .der)) {
                $0.serverCertificateVerification = .noHostnameVerification
                $0.customVerificationCallback = SPIFFEPeerVerification.possessionOnly
            },
            config: .defaults { $0.http2.authority = "hallmark-server" }
        )
    }

    /// The agent's own SVID certificate and key, DER, as its data directory holds them.
    private func agentCredentials(_ agent: TestAgent) throws -> (certificate: [UInt8], key: [UInt8]) {
        let chain = try X509SVID.certificates(pem: try String(contentsOfFile: "\(agent.dataDir)/agent-svid.pem", encoding: .utf8))
        let key = try PEMDocument(pemString: try String(contentsOfFile: "\(agent.dataDir)/agent-svid.key", encoding: .utf8)).derBytes
        return (try TestPEM.der(chain[0]), key)
    }

    private func selfSigned() throws -> (certificate: [UInt8], key: [UInt8]) {
        let key = Certificate.PrivateKey(P256.Signing.PrivateKey())
        let name = try DistinguishedName { CommonName("intruder") }
        let certificate = try Certificate(
            version: .v3, serialNumber: Certificate.SerialNumber(), publicKey: key.publicKey, notValidBefore: Date().addingTimeInterval(-60),
            notValidAfter: Date().addingTimeInterval(600), issuer: name, subject: name, signatureAlgorithm: .ecdsaWithSHA256,
            extensions: Certificate.Extensions(), issuerPrivateKey: key
        )
        var serializer = DER.Serializer()
        try serializer.serialize(certificate)
        return (serializer.serializedBytes, try PEMDocument(pemString: key.serializeAsPEM().pemString).derBytes)
    }

    @Test("a garbage attestation message is refused with InvalidArgument, and the server keeps serving")
    func garbageAttestation() async throws {
        let server = try TestServer()
        let (certificate, key) = try selfSigned()
        let error = await #expect(throws: RPCError.self) {
            try await withGRPCClient(transport: try agentAPI(server, certificate: certificate, key: key)) { client in
                try await AgentAPI_AgentAPI.Client(wrapping: client).attestAgent(
                    requestProducer: { writer in try await writer.write(AgentAPI_AttestRequest.with { $0.challengeResponse = Data([1, 2, 3]) }) },
                    onResponse: { response in for try await _ in response.messages {} }
                )
            }
        }
        #expect(error?.code == .invalidArgument)
        // Without an SVID, nothing but attestation is open.
        let sync = await #expect(throws: RPCError.self) {
            try await withGRPCClient(transport: try agentAPI(server, certificate: certificate, key: key)) { client in
                try await AgentAPI_AgentAPI.Client(wrapping: client).batchNewX509SVID(AgentAPI_BatchNewX509SVIDRequest())
            }
        }
        #expect(sync?.code == .unauthenticated)
        let agent = try TestAgent(server: server)
        #expect(!agent.spiffeID.isEmpty, "the server still attests real agents")
    }

    @Test("repeated failed attestations from one peer are turned away before any evidence is read")
    func attestationRateLimit() async throws {
        let server = try TestServer()
        let (certificate, key) = try selfSigned()
        func attempt(_ message: AgentAPI_AttestRequest) async -> RPCError? {
            await #expect(throws: RPCError.self) {
                try await withGRPCClient(transport: try agentAPI(server, certificate: certificate, key: key)) { client in
                    try await AgentAPI_AgentAPI.Client(wrapping: client).attestAgent(
                        requestProducer: { writer in try await writer.write(message) },
                        onResponse: { response in for try await _ in response.messages {} }
                    )
                }
            }
        }
        // Garbage, then guessed join tokens: each is refused for what it is.
        let garbage = AgentAPI_AttestRequest.with { $0.challengeResponse = Data([1, 2, 3]) }
        let guessed = AgentAPI_AttestRequest.with {
            $0.params = AgentAPI_AttestParams.with { $0.method = "join-token"; $0.payload = Data("not-a-token".utf8); $0.csr = Data((try? SVIDRequest().csr) ?? []) }
        }
        for index in 0..<10 {
            let error = await attempt(index < 5 ? garbage : guessed)
            #expect(error?.code == .invalidArgument || error?.code == .permissionDenied, "attempt \(index): \(String(describing: error))")
        }
        // The eleventh within the minute is turned away unread, with when to come back.
        let limited = await attempt(guessed)
        #expect(limited?.code == .resourceExhausted, "\(String(describing: limited))")
        #expect(limited?.message.contains("too many failed attempts from ipv4:127.0.0.1; retry in") == true, "\(String(describing: limited))")
        #expect(server.log.contains("attestation refused: too many failures"))
    }

    @Test("a CSR for an entry the agent may not hold is refused and logged; its own are signed")
    func unauthorisedCSR() async throws {
        let server = try TestServer()
        let agent = try TestAgent(server: server)
        let mine = try agent.register("/mine", selectors: ["unix:uid:0"])
        let other = try server.hallmark([
            "entry", "create", "--spiffe-id", "spiffe://example.org/theirs", "--parent-id", "spiffe://example.org/hallmark/agent/join-token/other",
            "--selector", "unix:uid:0", "--output", "json",
        ])
        let theirs = try #require((try json(other.stdout) as? [String: Any])?["id"] as? String)
        let (certificate, keyDER) = try agentCredentials(agent)
        let csrKey = Certificate.PrivateKey(P256.Signing.PrivateKey())
        let csr = try CertificateSigningRequest(
            version: .v1, subject: DistinguishedName(), privateKey: csrKey, attributes: CertificateSigningRequest.Attributes(), signatureAlgorithm: .ecdsaWithSHA256
        )
        var csrDER = DER.Serializer()
        try csrDER.serialize(csr)
        let response = try await withGRPCClient(transport: try agentAPI(server, certificate: certificate, key: keyDER)) { client in
            try await AgentAPI_AgentAPI.Client(wrapping: client).batchNewX509SVID(AgentAPI_BatchNewX509SVIDRequest.with {
                $0.params = [mine, theirs].map { id in AgentAPI_X509SVIDParams.with { $0.entryID = id; $0.csr = Data(csrDER.serializedBytes) } }
            })
        }
        #expect(response.results.count == 2)
        #expect(response.results[0].statusCode == 0 && !response.results[0].chain.isEmpty)
        #expect(response.results[1].statusCode == Int32(RPCError.Code.permissionDenied.rawValue))
        #expect(response.results[1].chain.isEmpty)
        #expect(server.log.contains("CSR refused"))
        let audit = try server.hallmark(["audit", "show", "--output", "json"])
        #expect(audit.stdout.contains("\"refused\""))
    }

    @Test("a compromised agent's held-authority reports: malformed ones refused by field, a flood of changes slowed, a lie that pins a key answered by naming the node and by --force")
    func hostileHeldReports() async throws {
        let server = try TestServer()
        let agent = try TestAgent(server: server)
        try agent.register("/svc", selectors: ["unix:uid:0"])
        _ = try agent.waitForSVID("spiffe://example.org/svc")
        // The attacker holds the agent's own SVID and key, and stops the agent so that its honest
        // reports do not overwrite the lies.
        let (certificate, keyDER) = try agentCredentials(agent)
        #expect(agent.stop() == 0)
        func report(_ ids: [String]) async -> RPCError? {
            do {
                _ = try await withGRPCClient(transport: try agentAPI(server, certificate: certificate, key: keyDER)) { client in
                    try await AgentAPI_AgentAPI.Client(wrapping: client).reportHeld(AgentAPI_ReportHeldRequest.with { $0.x509AuthorityIds = ids })
                }
                return nil
            } catch let error as RPCError {
                return error
            } catch {
                Issue.record("\(error)")
                return nil
            }
        }
        let tooMany = await report((0..<65).map { String(format: "%04x", $0) })
        #expect(tooMany?.code == .invalidArgument && tooMany?.message == "x509_authority_ids: at most 64, not 65", "\(String(describing: tooMany))")
        let notHex = await report(["ab", "not-hex"])
        #expect(notHex?.code == .invalidArgument && notHex?.message.hasPrefix("x509_authority_ids[1]: ") == true, "\(String(describing: notHex))")

        // Changes are writes: past the burst, a flood of different reports is refused, naming the limit.
        var limited: RPCError?
        for index in 0..<40 where limited == nil {
            limited = await report([String(format: "%08x", index)])
        }
        #expect(limited?.code == .resourceExhausted, "\(String(describing: limited))")
        #expect(limited?.message.contains("changes of what \(agent.spiffeID) holds are limited") == true, "\(String(describing: limited))")

        // A lie that pins the active key: its revoke is refused naming the node, and --force revokes anyway.
        let list = try JSONSerialization.jsonObject(with: Data(try server.hallmark(["authority", "x509", "show", "--output", "json"]).stdout.utf8)) as? [[String: Any]]
        let active = try #require(list?.first { $0["state"] as? String == "active" }?["authority_id"] as? String)
        #expect(try server.hallmark(["authority", "x509", "prepare"]).status == 0)
        #expect(try server.hallmark(["authority", "x509", "activate"]).status == 0)
        #expect(try server.hallmark(["authority", "x509", "taint", "--authority-id", active]).status == 0)
        var pinned: RPCError? = RPCError(code: .resourceExhausted, message: "")
        let deadline = Date().addingTimeInterval(30)
        while pinned?.code == .resourceExhausted, Date() < deadline {
            pinned = await report([active])
            if pinned != nil { try await Task.sleep(for: .milliseconds(200)) }
        }
        #expect(pinned == nil, "\(String(describing: pinned))")
        let refused = try server.hallmark(["authority", "x509", "revoke", "--authority-id", active])
        #expect(
            refused.status != 0 && refused.stderr.contains("1 attested node still holds workload X509-SVIDs from \(active) (\(agent.spiffeID))"),
            "the refusal names the node that claims the key: \(refused.stderr)"
        )
        let forced = try server.hallmark(["authority", "x509", "revoke", "--authority-id", active, "--force"])
        #expect(forced.status == 0, "\(forced.stderr)")
    }
}

@Suite("agent renewal under change", .serialized)
struct AgentRenewalRaceTests {
    @Test("an agent renewing its own SVID while entries keep changing never loses its identity")
    func renewalWhileEntriesChange() throws {
        // A 4 s agent SVID is renewed about every half second; every entry change makes the server
        // check the agent's entry stream against its current SVID, so each renewal races a check.
        let server = try TestServer(arguments: ["--agent-svid-ttl", "4"])
        let agent = try TestAgent(server: server)
        try agent.register("/svc", selectors: ["unix:uid:0"])
        _ = try agent.waitForSVID("spiffe://example.org/svc")
        let end = Date().addingTimeInterval(12)
        var index = 0
        while Date() < end {
            try agent.register("/churn/\(index)", selectors: ["unix:uid:4242"])
            index += 1
        }
        #expect(agent.log.components(separatedBy: "renewed the agent SVID").count > 5, "the agent did not renew often enough to race")
        #expect(!agent.log.contains("no longer accepts this agent"), "the agent dropped its identity: \(agent.log.suffix(3000))")
        _ = try agent.waitForSVID("spiffe://example.org/svc", timeout: 10)
    }
}
