// `hallmark attest gpu` on NVIDIA's real evidence: exit 0 only when every check asked for passed.

import Foundation
import HallmarkTestSupport
import Testing

@Suite("hallmark attest gpu")
struct AttestGPUCommandTests {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/nvidia").path

    static func arguments(nonce: String = "4cff7f5380ead8fad8ec2c531c110aca4302a88f603792801a8ca29ee151af2e", at: String, rims: Bool = true) -> [String] {
        let f = fixtures
        var arguments = [
            "attest", "gpu", "--report", "\(f)/hopper-2023/attestationReport.txt", "--chain", "\(f)/hopper-2023/gpuAkCertChain.txt",
            "--root", "\(f)/verifier_device_root.pem", "--nonce", nonce, "--at", at, "--output", "json",
        ]
        if rims {
            arguments += [
                "--rim", "\(f)/hopper-2023/Driver_RIM_test_no_gpu.swidtag", "--rim", "\(f)/hopper-2023/1010_0200_882_96005E0001_test_no_gpu.swidtag",
                "--rim-root", "\(f)/verifier_RIM_root.pem",
            ]
        }
        return arguments
    }

    static func outcomes(_ json: String) throws -> [String: String] {
        let object = try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any]
        let checks = object?["checks"] as? [[String: Any]] ?? []
        return Dictionary(uniqueKeysWithValues: checks.map { ($0["name"] as? String ?? "", $0["outcome"] as? String ?? "") })
    }

    @Test("inside the RIMs' validity every asked check passes and it exits 0; today it exits 1 naming the RIM signatures")
    func exitCodes() throws {
        let inside = try Run.process(Run.hallmarkBinary, Self.arguments(at: "2024-06-01T00:00:00Z"))
        #expect(inside.status == 0, "\(inside.stdout)\(inside.stderr)")
        let passed = try Self.outcomes(inside.stdout)
        #expect(passed["rim.measurements"] == "passed" && passed["signature"] == "passed" && passed["revocation"] == "not-checked")
        let today = try Run.process(Run.hallmarkBinary, Self.arguments(at: "2026-12-02T00:00:00Z"))
        #expect(today.status == 1)
        #expect(try Self.outcomes(today.stdout)["rim.Driver_RIM_test_no_gpu.swidtag.signature"] == "failed")
        let wrongNonce = try Run.process(Run.hallmarkBinary, Self.arguments(nonce: String(repeating: "00", count: 32), at: "2024-06-01T00:00:00Z", rims: false))
        let wrongOutcomes = try Self.outcomes(wrongNonce.stdout)
        #expect(wrongNonce.status == 1 && wrongOutcomes["nonce"] == "failed")
        let badNonce = try Run.process(Run.hallmarkBinary, Self.arguments(nonce: "xyz", at: "2024-06-01T00:00:00Z", rims: false))
        #expect(badNonce.status != 0 && badNonce.stderr.contains("--nonce"))
    }

    @Test("a forged RIM (re-signed with a key it carries itself) makes attest gpu exit 1, naming the rule")
    func forgedRIM() throws {
        let dir = try TemporaryDirectory("attest-forged-rim")
        let original = try String(contentsOfFile: "\(Self.fixtures)/hopper-2023/Driver_RIM_test_no_gpu.swidtag", encoding: .utf8)
        let forged = try RIMForgery.rsaKeyValue.forge(original, in: dir.path("forged"))
        let arguments = Self.arguments(at: "2024-06-01T00:00:00Z").map { $0.hasSuffix("Driver_RIM_test_no_gpu.swidtag") ? forged : $0 }
        #expect(arguments.contains(forged))
        let result = try Run.process(Run.hallmarkBinary, arguments)
        #expect(result.status == 1, "\(result.stdout)")
        let object = try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any]
        let check = (object?["checks"] as? [[String: Any]] ?? []).first { $0["name"] as? String == "rim.rsaKeyValue.swidtag.signature" }
        #expect(check?["outcome"] as? String == "failed")
        #expect((check?["detail"] as? String)?.contains("KeyInfo may carry only X509Data") == true, "\(String(describing: check))")
    }
}

