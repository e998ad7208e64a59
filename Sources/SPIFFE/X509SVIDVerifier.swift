// X509-SVID verification, X509-SVID specification section 5: path validation to the bundle of the
// SVID's own trust domain, then the leaf and signing-certificate rules.

public import X509
public import Foundation
import SwiftASN1

/// The outcome of a successful verification.
public struct VerifiedX509SVID: Sendable {
    /// The SPIFFE ID of the leaf.
    public let id: SPIFFEID
    /// The verified chain, leaf first, ending at the trust anchor from the bundle.
    public let chain: [Certificate]
}

/// Verifies X509-SVID chains presented by peers.
public struct X509SVIDVerifier: Sendable {
    private let bundles: any X509BundleSource

    /// - Parameter bundles: where to find the bundle of each trust domain.
    public init(bundles: some X509BundleSource) {
        self.bundles = bundles
    }

    /// Verifies a chain, leaf first.
    ///
    /// The rules are checked in an order that reports the most specific cause: the leaf's SPIFFE ID,
    /// the leaf's extensions, the signing certificates' extensions, the bundle of the ID's trust
    /// domain, each certificate's validity period at `time`, then RFC 5280 path validation.
    ///
    /// - Parameters:
    ///   - chain: the leaf and any intermediates the peer sent.
    ///   - time: the validation time.
    /// - Returns: the leaf's SPIFFE ID and the verified chain.
    /// - Throws: ``SPIFFEError`` naming the first rule broken.
    public func verify(_ chain: [Certificate], at time: Date = Date()) async throws -> VerifiedX509SVID {
        guard let leaf = chain.first else {
            throw SPIFFEError(.emptyChain, "x509svid: the certificate chain is empty")
        }
        let id = try X509SVIDRules.leafID(leaf)
        try X509SVIDRules.checkLeaf(leaf)
        for (index, certificate) in chain.enumerated().dropFirst() {
            try X509SVIDRules.checkSigning(certificate, position: index)
        }
        let bundle = try bundles.x509Bundle(for: id.trustDomain)
        try X509SVIDRules.checkValidity(leaf, role: "leaf", at: time)
        for (index, certificate) in chain.enumerated().dropFirst() {
            try X509SVIDRules.checkValidity(certificate, role: "signing certificate \(index)", at: time)
        }

        var verifier = Verifier(rootCertificates: CertificateStore(bundle.authorities)) {
            RFC5280Policy(validationTime: time)
            SPIFFEChainPolicy()
        }
        let result = await verifier.validate(leaf: leaf, intermediates: CertificateStore(Array(chain.dropFirst())))
        switch result {
        case .validCertificate(let verified):
            return VerifiedX509SVID(id: id, chain: Array(verified))
        case .couldNotValidate(let failures):
            let reasons = failures.map { "\($0.policyFailureReason)" }
            let detail = reasons.isEmpty ? "no path to an authority of the bundle" : reasons.joined(separator: "; ")
            throw SPIFFEError(
                .chainNotTrusted,
                "x509svid: the chain does not verify to the bundle of \(id.trustDomain): \(detail)"
            )
        }
    }
}

/// The SPIFFE rules as a policy of the chain builder. The leaf checks are made before path building
/// (for precise errors); this policy re-checks every signing certificate on the chain actually
/// built, and declares the subject alternative name handled: SVIDs with an empty subject carry it critical.
struct SPIFFEChainPolicy: VerifierPolicy {
    let verifyingCriticalExtensions: [ASN1ObjectIdentifier] = [.X509ExtensionID.subjectAlternativeName]

    func chainMeetsPolicyRequirements(chain: UnverifiedCertificateChain) async -> PolicyEvaluationResult {
        for (index, certificate) in chain.enumerated().dropFirst() {
            do {
                try X509SVIDRules.checkSigning(certificate, position: index)
            } catch let error as SPIFFEError {
                return .failsToMeetPolicy(reason: error.message)
            } catch {
                return .failsToMeetPolicy(reason: "\(error)")
            }
        }
        return .meetsPolicy
    }
}
