// `hallmark svid …`: X509-SVIDs as files.

import ArgumentParser
import Foundation
import SPIFFE
import X509

struct SVIDCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "svid",
        abstract: "Work with X509-SVIDs.",
        subcommands: [SVIDFetch.self, SVIDWatch.self, Verify.self]
    )

    struct Verify: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Verify an X509-SVID chain against a trust bundle, by the X509-SVID specification.",
            discussion: """
                Exits 0 and prints the SPIFFE ID when the chain is a valid X509-SVID; otherwise exits 1 and \
                says which rule failed. The bundle may be PEM certificates or a SPIFFE bundle (JWK Set); it \
                is taken as the bundle of --trust-domain, else of --id's trust domain, else of the leaf's.
                """
        )

        @Option(help: "The trust bundle: PEM CA certificates or a SPIFFE bundle (JSON).")
        var bundle: String

        @Option(help: "The chain: PEM certificates, leaf first.")
        var chain: String

        @Option(help: "Require this exact SPIFFE ID.")
        var id: String?

        @Option(name: .customLong("trust-domain"), help: "Require membership of this trust domain.")
        var trustDomain: String?

        @Option(help: "Validation time, RFC 3339 (default: now).")
        var at: String?

        @Option(help: "text or json.")
        var output: OutputFormat = .text

        func validate() throws {
            if id != nil && trustDomain != nil {
                throw ValidationError("--id and --trust-domain: give one or the other, not both")
            }
        }

        func run() async throws {
            let time = try at.map { try Date(rfc3339: $0, flag: "--at") } ?? Date()
            let expectedID = try parse("--id") { try id.map(SPIFFEID.init(parsing:)) }
            let expectedDomain = try parse("--trust-domain") { try trustDomain.map(TrustDomain.init) }

            let chainText = String(decoding: try CLIOutput.readFile(chain, flag: "--chain"), as: UTF8.self)
            let certificates: [Certificate]
            do {
                certificates = try X509SVID.certificates(pem: chainText)
                guard !certificates.isEmpty else { throw SPIFFEError(.emptyChain, "x509svid: the chain file holds no certificate") }
            } catch let error as SPIFFEError {
                throw ExitCode(report(error, prefix: "--chain \(chain)"))
            }

            // The bundle belongs to the trust domain the caller names, or else the leaf's own.
            let leafDomain = (try? leafTrustDomain(certificates[0])) ?? nil
            let domain = try expectedDomain ?? expectedID?.trustDomain ?? leafDomain ?? TrustDomain("unknown.invalid")
            let bundleBytes = try CLIOutput.readFile(bundle, flag: "--bundle")
            let x509Bundle: X509Bundle
            do {
                x509Bundle = try loadBundle(bundleBytes, trustDomain: domain)
            } catch let error as SPIFFEError {
                throw ExitCode(report(error, prefix: "--bundle \(bundle)"))
            }

            do {
                let verified = try await X509SVIDVerifier(bundles: x509Bundle).verify(certificates, at: time)
                if let expectedID {
                    try Authorizer.id(expectedID).authorize(verified.id)
                }
                if let expectedDomain {
                    try Authorizer.memberOf(expectedDomain).authorize(verified.id)
                }
                switch output {
                case .text:
                    print(verified.id)
                case .json:
                    print(try CLIOutput.json(VerifyReport(verified)))
                }
            } catch let error as SPIFFEError {
                throw ExitCode(report(error, prefix: nil))
            }
        }

        private func parse<T>(_ flag: String, _ body: () throws -> T) throws -> T {
            do {
                return try body()
            } catch let error as SPIFFEError {
                throw ValidationError("\(flag): \(error.message)")
            }
        }

        private func leafTrustDomain(_ leaf: Certificate) throws -> TrustDomain? {
            let names = try leaf.extensions.subjectAlternativeNames ?? SubjectAlternativeNames()
            for case .uniformResourceIdentifier(let uri) in names {
                return try SPIFFEID(parsing: uri).trustDomain
            }
            return nil
        }

        private func loadBundle(_ bytes: Data, trustDomain: TrustDomain) throws -> X509Bundle {
            let firstByte = bytes.first { ![0x20, 0x09, 0x0a, 0x0d].contains($0) }
            if firstByte == UInt8(ascii: "{") {
                return try SPIFFEBundle(trustDomain: trustDomain, json: bytes).x509Bundle
            }
            let bundle = try X509Bundle(trustDomain: trustDomain, pem: String(decoding: bytes, as: UTF8.self))
            guard !bundle.authorities.isEmpty else {
                throw SPIFFEError(.malformedBundle, "x509bundle: the file holds no CA certificate")
            }
            return bundle
        }

        private func report(_ error: SPIFFEError, prefix: String?) -> Int32 {
            let message = prefix.map { "\($0): \(error.message)" } ?? error.message
            if output == .json {
                print((try? CLIOutput.json(FailureReport(valid: false, error: .init(code: "\(error.code)", message: message)))) ?? "")
            } else {
                FileHandle.standardError.write(Data("hallmark: svid verify: \(message)\n".utf8))
            }
            return 1
        }
    }
}

private struct VerifyReport: Encodable {
    struct Link: Encodable {
        let subject: String
        let issuer: String
        let notBefore: Date
        let notAfter: Date

        enum CodingKeys: String, CodingKey {
            case subject, issuer
            case notBefore = "not_before"
            case notAfter = "not_after"
        }
    }

    let valid = true
    let spiffeID: String
    let expiresAt: Date
    let chain: [Link]

    init(_ verified: VerifiedX509SVID) {
        spiffeID = verified.id.description
        expiresAt = verified.chain.map(\.notValidAfter).min() ?? verified.chain[0].notValidAfter
        chain = verified.chain.map {
            Link(subject: "\($0.subject)", issuer: "\($0.issuer)", notBefore: $0.notValidBefore, notAfter: $0.notValidAfter)
        }
    }

    enum CodingKeys: String, CodingKey {
        case valid, chain
        case spiffeID = "spiffe_id"
        case expiresAt = "expires_at"
    }
}

private struct FailureReport: Encodable {
    struct Reason: Encodable {
        let code: String
        let message: String
    }

    let valid: Bool
    let error: Reason
}
