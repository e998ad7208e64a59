// Verifies NVIDIA Hopper attestation evidence offline and says, check by check, what passed,
// what failed and why, and what could not be checked. Nothing is reported as passed that was not
// checked: revocation needs NVIDIA's OCSP service and is "not checked" unless checked elsewhere.

public import Foundation
import Crypto
import HallmarkAttestation
import SPIFFE
import SwiftASN1
public import X509

/// The outcome of one check.
public struct GPUCheck: Hashable, Sendable, Encodable {
    public enum Outcome: String, Hashable, Sendable, Encodable { case passed, failed, notChecked = "not-checked" }

    /// The checks of the evidence itself, the same for every GPU. The RIMs' checks are named per
    /// RIM ("rim.NAME.signature", …) and "rim.measurements".
    public enum Name: String, Hashable, Sendable, CaseIterable {
        case nonce, signature, certificateChain = "certificate-chain", fwid, revocation, claims

        /// What attestation requires to hold whatever the RIMs say (they decide only gpu:rim:verified).
        public static let evidence: [Name] = [.nonce, .signature, .certificateChain, .fwid]
    }

    public let name: String
    public let outcome: Outcome
    public let detail: String

    static func passed(_ name: Name, _ detail: String = "") -> GPUCheck { passed(name.rawValue, detail) }
    static func failed(_ name: Name, _ detail: String) -> GPUCheck { failed(name.rawValue, detail) }
    static func notChecked(_ name: Name, _ detail: String) -> GPUCheck { notChecked(name.rawValue, detail) }
    static func passed(_ name: String, _ detail: String = "") -> GPUCheck { GPUCheck(name: name, outcome: .passed, detail: detail) }
    static func failed(_ name: String, _ detail: String) -> GPUCheck { GPUCheck(name: name, outcome: .failed, detail: detail) }
    static func notChecked(_ name: String, _ detail: String) -> GPUCheck { GPUCheck(name: name, outcome: .notChecked, detail: detail) }
}

/// What the evidence says about the GPU, once its signature verified.
public struct GPUClaims: Hashable, Sendable, Encodable {
    public let model: String
    public let ueid: String
    public let driverVersion: String
    public let vbiosVersion: String
    public let chipSKU: String
    public let project: String
    public let projectSKU: String
}

public struct GPUVerification: Sendable, Encodable {
    public let checks: [GPUCheck]
    public let claims: GPUClaims?

    /// True when no check failed and every check asked for was made (only revocation may be left
    /// unchecked, and only when no OCSP response was given).
    public var passed: Bool { !checks.contains { $0.outcome == .failed } && claims != nil }
    /// Whether the RIM checks all passed (what `gpu:rim:verified` means).
    public var rimVerified: Bool {
        let rim = checks.filter { $0.name.hasPrefix("rim") }
        return !rim.isEmpty && rim.allSatisfy { $0.outcome == .passed }
    }

    public func check(_ name: String) -> GPUCheck? { checks.first { $0.name == name } }
    public func check(_ name: GPUCheck.Name) -> GPUCheck? { check(name.rawValue) }
}

public struct GPUVerifier: Sendable {
    /// The pinned device identity root; the device's own copy of the root is never trusted.
    public let deviceRoot: Certificate
    /// The pinned root that signs RIM certificates, as PEM (for libxmlsec1).
    public let rimRootPEM: String?

    public init(deviceRoot: Certificate, rimRootPEM: String? = nil) {
        self.deviceRoot = deviceRoot
        self.rimRootPEM = rimRootPEM
    }

    /// The DICE TCB Info extension, whose last 48 bytes carry the firmware ID.
    static let diceTCBInfo: ASN1ObjectIdentifier = [2, 23, 133, 5, 4, 1]

    /// - Parameters:
    ///   - chain: the device's certificates, leaf first; a last certificate equal to or named like
    ///     the root is dropped, and the pinned root used instead.
    ///   - rims: the RIMs' XML, each with a name for the checks.
    ///   - ocsp: DER OCSP responses for the chain's certificates, fetched elsewhere; without them
    ///     revocation is reported as not checked.
    public func verify(
        report: SPDMReport, chain: [Certificate], nonce: [UInt8], rims: [(name: String, xml: [UInt8])] = [], ocsp: [[UInt8]] = [], at time: Date
    ) async -> GPUVerification {
        var checks: [GPUCheck] = []
        checks.append(report.requestNonce == nonce
            ? .passed(.nonce, "the request carries the expected nonce")
            : .failed(.nonce, "the request's nonce \(Hex.encode(report.requestNonce)) is not the expected \(Hex.encode(nonce))"))

        guard let leaf = chain.first else {
            checks.append(.failed(.certificateChain, "the chain is empty"))
            return GPUVerification(checks: checks, claims: nil)
        }
        // The signature over the request and the response, with the leaf's key.
        let signatureOK: Bool
        if let key = P384.Signing.PublicKey(leaf.publicKey), let signature = try? P384.Signing.ECDSASignature(rawRepresentation: report.signature) {
            signatureOK = key.isValidSignature(signature, for: SHA384.hash(data: report.signedBytes))
            checks.append(signatureOK
                ? .passed(.signature, "ECDSA P-384 over SHA-384 of the request and response verifies with the leaf's key")
                : .failed(.signature, "the report's signature does not verify with the leaf certificate's key"))
        } else {
            signatureOK = false
            checks.append(.failed(.signature, "the leaf certificate's key is not ECDSA P-384"))
        }

        var intermediates = Array(chain.dropFirst())
        if let last = intermediates.last, last == deviceRoot || last.subject == deviceRoot.subject { intermediates.removeLast() }
        var verifier = Verifier(rootCertificates: CertificateStore([deviceRoot])) {
            RFC5280Policy(validationTime: time)
            DeviceCertificatePolicy()
        }
        // Every fact about the device comes from the path built here, never from where the agent put
        // a certificate: intermediates are an unordered pool to path validation.
        var verifiedPath: [Certificate]?
        switch await verifier.validate(leaf: leaf, intermediates: CertificateStore(intermediates)) {
        case .validCertificate(let path):
            let offPath = intermediates.filter { !path.contains($0) }
            if offPath.isEmpty {
                verifiedPath = Array(path)
                checks.append(.passed(.certificateChain, "\(path.count) certificates to the pinned root \(deviceRoot.subject)"))
            } else {
                let names = offPath.map { "\($0.subject)" }.joined(separator: "; ")
                checks.append(.failed(.certificateChain, "the chain carries certificates that are not on the verified path to the pinned root: \(names)"))
            }
        case .couldNotValidate(let failures):
            let reasons = failures.map { "\($0.policyFailureReason)" }
            checks.append(.failed(.certificateChain, "the chain does not verify to the pinned root \(deviceRoot.subject): \(reasons.isEmpty ? "no path" : reasons.joined(separator: "; "))"))
        }

        if let fwid = report.fwid {
            if let tcb = leaf.extensions[oid: Self.diceTCBInfo]?.value, tcb.count >= 48, Array(tcb.suffix(48)) == fwid {
                checks.append(.passed(.fwid, "the report's FWID matches the leaf certificate's DICE TCB Info"))
            } else {
                checks.append(.failed(.fwid, "the report's FWID does not match the leaf certificate's DICE TCB Info extension"))
            }
        } else {
            checks.append(.notChecked(.fwid, "the report carries no FWID field"))
        }
        checks.append(ocsp.isEmpty
            ? .notChecked(.revocation, "revocation needs NVIDIA's OCSP service; no OCSP response was given, so it was not checked")
            : Self.revocation([leaf] + intermediates, root: deviceRoot, responses: ocsp, at: time))

        guard signatureOK, let path = verifiedPath else { return GPUVerification(checks: checks, claims: nil) }
        guard let driver = report.driverVersion, let vbios = report.vbiosVersion else {
            checks.append(.failed(.claims, "the report lacks the driver or VBIOS version field"))
            return GPUVerification(checks: checks, claims: nil)
        }
        guard let ueid = Self.ueid(path) else {
            checks.append(.failed(.claims, "the leaf's issuer on the verified path carries no serialNumber (the device's UEID)"))
            return GPUVerification(checks: checks, claims: nil)
        }
        let claims = GPUClaims(
            model: Self.model(leaf), ueid: ueid, driverVersion: driver, vbiosVersion: vbios,
            chipSKU: report.chipSKU ?? "", project: report.project ?? "", projectSKU: report.projectSKU ?? ""
        )
        if !rims.isEmpty { checks += verifyRIMs(rims, report: report, claims: claims, at: time) }
        return GPUVerification(checks: checks, claims: claims)
    }

    // MARK: RIMs

    func verifyRIMs(_ rims: [(name: String, xml: [UInt8])], report: SPDMReport, claims: GPUClaims, at time: Date) -> [GPUCheck] {
        var checks: [GPUCheck] = []
        var golden: [Int: (rim: String, alternatives: [[UInt8]])] = [:]
        var usable = true
        for rim in rims {
            let prefix = "rim.\(rim.name)"
            guard let root = rimRootPEM else {
                checks.append(.failed("\(prefix).signature", "no pinned RIM root was given (--rim-root)"))
                usable = false
                continue
            }
            let signature = RIMSignature.verify(rim.xml, rootPEM: root, at: time)
            checks.append(signature == nil
                ? .passed("\(prefix).signature", "the XML signature verifies and its certificate chains to the pinned RIM root at \(time)")
                : .failed("\(prefix).signature", signature!))
            let manifest: RIMManifest
            do { manifest = try RIMManifest(xml: rim.xml) } catch {
                checks.append(.failed("\(prefix).parse", "\(error)"))
                usable = false
                continue
            }
            if manifest.version == claims.driverVersion {
                checks.append(.passed("\(prefix).version", "RIM version \(manifest.version) is the report's driver version"))
            } else if manifest.version == claims.vbiosVersion {
                checks.append(.passed("\(prefix).version", "RIM version \(manifest.version) is the report's VBIOS version"))
            } else {
                checks.append(.failed("\(prefix).version", "RIM version \(manifest.version) is neither the driver (\(claims.driverVersion)) nor the VBIOS (\(claims.vbiosVersion)) version"))
            }
            usable = usable && signature == nil
            for measurement in manifest.measurements where measurement.active {
                if let other = golden[measurement.index] {
                    checks.append(.failed("rim.measurements", "index \(measurement.index) is active in both \(other.rim) and \(rim.name)"))
                    return checks
                }
                golden[measurement.index] = (rim.name, measurement.alternatives)
            }
        }
        guard usable else {
            checks.append(.notChecked("rim.measurements", "the measurements were not compared: a RIM did not verify"))
            return checks
        }
        let blocks = Dictionary(report.blocks.map { ($0.index, $0.value) }, uniquingKeysWith: { first, _ in first })
        var mismatches: [String] = []
        for (index, entry) in golden.sorted(by: { $0.key < $1.key }) {
            // RIM index i describes SPDM measurement block i + 1.
            guard let measured = blocks[index + 1] else {
                mismatches.append("index \(index): the report has no block \(index + 1)")
                continue
            }
            if !entry.alternatives.contains(measured) { mismatches.append("index \(index) (\(entry.rim)): measured \(Hex.encode(measured))") }
        }
        checks.append(mismatches.isEmpty
            ? .passed("rim.measurements", "\(golden.count) active golden measurements match the report")
            : .failed("rim.measurements", "measurements differ from the RIMs: " + mismatches.joined(separator: "; ")))
        return checks
    }

    /// Every certificate below the pinned root must be reported good by a signed, current response.
    static func revocation(_ certificates: [Certificate], root: Certificate, responses: [[UInt8]], at time: Date) -> GPUCheck {
        let parsed: [OCSPStatus.Response]
        do { parsed = try responses.map(OCSPStatus.parse) } catch {
            return .failed(.revocation, "an OCSP response could not be read: \(error)")
        }
        for (index, certificate) in certificates.enumerated() {
            let issuer = index + 1 < certificates.count ? certificates[index + 1] : root
            switch OCSPStatus.status(of: certificate, issuer: issuer, in: parsed, at: time) {
            case .success(.good): continue
            case .success(.revoked): return .failed(.revocation, "\(certificate.subject) is revoked")
            case .success(.unknown): return .failed(.revocation, "the responder does not know \(certificate.subject)")
            case .failure(let error): return .failed(.revocation, error.message)
            }
        }
        return .passed(.revocation, "\(certificates.count) certificates reported good by the given OCSP responses")
    }

    // MARK: Claims

    /// The GPU model from the leaf's common name (NVIDIA's "GH100 A01 GSP FMC LF").
    static func model(_ leaf: Certificate) -> String {
        let name = leaf.subject.compactMap { rdn in rdn.first { $0.type == .RDNAttributeType.commonName } }.first.map { "\($0.value)" } ?? ""
        return name.split(separator: " ").first.map(String.init) ?? "unknown"
    }

    /// The device's serial: the serialNumber attribute of the device identity certificate, the
    /// leaf's issuer on the verified path (leaf first, root last).
    static func ueid(_ path: [Certificate]) -> String? {
        let serialNumber: ASN1ObjectIdentifier = [2, 5, 4, 5]
        guard path.count > 2 else { return nil }
        let value = path[1].subject.compactMap { rdn in rdn.first { $0.type == serialNumber } }.first.map { "\($0.value)" }
        return value?.isEmpty == false ? value : nil
    }

}

/// NVIDIA's device certificates carry critical TCG DICE extensions that the verifier reads itself.
struct DeviceCertificatePolicy: VerifierPolicy {
    let verifyingCriticalExtensions: [ASN1ObjectIdentifier] = [[2, 23, 133, 5, 4, 1], [2, 23, 133, 5, 4, 5], [2, 23, 133, 5, 4, 100, 6]]

    func chainMeetsPolicyRequirements(chain: UnverifiedCertificateChain) async -> PolicyEvaluationResult { .meetsPolicy }
}
