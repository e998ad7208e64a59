// Revocation from local OCSP responses (made with openssl for the simulated GPU's chain): checked
// only when responses are given, and then every certificate must be reported good, by a signed,
// current response.

import Foundation
import HallmarkGPU
import HallmarkTestSupport
import SPIFFE
import Testing

@Suite("GPU revocation from local OCSP responses")
struct GPURevocationTests {
    @Test("good responses pass; a revoked leaf, a tampered response, or a missing one fail, each with the reason")
    func ocsp() async throws {
        let dir = try TemporaryDirectory("gpu-ocsp")
        let state = try GPUSimulator.create(in: dir.path("sim"))
        let nonce = (0..<32).map { _ in UInt8.random(in: 0...255) }
        let evidence = try GPUSimulator.evidence(state, nonce: nonce)
        let report = try SPDMReport(bytes: evidence.report)
        let chain = try X509SVID.certificates(pem: evidence.chainPEM)
        let verifier = GPUVerifier(deviceRoot: try X509SVID.certificates(pem: try String(contentsOfFile: state.deviceRoot, encoding: .utf8))[0])
        func revocation(_ responses: [[UInt8]]) async -> GPUCheck? {
            await verifier.verify(report: report, chain: chain, nonce: nonce, ocsp: responses, at: Date()).check("revocation")
        }

        #expect(await revocation([])?.outcome == .notChecked)
        let good = try GPUSimulator.ocspResponses(state)
        let passed = await revocation(good)
        #expect(passed?.outcome == .passed, "\(passed?.detail ?? "")")
        #expect(passed?.detail.contains("2 certificates") == true)

        let revoked = await revocation(try GPUSimulator.ocspResponses(state, revokeLeaf: true))
        #expect(revoked?.outcome == .failed && revoked?.detail.contains("GH100 A01 GSP FMC LF") == true && revoked?.detail.contains("revoked") == true, "\(revoked?.detail ?? "")")

        // producedAt (the first GeneralizedTime, tag 0x18 length 15) one second later: still well-formed, no longer signed.
        var tampered = good
        let time = try #require((0..<(tampered[0].count - 1)).first { tampered[0][$0] == 0x18 && tampered[0][$0 + 1] == 0x0F })
        tampered[0][time + 15] = tampered[0][time + 15] == UInt8(ascii: "9") ? UInt8(ascii: "8") : tampered[0][time + 15] + 1
        let forged = await revocation(tampered)
        #expect(forged?.outcome == .failed && forged?.detail.contains("not signed by its issuer") == true, "\(forged?.detail ?? "")")

        let missing = await revocation([good[1]])
        #expect(missing?.outcome == .failed && missing?.detail.contains("no response covers") == true, "\(missing?.detail ?? "")")

        let stale = await verifier.verify(report: report, chain: chain, nonce: nonce, ocsp: good, at: Date().addingTimeInterval(3 * 86400)).check("revocation")
        #expect(stale?.outcome == .failed && stale?.detail.contains("not current") == true, "\(stale?.detail ?? "")")
    }
}
