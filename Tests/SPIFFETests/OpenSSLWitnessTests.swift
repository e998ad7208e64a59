// An independent witness: the chains these tests mint are also judged by `openssl verify`, so a
// test PKI that our verifier accepts but the rest of the world would not is caught.

import Foundation
import Testing
import X509
import SPIFFE
import HallmarkTestSupport

@Suite("openssl as a witness")
struct OpenSSLWitnessTests {
    private func openssl(root: TestCA, chain: [Certificate], at time: Date = TestClock.now) throws -> ProcessResult {
        guard let openssl = Run.which("openssl") else {
            Issue.record("openssl is not installed; scripts/test installs it")
            return ProcessResult(status: -1, stdout: "", stderr: "")
        }
        let dir = try TemporaryDirectory("openssl-witness")
        let rootFile = try dir.write("root.pem", TestPEM.pem([root.certificate]))
        let leafFile = try dir.write("leaf.pem", TestPEM.pem([chain[0]]))
        var arguments = ["verify", "-x509_strict", "-purpose", "sslclient", "-attime", String(Int(time.timeIntervalSince1970)), "-CAfile", rootFile]
        if chain.count > 1 {
            arguments += ["-untrusted", try dir.write("untrusted.pem", TestPEM.pem(Array(chain.dropFirst())))]
        }
        return try Run.process(openssl, arguments + [leafFile])
    }

    @Test("a leaf-intermediate-root chain satisfies both verifiers")
    func validChain() async throws {
        let root = try TestCA.root()
        let intermediate = try root.intermediate()
        let leaf = try intermediate.leaf().certificate
        let result = try openssl(root: root, chain: [leaf, intermediate.certificate])
        #expect(result.status == 0, "openssl: \(result.stdout) \(result.stderr)")
        let ours = try await X509SVIDVerifier(bundles: X509Bundle(trustDomain: try TrustDomain("example.org"), authorities: [root.certificate]))
            .verify([leaf, intermediate.certificate], at: TestClock.now)
        #expect(ours.id.description == "spiffe://example.org/workload")
    }

    @Test("a chain to a foreign root fails both verifiers")
    func foreignRoot() throws {
        let root = try TestCA.root()
        let foreign = try TestCA.root(.init(name: "Foreign Root"))
        let leaf = try foreign.leaf().certificate
        let result = try openssl(root: root, chain: [leaf])
        #expect(result.status != 0)
    }

    @Test("an expired leaf fails both verifiers")
    func expired() throws {
        let root = try TestCA.root()
        let leaf = try root.leaf().certificate
        let result = try openssl(root: root, chain: [leaf], at: TestClock.now.addingTimeInterval(7200))
        #expect(result.status != 0)
        #expect((result.stdout + result.stderr).contains("expired"))
    }

    @Test("an intermediate without CA=true fails both verifiers")
    func intermediateNotCA() throws {
        let root = try TestCA.root()
        var options = TestCA.Options(name: "Not A CA")
        options.isCA = false
        let intermediate = try root.intermediate(options)
        let leaf = try intermediate.leaf().certificate
        let result = try openssl(root: root, chain: [leaf, intermediate.certificate])
        #expect(result.status != 0)
    }
}
