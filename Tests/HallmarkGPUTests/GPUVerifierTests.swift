// NVIDIA Hopper evidence, verified as it came from the GPU and NVIDIA: the 2023 report with its
// chain and RIMs, at a time inside the RIMs' validity (injected), today, and with bits flipped.

import Foundation
import HallmarkGPU
import HallmarkTestSupport
import SPIFFE
import Testing
import X509

enum NVIDIAFixtures {
    static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/nvidia")

    static func path(_ name: String) -> String { directory.appendingPathComponent(name).path }
    static func text(_ name: String) throws -> String { try String(contentsOfFile: path(name), encoding: .utf8) }
    static func bytes(_ name: String) throws -> [UInt8] { Array(try Data(contentsOf: directory.appendingPathComponent(name))) }

    static let nonce = hex("4cff7f5380ead8fad8ec2c531c110aca4302a88f603792801a8ca29ee151af2e")
    /// Inside the RIM certificates' validity (2023-06-27 … 2025-06-22).
    static let inside = Date(timeIntervalSince1970: 1_717_200_000)  // 2024-06-01T00:00:00Z

    static func hex(_ text: String) -> [UInt8] {
        stride(from: 0, to: text.count, by: 2).map { UInt8(String(Array(text)[$0..<$0 + 2]), radix: 16)! }
    }

    static func report() throws -> SPDMReport { try SPDMReport(hex: try text("hopper-2023/attestationReport.txt")) }
    static func chain() throws -> [Certificate] { try X509SVID.certificates(pem: try text("hopper-2023/gpuAkCertChain.txt")) }
    static func verifier() throws -> GPUVerifier {
        GPUVerifier(
            deviceRoot: try X509SVID.certificates(pem: try text("verifier_device_root.pem"))[0],
            rimRootPEM: try text("verifier_RIM_root.pem")
        )
    }
    static func rims() throws -> [(name: String, xml: [UInt8])] {
        [
            ("driver", try bytes("hopper-2023/Driver_RIM_test_no_gpu.swidtag")),
            ("vbios", try bytes("hopper-2023/1010_0200_882_96005E0001_test_no_gpu.swidtag")),
        ]
    }
}

@Suite("NVIDIA Hopper evidence")
struct GPUVerifierTests {
    @Test("the 2023 report, its chain and both RIMs verify fully inside the RIMs' validity")
    func verifiesFully() async throws {
        let report = try NVIDIAFixtures.report()
        #expect(report.bytes.count == 4049)
        #expect(report.blocks.count == 64)
        let result = await try NVIDIAFixtures.verifier().verify(
            report: report, chain: try NVIDIAFixtures.chain(), nonce: NVIDIAFixtures.nonce, rims: try NVIDIAFixtures.rims(), at: NVIDIAFixtures.inside
        )
        for name in ["nonce", "signature", "certificate-chain", "rim.driver.signature", "rim.driver.version", "rim.vbios.signature", "rim.vbios.version", "rim.measurements"] {
            #expect(result.check(name)?.outcome == .passed, "\(name): \(result.check(name)?.detail ?? "missing")")
        }
        #expect(result.check("revocation")?.outcome == .notChecked, "revocation is never reported as passed")
        #expect(result.check("fwid")?.outcome == .notChecked, "this report carries no FWID")
        #expect(result.passed && result.rimVerified)
        let claims = try #require(result.claims)
        #expect(claims.driverVersion == "545.00")
        #expect(claims.vbiosVersion == "96.00.5E.00.01")
        #expect(claims.model == "GH100")
        #expect(claims.ueid == "41FFEEB20009E0BE49")
        #expect(claims.project == "1010" && claims.projectSKU == "0200" && claims.chipSKU == "882")
        #expect(result.check("rim.measurements")?.detail.contains("33 active golden measurements") == true, "\(result.check("rim.measurements")?.detail ?? "")")
    }

    @Test("today the RIM certificates have expired, and the result says so")
    func expiredRIMs() async throws {
        let today = Date(timeIntervalSince1970: 1_796_169_600)  // 2026-12-02
        let result = await try NVIDIAFixtures.verifier().verify(
            report: try NVIDIAFixtures.report(), chain: try NVIDIAFixtures.chain(), nonce: NVIDIAFixtures.nonce, rims: try NVIDIAFixtures.rims(), at: today
        )
        #expect(result.check("rim.driver.signature")?.outcome == .failed)
        #expect(result.check("rim.driver.signature")?.detail.contains("verification time") == true)
        #expect(result.check("rim.measurements")?.outcome == .notChecked)
        #expect(!result.passed && !result.rimVerified)
    }

    @Test("one bit flipped anywhere in the signed range never verifies")
    func bitFlips() async throws {
        let original = try NVIDIAFixtures.report()
        let chain = try NVIDIAFixtures.chain()
        let verifier = try NVIDIAFixtures.verifier()
        var signatureFailures = 0
        for index in stride(from: 0, to: original.signedBytes.count, by: 7) {
            var bytes = original.bytes
            bytes[index] ^= 0x01
            guard let flipped = try? SPDMReport(bytes: bytes) else { continue }  // a length or code byte: refused when parsed
            let result = await verifier.verify(report: flipped, chain: chain, nonce: flipped.requestNonce, at: NVIDIAFixtures.inside)
            #expect(result.check("signature")?.outcome == .failed, "byte \(index) flipped still verifies")
            #expect(!result.passed)
            signatureFailures += 1
        }
        #expect(signatureFailures > 500, "most flips parse, and fail on the signature")
        var truncated = original.bytes
        truncated.removeLast()
        let error = #expect(throws: GPUEvidenceError.self) { try SPDMReport(bytes: truncated) }
        #expect(error?.message.contains("signature") == true && error?.message.contains("truncated") == true)
        #expect(error?.code == .malformed)
    }

    @Test("a wrong nonce fails on the nonce; a chain ending in another root fails on the chain")
    func nonceAndRoot() async throws {
        let report = try NVIDIAFixtures.report()
        let chain = try NVIDIAFixtures.chain()
        var nonce = NVIDIAFixtures.nonce
        nonce[0] ^= 0xff
        let wrongNonce = await try NVIDIAFixtures.verifier().verify(report: report, chain: chain, nonce: nonce, at: NVIDIAFixtures.inside)
        #expect(wrongNonce.check("nonce")?.outcome == .failed && wrongNonce.check("signature")?.outcome == .passed)
        #expect(!wrongNonce.passed)
        let otherRoot = GPUVerifier(deviceRoot: try X509SVID.certificates(pem: try NVIDIAFixtures.text("verifier_RIM_root.pem"))[0])
        let foreign = await otherRoot.verify(report: report, chain: chain, nonce: NVIDIAFixtures.nonce, at: NVIDIAFixtures.inside)
        #expect(foreign.check("certificate-chain")?.outcome == .failed)
        #expect(foreign.check("certificate-chain")?.detail.contains("NVIDIA CoRIM signing Root CA") == true)
        // The device's own copy of the root is not needed: the pinned root is the anchor.
        let withoutCopy = await try NVIDIAFixtures.verifier().verify(report: report, chain: Array(chain.dropLast()), nonce: NVIDIAFixtures.nonce, at: NVIDIAFixtures.inside)
        #expect(withoutCopy.check("certificate-chain")?.outcome == .passed)
    }

    @Test("a RIM with one byte changed fails on its XML signature; one active in both RIMs is an error")
    func tamperedRIM() async throws {
        var rims = try NVIDIAFixtures.rims()
        let text = String(decoding: rims[0].xml, as: UTF8.self)
        let changed = text.replacingOccurrences(of: "colloquialVersion=\"545.00\"", with: "colloquialVersion=\"545.01\"")
        #expect(changed != text)
        rims[0].xml = Array(changed.utf8)
        let result = await try NVIDIAFixtures.verifier().verify(
            report: try NVIDIAFixtures.report(), chain: try NVIDIAFixtures.chain(), nonce: NVIDIAFixtures.nonce, rims: rims, at: NVIDIAFixtures.inside
        )
        #expect(result.check("rim.driver.signature")?.outcome == .failed)
        #expect(result.check("rim.driver.signature")?.detail.contains("does not match the document") == true, "\(result.check("rim.driver.signature")?.detail ?? "")")
        #expect(result.check("rim.vbios.signature")?.outcome == .passed)
        #expect(!result.rimVerified)

        let twice = try [NVIDIAFixtures.rims()[1], (name: "vbios-again", xml: NVIDIAFixtures.rims()[1].xml)]
        let duplicate = await try NVIDIAFixtures.verifier().verify(
            report: try NVIDIAFixtures.report(), chain: try NVIDIAFixtures.chain(), nonce: NVIDIAFixtures.nonce, rims: twice, at: NVIDIAFixtures.inside
        )
        #expect(duplicate.check("rim.measurements")?.detail.contains("active in both") == true)
        #expect(!duplicate.passed)
    }

    @Test("the production RIMs parse and their signatures verify; xmlsec1 agrees", arguments: [
        "rims/1010_0200_882_96005E0001_PROD.swidtag", "rims/g520_0202_885_96006D0008_PROD.swidtag",
        "hopper-2023/Driver_RIM_test_no_gpu.swidtag",
    ])
    func productionRIMs(_ name: String) async throws {
        let verifier = try NVIDIAFixtures.verifier()
        let report = try NVIDIAFixtures.report()
        let result = await verifier.verify(
            report: report, chain: try NVIDIAFixtures.chain(), nonce: NVIDIAFixtures.nonce, rims: [(name: "r", xml: try NVIDIAFixtures.bytes(name))],
            at: Date(timeIntervalSince1970: 1_725_000_000)  // 2024-08-30, inside every RIM's validity
        )
        #expect(result.check("rim.r.signature")?.outcome == .passed, "\(result.check("rim.r.signature")?.detail ?? "")")
        #expect(result.check("rim.r.parse") == nil)
        let witness = try Run.process("/usr/bin/xmlsec1", [
            "--verify", "--enabled-key-data", "x509", "--trusted-pem", NVIDIAFixtures.path("verifier_RIM_root.pem"),
            "--verification-time", "2024-08-30+00:00:00", NVIDIAFixtures.path(name),
        ])
        #expect(witness.status == 0, "\(witness.stderr)")
    }

    /// What each forgery must be refused for.
    static let forgeryRules: [RIMForgery: String] = [
        .rsaKeyValue: "KeyInfo may carry only X509Data", .ecKeyValue: "KeyInfo may carry only X509Data",
        .selfMadeChain: "chains to the pinned root", .twoReferences: "exactly one Reference", .extraTransform: "may add only C14N 1.1",
    ]

    @Test("a RIM re-signed with the attacker's own key is refused, naming the rule; xmlsec1 with X.509 keys only agrees", arguments: RIMForgery.allCases)
    func forgedRIM(_ forgery: RIMForgery) async throws {
        let dir = try TemporaryDirectory("rim-forgery")
        let original = try NVIDIAFixtures.text("hopper-2023/Driver_RIM_test_no_gpu.swidtag")
        let path = try forgery.forge(original, in: dir.path("forged"))
        let forged = Array(try Data(contentsOf: URL(fileURLWithPath: path)))
        #expect(String(decoding: forged, as: UTF8.self).contains(RIMForgery.forgedMeasurement))
        var rims = try NVIDIAFixtures.rims()
        rims[0].xml = forged
        let result = await try NVIDIAFixtures.verifier().verify(
            report: try NVIDIAFixtures.report(), chain: try NVIDIAFixtures.chain(), nonce: NVIDIAFixtures.nonce, rims: rims, at: NVIDIAFixtures.inside
        )
        let check = try #require(result.check("rim.driver.signature"))
        #expect(check.outcome == .failed)
        #expect(check.detail.contains(try #require(Self.forgeryRules[forgery])), "\(check.detail)")
        #expect(result.check("rim.measurements")?.outcome == .notChecked && !result.rimVerified)
        // The attacker's own view: the document verifies with the key it carries.
        if forgery == .rsaKeyValue {
            let selfConsistent = try Run.process("/usr/bin/xmlsec1", ["--verify", path])
            #expect(selfConsistent.status == 0, "the forgery is a well-made signature: \(selfConsistent.stderr)")
        }
        let witness = try Run.process("/usr/bin/xmlsec1", [
            "--verify", "--enabled-key-data", "x509", "--trusted-pem", NVIDIAFixtures.path("verifier_RIM_root.pem"),
            "--verification-time", "2024-06-01+00:00:00", path,
        ])
        #expect(witness.status != 0, "xmlsec1 refuses it too")
    }

    @Test("the signature must be NVIDIA's shape: one, enveloped, on the root element")
    func signatureShape() async throws {
        let original = try NVIDIAFixtures.text("hopper-2023/Driver_RIM_test_no_gpu.swidtag")
        let signature = try #require(original.range(of: "<ds:Signature")).lowerBound..<(try #require(original.range(of: "</ds:Signature>")).upperBound)
        let element = String(original[signature])
        // The same signature moved into the Payload, and a second copy beside it.
        let moved = original.replacingCharacters(in: signature, with: "").replacingOccurrences(of: "</ns0:Payload>", with: element + "</ns0:Payload>")
        let doubled = original.replacingCharacters(in: signature, with: element + element)
        for (document, rule) in [(moved, "child of the document's root element"), (doubled, "exactly one Signature")] {
            #expect(document != original)
            var rims = try NVIDIAFixtures.rims()
            rims[0].xml = Array(document.utf8)
            let result = await try NVIDIAFixtures.verifier().verify(
                report: try NVIDIAFixtures.report(), chain: try NVIDIAFixtures.chain(), nonce: NVIDIAFixtures.nonce, rims: rims, at: NVIDIAFixtures.inside
            )
            #expect(result.check("rim.driver.signature")?.detail.contains(rule) == true, "\(result.check("rim.driver.signature")?.detail ?? "")")
        }
    }

    @Test("the UEID comes from the verified path: another GPU's certificate slipped in at position 1 is refused")
    func ueidFromVerifiedPath() async throws {
        let dir = try TemporaryDirectory("gpu-other")
        let other = try GPUSimulator.create(in: dir.path("other"))
        let otherIdentity = try X509SVID.certificates(pem: try String(contentsOfFile: "\(other.dir)/device-id.pem", encoding: .utf8))[0]
        var chain = try NVIDIAFixtures.chain()
        chain.insert(otherIdentity, at: 1)
        let result = await try NVIDIAFixtures.verifier().verify(report: try NVIDIAFixtures.report(), chain: chain, nonce: NVIDIAFixtures.nonce, at: NVIDIAFixtures.inside)
        let check = try #require(result.check("certificate-chain"))
        #expect(check.outcome == .failed && check.detail.contains("not on the verified path") && check.detail.contains("SIM0000000001"), "\(check.detail)")
        #expect(result.claims == nil && !result.passed, "no claim is made from a chain that carries another device's certificate")

        // The same certificates in another order: the path decides, not the positions.
        let genuine = try NVIDIAFixtures.chain()
        let shuffled = [genuine[0]] + genuine.dropFirst().dropLast().reversed()
        let reordered = await try NVIDIAFixtures.verifier().verify(report: try NVIDIAFixtures.report(), chain: shuffled, nonce: NVIDIAFixtures.nonce, at: NVIDIAFixtures.inside)
        #expect(reordered.check("certificate-chain")?.outcome == .passed, "\(reordered.check("certificate-chain")?.detail ?? "")")
        #expect(reordered.claims?.ueid == "41FFEEB20009E0BE49")
    }
}

