// TPM node attestation end to end: a real swtpm (EK certificates from a CA the test owns), a real
// server that trusts that CA and holds a PCR policy, and a real agent attesting through the
// tpm2-tss ESYS library. Re-attestation catches a PCR extended after attestation.

import Crypto
import Foundation
import HallmarkTestSupport
import Testing

@Suite("TPM end to end", .serialized)
struct TPMEndToEndTests {
    static let measurement = String(repeating: "ab", count: 32)

    /// PCR 16 after one extend of `measurement` from zero: SHA-256(zeros ‖ measurement).
    static var expectedPCR16: String {
        let digest = SHA256.hash(data: [UInt8](repeating: 0, count: 32) + [UInt8](repeating: 0xab, count: 32))
        return digest.map { String(format: "%02x", $0) }.joined()
    }

    private func json(_ text: String) throws -> Any { try JSONSerialization.jsonObject(with: Data(text.utf8)) }

    /// The agent as the server's admin API shows it, or nil once the server no longer has it.
    private func adminView(_ server: TestServer, _ agent: TestAgent) throws -> [String: Any]? {
        let result = try server.hallmark(["agent", "show", "--spiffe-id", agent.spiffeID, "--output", "json"])
        return result.status == 0 ? try json(result.stdout) as? [String: Any] : nil
    }

    @Test("an agent attests with its TPM, gets selectors that decide identity, and is evicted when PCR 16 changes")
    func attestAndReattest() async throws {
        let swtpm = try TestSwtpm()
        try swtpm.extend(pcr: 16, digestHex: Self.measurement)
        let policy = try swtpm.dir.write("pcr-policy.json", #"{"sha256": {"16": "\#(Self.expectedPCR16)"}}"#)
        let tpmServer = try TestServer(arguments: ["--tpm-ek-ca-dir", swtpm.caDirectory, "--tpm-pcr-policy", policy])
        let agent = try TestAgent(
            server: tpmServer, attestation: ["--attestor", "tpm", "--tpm-tcti", swtpm.tcti, "--tpm-reattest-interval", "1"]
        )
        #expect(agent.spiffeID.range(of: #"^spiffe://example\.org/hallmark/agent/tpm/[0-9a-f]{64}$"#, options: .regularExpression) != nil, "\(agent.spiffeID)")
        let shown = try json(try tpmServer.hallmark(["agent", "show", "--spiffe-id", agent.spiffeID, "--output", "json"]).stdout) as? [String: Any]
        let selectors = shown?["selectors"] as? [String] ?? []
        #expect(selectors.contains("tpm:ek-hash:" + agent.spiffeID.split(separator: "/").last!))
        #expect(selectors.contains("tpm:ek-ca:CN=Hallmark Test TPM Manufacturer CA"), "\(selectors)")
        #expect(selectors.contains("tpm:pcr:sha256:16:\(Self.expectedPCR16)"))
        #expect(selectors.contains("tpm:pcr:sha256:0:" + String(repeating: "0", count: 64)))

        // Identity by TPM facts: a node alias on the measured PCR, and a workload under it.
        let alias = try tpmServer.hallmark([
            "entry", "create", "--spiffe-id", "spiffe://example.org/node/measured", "--parent-id", "spiffe://example.org/hallmark/server",
            "--selector", "tpm:pcr:sha256:16:\(Self.expectedPCR16)",
        ])
        #expect(alias.status == 0, "\(alias.stderr)")
        let workload = try tpmServer.hallmark([
            "entry", "create", "--spiffe-id", "spiffe://example.org/model/serving", "--parent-id", "spiffe://example.org/node/measured",
            "--selector", "unix:uid:0",
        ])
        #expect(workload.status == 0, "\(workload.stderr)")
        _ = try agent.waitForSVID("spiffe://example.org/model/serving")
        // A fresh quote is presented and passes: the node's evidence time moves on.
        let attested = try #require(try adminView(tpmServer, agent)?["evidence_at"] as? Int64)
        try waitUntil("a TPM re-attestation", timeout: 15) { (try adminView(tpmServer, agent)?["evidence_at"] as? Int64 ?? 0) > attested }

        let watcher = try Watcher(socket: agent.socket)
        try await watcher.waitFor("the SVID") { !$0.context.svids.isEmpty }
        // The node changes after attestation: the next quote breaks the policy.
        try swtpm.extend(pcr: 16, digestHex: Self.measurement)
        let ending = try await watcher.waitForEnd(timeout: 20)
        #expect("\(String(describing: ending))".contains("no identity issued"))
        try waitUntil("the agent evicted on its failed re-attestation", timeout: 10) { try adminView(tpmServer, agent) == nil }
        try waitFor("could not attest again", in: agent.logPath, while: Process(), timeout: 15, requireRunning: false)
        #expect(agent.log.contains("PCR sha256:16 is"), "the fresh attestation is refused on the policy too")
        let audit = try tpmServer.hallmark(["audit", "show", "--output", "json"]).stdout
        #expect(audit.contains("re-attestation failed") && audit.contains("the policy requires \(Self.expectedPCR16)"), "the audit log says why")
        #expect(try agent.workload(["svid", "fetch"]).status != 0)
    }

    @Test("the ECC EK attests as another agent ID; an EK from an untrusted CA is refused with the reason")
    func eccAndUntrusted() throws {
        let swtpm = try TestSwtpm()
        let server = try TestServer(arguments: ["--tpm-ek-ca-dir", swtpm.caDirectory])
        let rsa = try TestAgent(server: server, name: "rsa", attestation: ["--attestor", "tpm", "--tpm-tcti", swtpm.tcti])
        let ecc = try TestAgent(server: server, name: "ecc", attestation: ["--attestor", "tpm", "--tpm-tcti", swtpm.tcti, "--tpm-ek", "ecc"])
        #expect(rsa.spiffeID.contains("/hallmark/agent/tpm/") && ecc.spiffeID.contains("/hallmark/agent/tpm/"))
        #expect(rsa.spiffeID != ecc.spiffeID)

        let stranger = try TestSwtpm(caName: "Unknown Manufacturer")
        let bundle = try server.dir.write("tpm-bundle.pem", try server.hallmark(["bundle", "show"]).stdout)
        let refused = try Run.process(Run.hallmarkBinary, [
            "agent", "run", "--data-dir", server.dir.path("stranger"), "--server", server.agentAddress, "--trust-bundle", bundle,
            "--socket", server.dir.path("stranger.sock"), "--attestor", "tpm", "--tpm-tcti", stranger.tcti,
        ])
        #expect(refused.status != 0)
        #expect(refused.stderr.contains("does not chain to a trusted manufacturer CA"), "\(refused.stderr)")
        let noTPM = try Run.process(Run.hallmarkBinary, [
            "agent", "run", "--data-dir", server.dir.path("none"), "--server", server.agentAddress, "--trust-bundle", bundle,
            "--socket", server.dir.path("none.sock"), "--attestor", "tpm", "--tpm-device", server.dir.path("no-such-tpm"),
        ])
        #expect(noTPM.status != 0 && noTPM.stderr.contains("tpm:"), "a missing TPM is said plainly: \(noTPM.stderr)")
    }

    @Test("after a rotation and revoke, an evicted TPM agent attests again with the newest bundle it kept, not its bootstrap file")
    func reattestAfterRevoke() async throws {
        let swtpm = try TestSwtpm()
        let server = try TestServer(arguments: ["--tpm-ek-ca-dir", swtpm.caDirectory])
        let agent = try TestAgent(server: server, attestation: ["--attestor", "tpm", "--tpm-tcti", swtpm.tcti])
        func active() throws -> String? {
            let list = try JSONSerialization.jsonObject(with: Data(try server.hallmark(["authority", "x509", "show", "--output", "json"]).stdout.utf8)) as? [[String: Any]]
            return list?.first { $0["state"] as? String == "active" }?["authority_id"] as? String
        }
        let old = try #require(try active())
        #expect(try server.hallmark(["authority", "x509", "prepare"]).status == 0)
        #expect(try server.hallmark(["authority", "x509", "activate"]).status == 0)
        #expect(try server.hallmark(["authority", "x509", "taint", "--authority-id", old]).status == 0)
        var revoked = ProcessResult(status: -1, stdout: "", stderr: "")
        let deadline = Date().addingTimeInterval(15)
        while revoked.status != 0, Date() < deadline {
            revoked = try server.hallmark(["authority", "x509", "revoke", "--authority-id", old])
            if revoked.status != 0 { try await Task.sleep(for: .milliseconds(100)) }
        }
        #expect(revoked.status == 0, "\(revoked.stderr)")
        // The bootstrap bundle file names only the revoked key now.
        let serial = try #require(try adminView(server, agent)?["serial_number"] as? String)
        #expect(try server.hallmark(["agent", "evict", "--spiffe-id", agent.spiffeID]).status == 0)
        // Attested again, with a new SVID: the server knows the node again.
        try waitUntil("the evicted agent attested again", timeout: 20) {
            guard let node = try adminView(server, agent) else { return false }
            return node["serial_number"] as? String != serial
        }
        #expect(agent.log.contains("no longer accepts this agent"), "\(agent.log.suffix(2000))")
        #expect(!agent.log.contains("no path to an authority of the bundle"), "\(agent.log.suffix(2000))")
    }
}

