// The benchmark builds and a tiny run (`--quick`: a few entries, agents and clients) completes
// with every figure against real server, agent and cfssl processes. The figures themselves are
// for scripts/bench, never asserted here.

import Foundation
import HallmarkTestSupport
import Testing

@Suite("benchmark smoke run")
struct BenchSmokeTests {
    static let names = [
        "p256.sign", "p256.verify", "crypto.limit", "x509svid.sign", "x509svid.sign / crypto.limit",
        "agentapi.batch.svids_per_cpu_second", "agentapi.batch.svids_per_second",
        "cfssl.sign.svids_per_cpu_second", "cfssl.sign.svids_per_second", "agentapi.batch / cfssl, per server core",
        "propagation p50", "propagation p99", "workloadapi.fetch_x509 p50", "workloadapi.fetch_x509 p99", "workloadapi.refused_call p50", "workloadapi.fetch_x509 p50, 1 call/s each", "agent.rss_per_svid",
        "scale.fill", "scale.server_ready", "scale.index_loaded", "scale.authorised_entries p99", "scale.server_rss",
    ]

    @Test("a tiny run writes every figure, each with a value and, where there is a target, a verdict")
    func tiny() throws {
        let dir = try TemporaryDirectory("bench")
        let binary = (Run.hallmarkBinary as NSString).deletingLastPathComponent + "/hallmark-bench"
        let result = try Run.process(binary, ["--quick", "--seconds", "0.05", "--output", dir.path("bench.json")], timeout: 300)
        #expect(result.status == 0, "\(result.stderr)")
        let object = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir.path("bench.json")))) as? [String: Any]
        let figures = object?["figures"] as? [[String: Any]] ?? []
        #expect(figures.compactMap { $0["name"] as? String } == Self.names)
        for figure in figures {
            #expect(figure["value"] as? Double != nil, "\(figure)")
            if let target = figure["target"] as? String, !target.isEmpty { #expect(figure["met"] as? Bool != nil, "\(figure)") }
        }
    }
}
