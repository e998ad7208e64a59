// Evidence is presented again or stops counting. Real server and agents, GPUs simulated in
// NVIDIA's format: a node that stops re-attesting loses its identity once its evidence is older
// than the server allows, a node that keeps re-attesting carries on, and a GPU tampered with
// after attestation loses gpu:rim:verified at its next re-attestation. These wait on real
// re-attestations with intervals of a second or two.

import Foundation
import HallmarkTestSupport
import Testing

@Suite("re-attestation end to end", .serialized)
struct ReattestationEndToEndTests {
    private func selectors(_ server: TestServer, _ agent: TestAgent) throws -> [String] {
        let shown = try JSONSerialization.jsonObject(with: Data(try server.hallmark(["agent", "show", "--spiffe-id", agent.spiffeID, "--output", "json"]).stdout.utf8))
        return (shown as? [String: Any])?["selectors"] as? [String] ?? []
    }

    @Test("a GPU node that stops re-attesting loses its SVIDs; one that re-attests keeps them, and loses gpu:rim:verified once tampered with")
    func evidenceAge() async throws {
        let dir = try TemporaryDirectory("reattest")
        let steadyGPU = try GPUSimulator.create(in: dir.path("steady"))
        let silentGPU = try GPUSimulator.create(in: dir.path("silent"), serial: "SIM0000000002", sharing: steadyGPU)
        let server = try TestServer(arguments: [
            "--gpu-root", steadyGPU.deviceRoot, "--gpu-rim-root", steadyGPU.rimRoot, "--gpu-rim", steadyGPU.driverRIM, "--gpu-rim", steadyGPU.vbiosRIM,
            "--gpu-reattest-max-age", "8",
        ])
        func agent(_ name: String, _ gpu: GPUSimulator.State, interval: Int) throws -> TestAgent {
            try TestAgent(server: server, name: name, attestation: [
                "--join-token", try TestAgent.token(server), "--gpu-evidence-command", "\(GPUEndToEndTests.simulator) --state \(gpu.dir)",
                "--gpu-reattest-interval", "\(interval)",
            ])
        }
        let steady = try agent("steady", steadyGPU, interval: 1)
        let silent = try agent("silent", silentGPU, interval: 600)
        #expect(try selectors(server, steady).contains("gpu:rim:verified"))
        try steady.register("/steady", selectors: ["unix:uid:0"])
        try silent.register("/silent", selectors: ["unix:uid:0"])
        _ = try steady.waitForSVID("spiffe://example.org/steady")
        _ = try silent.waitForSVID("spiffe://example.org/silent")
        let watcher = try Watcher(socket: silent.socket)
        try await watcher.waitFor("the first SVID") { !$0.context.svids.isEmpty }

        // The silent node's evidence outlives the 8 s allowed (long enough for this set-up to see its
        // first SVID on a loaded machine): its identity goes, and the audit says why.
        let ending = try await watcher.waitForEnd(timeout: 20)
        #expect("\(String(describing: ending))".contains("no identity issued"), "\(String(describing: ending))")
        let audit = try server.hallmark(["audit", "show", "--output", "json"]).stdout
        #expect(audit.contains("evidence expired") && audit.contains("did not re-attest"), "the audit log says why")
        #expect(!(try server.hallmark(["agent", "list", "--output", "json"]).stdout.contains(silent.spiffeID)))

        // The steady node, past the same age, still holds its identity.
        #expect(try steady.workload(["svid", "fetch", "--output", "json"]).stdout.contains("spiffe://example.org/steady"))
        #expect(steady.log.contains("re-attested"))

        // Its GPU is tampered with: the next re-attestation's evidence withdraws gpu:rim:verified.
        FileManager.default.createFile(atPath: steadyGPU.tamperedFlag, contents: nil)
        let deadline = Date().addingTimeInterval(15)
        var facts = try selectors(server, steady)
        while facts.contains("gpu:rim:verified"), Date() < deadline {
            try await Task.sleep(for: .milliseconds(200))
            facts = try selectors(server, steady)
        }
        #expect(!facts.contains("gpu:rim:verified") && facts.contains("gpu:ueid:SIM0000000001"), "\(facts)")
    }
}
