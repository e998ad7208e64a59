// Signing X509-SVIDs from CSRs. The SPIFFE ID comes from the registration, never from the CSR;
// every certificate is checked by the SPIFFE verifier before it is handed out.

public import X509
public import Crypto
public import _CryptoExtras
public import Foundation
import SwiftASN1
public import SPIFFE

/// What to sign.
public struct X509SVIDParams: Sendable {
    /// A PKCS#10 CSR, DER.
    public var csr: [UInt8]
    public var spiffeID: SPIFFEID
    public var dnsNames: [String]
    public var ttl: TimeInterval
    public var now: Date

    public init(csr: [UInt8], spiffeID: SPIFFEID, dnsNames: [String] = [], ttl: TimeInterval, now: Date) {
        self.csr = csr
        self.spiffeID = spiffeID
        self.dnsNames = dnsNames
        self.ttl = ttl
        self.now = now
    }
}

/// How far NotBefore is set back, for clock skew.
public let svidBackdate: TimeInterval = 10

extension X509CA {
    /// Signs an X509-SVID for a CSR and returns the chain, leaf first, without the anchor.
    ///
    /// - Throws: ``CAError`` when the CSR is malformed, its signature is wrong, its key is not
    ///   P-256, P-384 or RSA of at least 2048 bits, the CA has expired, or (a bug) the result does
    ///   not verify as an X509-SVID.
    public func signX509SVID(_ params: X509SVIDParams) async throws -> [Certificate] {
        let publicKey = try Self.checkedCSRKey(params.csr)
        let notAfter = min(params.now.addingTimeInterval(params.ttl), certificate.notValidAfter)
        guard notAfter > params.now else {
            throw CAError("ca: the signing certificate expired at \(certificate.notValidAfter); no SVID can be issued")
        }
        var names: [GeneralName] = [.uniformResourceIdentifier(params.spiffeID.description)]
        names += params.dnsNames.map { .dnsName($0) }
        let leaf = try Certificate(
            version: .v3, serialNumber: Self.randomSerial(), publicKey: publicKey,
            notValidBefore: params.now.addingTimeInterval(-svidBackdate), notValidAfter: notAfter,
            issuer: certificate.subject,
            subject: try DistinguishedName {
                OrganizationName("Hallmark")
                if let first = params.dnsNames.first { CommonName(first) }
            },
            signatureAlgorithm: signatureAlgorithm,
            extensions: try Certificate.Extensions {
                Critical(KeyUsage(digitalSignature: true))
                try ExtendedKeyUsage([.serverAuth, .clientAuth])
                Critical(BasicConstraints.notCertificateAuthority)
                SubjectKeyIdentifier(hash: publicKey)
                AuthorityKeyIdentifier(keyIdentifier: SubjectKeyIdentifier(hash: certificate.publicKey).keyIdentifier)
                SubjectAlternativeNames(names)
            },
            issuerPrivateKey: privateKey
        )
        let chain = [leaf] + intermediates
        let bundle = X509Bundle(trustDomain: params.spiffeID.trustDomain, authorities: [anchor])
        do {
            _ = try await X509SVIDVerifier(bundles: bundle).verify(chain, at: params.now)
        } catch let error as SPIFFEError {
            throw CAError("ca: the issued certificate for \(params.spiffeID) failed SVID verification: \(error.message)")
        }
        return chain
    }

    /// Parses a CSR, checks its signature and its key, and returns the key.
    public static func checkedCSRKey(_ der: [UInt8]) throws -> Certificate.PublicKey {
        let csr: CertificateSigningRequest
        do {
            csr = try CertificateSigningRequest(derEncoded: der)
        } catch CryptoKitError.incorrectParameterSize {
            // swift-certificates refuses RSA keys under 2048 bits while parsing.
            throw CAError("csr: the key is too small; RSA keys need at least 2048 bits")
        } catch {
            throw CAError("csr: not a DER PKCS#10 certificate signing request: \(error)")
        }
        guard csr.publicKey.isValidSignature(csr.signature, for: csr) else {
            throw CAError("csr: the signature does not verify with the CSR's own key")
        }
        let key = csr.publicKey
        if P256.Signing.PublicKey(key) != nil || P384.Signing.PublicKey(key) != nil { return key }
        // Parsed without the size floor, so that a short key is named as such.
        if let rsa = try? _RSA.Signing.PublicKey(unsafeDERRepresentation: key.subjectPublicKeyInfoBytes) {
            guard rsa.keySizeInBits >= 2048 else {
                throw CAError("csr: the RSA key has \(rsa.keySizeInBits) bits; at least 2048 are required")
            }
            return key
        }
        throw CAError("csr: the key must be P-256, P-384 or RSA of at least 2048 bits")
    }
}
