// The benchmark builds and a tiny run completes with every figure (the figures themselves are
// for scripts/bench, never asserted here).

import Foundation
import HallmarkTestSupport
import Testing

@Suite("benchmark smoke run")
struct BenchSmokeTests {
    @Test("a tiny run writes every figure")
    func tiny() throws {
        let dir = try TemporaryDirectory("bench")
        let binary = (Run.hallmarkBinary as NSString).deletingLastPathComponent + "/hallmark-bench"
        let result = try Run.process(binary, ["--seconds", "0.05", "--output", dir.path("bench.json")])
        #expect(result.status == 0, "\(result.stderr)")
        let object = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir.path("bench.json")))) as? [String: Any]
        let names = (object?["figures"] as? [[String: Any]] ?? []).compactMap { $0["name"] as? String }
        #expect(names == ["p256.sign", "p256.verify", "crypto.limit", "x509svid.sign", "x509svid.sign / crypto.limit"])
    }
}
