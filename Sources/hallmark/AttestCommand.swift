// `hallmark attest gpu`: verifies NVIDIA Hopper attestation evidence offline, check by check.

import ArgumentParser
import Foundation
import HallmarkAttestation
import HallmarkGPU
import SPIFFE
import X509

struct AttestCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "attest", abstract: "Verify attestation evidence offline.", subcommands: [GPU.self])

    struct GPU: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "gpu",
            abstract: "Verify an NVIDIA Hopper GPU's SPDM evidence, its certificate chain and, given RIMs, its golden measurements.",
            discussion: "Exits 0 only when every check that was asked for passed. Revocation needs NVIDIA's OCSP service: give its responses with --ocsp, or it is reported as not checked."
        )

        @Option(help: "The SPDM GET_MEASUREMENTS request and response, as hex text (or raw bytes).")
        var report: String
        @Option(help: "The GPU's certificate chain, PEM, leaf first.")
        var chain: String
        @Option(help: "The pinned device identity root (PEM); the chain's own copy of the root is not trusted.")
        var root: String
        @Option(help: "The nonce the request must carry, hex.")
        var nonce: String
        @Option(help: "A reference integrity manifest (SWID tag) to check the measurements against; repeatable.")
        var rim: [String] = []
        @Option(name: .customLong("rim-root"), help: "The pinned root of RIM signing certificates (PEM).")
        var rimRoot: String?
        @Option(help: "A DER OCSP response for the chain's certificates, fetched elsewhere; repeatable (without: revocation is not checked).")
        var ocsp: [String] = []
        @Option(help: "The verification time, RFC 3339 (default: now).")
        var at: String?
        @Option var output: OutputFormat = .text

        func validate() throws {
            guard rim.isEmpty || rimRoot != nil else { throw ValidationError("--rim needs --rim-root (the pinned root of RIM signing certificates)") }
        }

        func run() async throws {
            let time = try at.map { try Date(rfc3339: $0, flag: "--at") } ?? Date()
            guard let expected = Hex.decode(nonce), expected.count == 32 else { throw ValidationError("--nonce: expected 64 hex digits (32 bytes)") }
            let evidence = try Self.read(report, "--report")
            let parsed: SPDMReport
            do {
                if let text = String(data: Data(evidence), encoding: .utf8), text.allSatisfy({ $0.isHexDigit || $0.isWhitespace }) {
                    parsed = try SPDMReport(hex: text)
                } else {
                    parsed = try SPDMReport(bytes: evidence)
                }
            } catch let error as GPUEvidenceError {
                throw CLIOutput.fail("attest gpu: --report: \(error.message)")
            }
            let chainCertificates = try Self.certificates(chain, "--chain")
            guard let pinned = try Self.certificates(root, "--root").first else { throw CLIOutput.fail("attest gpu: --root holds no certificate") }
            let rimRootPEM = try rimRoot.map { String(decoding: try Self.read($0, "--rim-root"), as: UTF8.self) }
            let rims = try rim.map { path in (name: (path as NSString).lastPathComponent, xml: try Self.read(path, "--rim")) }
            let result = await GPUVerifier(deviceRoot: pinned, rimRootPEM: rimRootPEM).verify(
                report: parsed, chain: chainCertificates, nonce: expected, rims: rims, ocsp: try ocsp.map { try Self.read($0, "--ocsp") }, at: time
            )
            if output == .json {
                print(try CLIOutput.json(result))
            } else {
                for check in result.checks {
                    print("\(check.outcome.rawValue.padding(toLength: 11, withPad: " ", startingAt: 0)) \(check.name)\(check.detail.isEmpty ? "" : ": \(check.detail)")")
                }
                if let claims = result.claims {
                    print("model \(claims.model), ueid \(claims.ueid), driver \(claims.driverVersion), vbios \(claims.vbiosVersion)")
                }
                print(result.passed ? "verified" : "NOT verified")
            }
            if !result.passed { throw ExitCode(1) }
        }

        static func read(_ path: String, _ flag: String) throws -> [UInt8] {
            guard let data = FileManager.default.contents(atPath: path) else { throw CLIOutput.fail("attest gpu: \(flag): cannot read \(path)") }
            return Array(data)
        }

        static func certificates(_ path: String, _ flag: String) throws -> [Certificate] {
            do { return try X509SVID.certificates(pem: String(decoding: try read(path, flag), as: UTF8.self)) } catch let error as SPIFFEError {
                throw CLIOutput.fail("attest gpu: \(flag): \(error.message)")
            }
        }
    }
}
