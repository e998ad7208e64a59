// `hallmark svid verify` run as a process on good and bad files.

import Foundation
import Testing
import SPIFFE
import HallmarkTestSupport

@Suite("hallmark svid verify")
struct SVIDVerifyCommandTests {
    let dir: TemporaryDirectory
    let root: TestCA
    let rootFile: String
    let chainFile: String
    let at = "2026-06-01T12:00:00Z"

    init() throws {
        dir = try TemporaryDirectory("svid-verify")
        root = try TestCA.root()
        let intermediate = try root.intermediate()
        let leaf = try intermediate.leaf(.init(id: "spiffe://example.org/model/llama")).certificate
        rootFile = try dir.write("root.pem", TestPEM.pem([root.certificate]))
        chainFile = try dir.write("chain.pem", TestPEM.pem([leaf, intermediate.certificate]))
    }

    private func hallmark(_ arguments: [String]) throws -> ProcessResult {
        try Run.process(Run.hallmarkBinary, arguments)
    }

    @Test("a valid chain prints its SPIFFE ID and exits 0")
    func valid() throws {
        let result = try hallmark(["svid", "verify", "--bundle", rootFile, "--chain", chainFile, "--at", at])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stdout == "spiffe://example.org/model/llama\n")
    }

    @Test("JSON output carries the ID, the chain's subjects and the expiry")
    func json() throws {
        let result = try hallmark(["svid", "verify", "--bundle", rootFile, "--chain", chainFile, "--at", at, "--output", "json"])
        #expect(result.status == 0, "\(result.stderr)")
        let object = try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any]
        #expect(object?["spiffe_id"] as? String == "spiffe://example.org/model/llama")
        #expect(object?["valid"] as? Bool == true)
        let chain = object?["chain"] as? [[String: Any]]
        #expect(chain?.count == 3)
        #expect((chain?[1]["subject"] as? String)?.contains("Hallmark Test Intermediate") == true)
        #expect(object?["expires_at"] as? String == "2026-06-01T13:00:00Z")
    }

    @Test("a SPIFFE bundle (JWKS) works as the bundle file")
    func jwksBundle() throws {
        let bundle = SPIFFEBundle(trustDomain: try TrustDomain("example.org"), x509Authorities: [root.certificate], sequenceNumber: 1)
        let file = try dir.write("bundle.json", String(decoding: try bundle.json(), as: UTF8.self))
        let result = try hallmark(["svid", "verify", "--bundle", file, "--chain", chainFile, "--at", at, "--trust-domain", "example.org"])
        #expect(result.status == 0, "\(result.stderr)")
    }

    @Test("--id that does not match is refused with both IDs named")
    func wrongID() throws {
        let result = try hallmark(["svid", "verify", "--bundle", rootFile, "--chain", chainFile, "--at", at, "--id", "spiffe://example.org/other"])
        #expect(result.status == 1)
        #expect(result.stderr.contains("spiffe://example.org/model/llama is not authorised"))
        #expect(result.stderr.contains("spiffe://example.org/other"))
    }

    @Test("--trust-domain of another trust domain is refused")
    func wrongTrustDomain() throws {
        let result = try hallmark(["svid", "verify", "--bundle", rootFile, "--chain", chainFile, "--at", at, "--trust-domain", "other.org"])
        #expect(result.status == 1)
        #expect(result.stderr.contains("no X.509 bundle for trust domain example.org (this one is other.org's)"))
    }

    @Test("an expired chain is refused and says so, in JSON too")
    func expired() throws {
        let text = try hallmark(["svid", "verify", "--bundle", rootFile, "--chain", chainFile, "--at", "2026-06-02T12:00:00Z"])
        #expect(text.status == 1)
        #expect(text.stderr.contains("expired at 2026-06-01T13:00:00Z"))
        let json = try hallmark(["svid", "verify", "--bundle", rootFile, "--chain", chainFile, "--at", "2026-06-02T12:00:00Z", "--output", "json"])
        #expect(json.status == 1)
        let object = try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any]
        #expect(object?["valid"] as? Bool == false)
        #expect((object?["error"] as? [String: Any])?["code"] as? String == "certificateExpired")
    }

    @Test("a bundle of another root is refused")
    func foreignBundle() throws {
        let foreign = try dir.write("foreign.pem", TestPEM.pem([try TestCA.root(.init(name: "Foreign")).certificate]))
        let result = try hallmark(["svid", "verify", "--bundle", foreign, "--chain", chainFile, "--at", at])
        #expect(result.status == 1)
        #expect(result.stderr.contains("does not verify to the bundle of example.org"))
    }

    @Test("a chain file that is not PEM is refused, naming the file")
    func garbageChain() throws {
        let garbage = try dir.write("garbage.pem", "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
        let result = try hallmark(["svid", "verify", "--bundle", rootFile, "--chain", garbage, "--at", at])
        #expect(result.status == 1)
        #expect(result.stderr.contains("--chain \(garbage)"))
    }

    @Test("a missing file exits 2 and names it")
    func missingFile() throws {
        let result = try hallmark(["svid", "verify", "--bundle", dir.path("nope.pem"), "--chain", chainFile])
        #expect(result.status == 2)
        #expect(result.stderr.contains("--bundle") && result.stderr.contains("nope.pem"))
    }

    @Test("a bad --at and a bad --id are usage errors that name the flag")
    func badFlags() throws {
        let at = try hallmark(["svid", "verify", "--bundle", rootFile, "--chain", chainFile, "--at", "yesterday"])
        #expect(at.status != 0)
        #expect(at.stderr.contains("--at"))
        let id = try hallmark(["svid", "verify", "--bundle", rootFile, "--chain", chainFile, "--id", "spiffe://Example.org/a/../b"])
        #expect(id.status != 0)
        #expect(id.stderr.contains("--id") && id.stderr.contains("'.' or '..'"))
    }

    @Test("--help and --version")
    func helpAndVersion() throws {
        let help = try hallmark(["--help"])
        #expect(help.status == 0)
        #expect(help.stdout.contains("svid"))
        let version = try hallmark(["--version"])
        #expect(version.status == 0)
        #expect(version.stdout.split(separator: ".").count == 3)
    }
}
