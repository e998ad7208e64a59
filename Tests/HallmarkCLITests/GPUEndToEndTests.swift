// GPU attestation end to end, without a GPU: a simulator makes evidence in NVIDIA's format with the
// server's fresh nonce, signed under a test root the server pins, and RIMs signed under a test RIM
// root. An entry that requires gpu:rim:verified issues only when the measurements match.

import Foundation
import HallmarkTestSupport
import Testing

@Suite("GPU end to end", .serialized)
struct GPUEndToEndTests {
    static var simulator: String { (Run.hallmarkBinary as NSString).deletingLastPathComponent + "/hallmark-gpu-simulator" }

    private func selectors(_ server: TestServer, _ agent: TestAgent) throws -> [String] {
        let shown = try JSONSerialization.jsonObject(with: Data(try server.hallmark(["agent", "show", "--spiffe-id", agent.spiffeID, "--output", "json"]).stdout.utf8))
        return (shown as? [String: Any])?["selectors"] as? [String] ?? []
    }

    @Test("GPU facts become selectors; gpu:rim:verified, and the identity that needs it, only when measurements match")
    func simulatedGPU() throws {
        let dir = try TemporaryDirectory("gpu-sim")
        let good = GPUSimulator.State(dir: dir.path("good"))
        try GPUSimulator.create(in: good.dir)
        // A second GPU of the same maker (one GPU backs one node), whose firmware is tampered with.
        let bad = try GPUSimulator.create(in: dir.path("tampered"), serial: "SIM0000000002", sharing: good)
        FileManager.default.createFile(atPath: bad.tamperedFlag, contents: nil)

        let server = try TestServer(arguments: [
            "--gpu-root", good.deviceRoot, "--gpu-rim-root", good.rimRoot, "--gpu-rim", good.driverRIM, "--gpu-rim", good.vbiosRIM,
        ])
        let agent = try TestAgent(
            server: server, name: "good", attestation: ["--join-token", try TestAgent.token(server), "--gpu-evidence-command", "\(Self.simulator) --state \(good.dir)"]
        )
        let facts = try selectors(server, agent)
        for expected in ["gpu:model:GH100", "gpu:driver:545.00", "gpu:vbios:96.00.5E.00.01", "gpu:ueid:SIM0000000001", "gpu:rim:verified"] {
            #expect(facts.contains(expected), "\(expected) in \(facts)")
        }

        // The identity a model server gets only on a verified GPU.
        let alias = try server.hallmark([
            "entry", "create", "--spiffe-id", "spiffe://example.org/node/verified-gpu", "--parent-id", "spiffe://example.org/hallmark/server",
            "--selector", "gpu:rim:verified", "--selector", "gpu:model:GH100",
        ])
        #expect(alias.status == 0, "\(alias.stderr)")
        #expect(try server.hallmark([
            "entry", "create", "--spiffe-id", "spiffe://example.org/model/serving", "--parent-id", "spiffe://example.org/node/verified-gpu",
            "--selector", "unix:uid:0",
        ]).status == 0)
        _ = try agent.waitForSVID("spiffe://example.org/model/serving")

        let tampered = try TestAgent(
            server: server, name: "tampered", attestation: ["--join-token", try TestAgent.token(server), "--gpu-evidence-command", "\(Self.simulator) --state \(bad.dir)"]
        )
        let tamperedFacts = try selectors(server, tampered)
        #expect(tamperedFacts.contains("gpu:model:GH100") && !tamperedFacts.contains("gpu:rim:verified"), "\(tamperedFacts)")
        #expect(tamperedFacts.contains("gpu:ueid:SIM0000000002"), "\(tamperedFacts)")
        try tampered.register("/control", selectors: ["unix:uid:0"])
        let fetched = try tampered.waitForSVID("spiffe://example.org/control")
        #expect(!fetched.stdout.contains("spiffe://example.org/model/serving"), "no verified-GPU identity on a GPU whose measurements differ")
        let audit = try server.hallmark(["audit", "show", "--output", "json"]).stdout
        #expect(audit.contains("rim not verified") && audit.contains("measurements differ from the RIMs"), "the audit log says why")

        // The good GPU's evidence relayed by another node while the first node holds that GPU.
        let bundle = try server.dir.write("relay-bundle.pem", try server.hallmark(["bundle", "show"]).stdout)
        let relay = try Run.process(Run.hallmarkBinary, [
            "agent", "run", "--data-dir", server.dir.path("relay"), "--server", server.agentAddress, "--trust-bundle", bundle,
            "--socket", server.dir.path("relay.sock"), "--join-token", try TestAgent.token(server),
            "--gpu-evidence-command", "\(Self.simulator) --state \(good.dir)",
        ], timeout: 60)
        #expect(relay.status != 0 && relay.stderr.contains("gpu:ueid:SIM0000000001 is already held by attested agent \(agent.spiffeID)"), "\(relay.stderr)")
        let refused = try server.hallmark(["audit", "show", "--output", "json"]).stdout
        #expect(refused.contains("already held by attested agent"), "the refusal is audited")
    }

    @Test("without an NVIDIA driver the agent refuses --gpu plainly; a server without --gpu-root refuses GPU evidence")
    func refusals() throws {
        let server = try TestServer()
        let bundle = try server.dir.write("gpu-bundle.pem", try server.hallmark(["bundle", "show"]).stdout)
        let noDriver = try Run.process(Run.hallmarkBinary, [
            "agent", "run", "--data-dir", server.dir.path("nvml"), "--server", server.agentAddress, "--trust-bundle", bundle,
            "--socket", server.dir.path("nvml.sock"), "--join-token", try TestAgent.token(server), "--gpu",
        ])
        #expect(noDriver.status != 0 && noDriver.stderr.contains("no NVIDIA driver on this node"), "\(noDriver.stderr)")
        let state = GPUSimulator.State(dir: server.dir.path("sim"))
        try GPUSimulator.create(in: state.dir)
        let unconfigured = try Run.process(Run.hallmarkBinary, [
            "agent", "run", "--data-dir", server.dir.path("sim-agent"), "--server", server.agentAddress, "--trust-bundle", bundle,
            "--socket", server.dir.path("sim.sock"), "--join-token", try TestAgent.token(server),
            "--gpu-evidence-command", "\(Self.simulator) --state \(state.dir)",
        ])
        #expect(unconfigured.status != 0 && unconfigured.stderr.contains("GPU attestation is not configured"), "\(unconfigured.stderr)")
    }

    @Test("a RIM re-signed by an attacker to bless a tampered GPU gives the server no gpu:rim:verified, and the audit names the rule")
    func forgedRIMOnServer() throws {
        let dir = try TemporaryDirectory("gpu-forged-rim")
        let state = GPUSimulator.State(dir: dir.path("gpu"))
        try GPUSimulator.create(in: state.dir)
        FileManager.default.createFile(atPath: state.tamperedFlag, contents: nil)
        // The VBIOS RIM's golden value for block 2 becomes what the tampered GPU measures.
        let forged = try RIMForgery.rsaKeyValue.forge(
            try String(contentsOfFile: state.vbiosRIM, encoding: .utf8), replacing: GPUSimulator.block2Golden, with: GPUSimulator.block2Tampered,
            in: dir.path("forged")
        )
        let server = try TestServer(arguments: [
            "--gpu-root", state.deviceRoot, "--gpu-rim-root", state.rimRoot, "--gpu-rim", state.driverRIM, "--gpu-rim", forged,
        ])
        let agent = try TestAgent(
            server: server, name: "tampered", attestation: ["--join-token", try TestAgent.token(server), "--gpu-evidence-command", "\(Self.simulator) --state \(state.dir)"]
        )
        let facts = try selectors(server, agent)
        #expect(facts.contains("gpu:model:GH100") && !facts.contains("gpu:rim:verified"), "\(facts)")
        let audit = try server.hallmark(["audit", "show", "--output", "json"]).stdout
        #expect(audit.contains("KeyInfo may carry only X509Data"), "the audit log names the rule")
    }
}

