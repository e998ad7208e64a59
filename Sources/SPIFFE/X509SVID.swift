// An X509-SVID: a SPIFFE ID's certificate chain, leaf first, with the leaf's private key.

public import X509
public import Foundation
import SwiftASN1

/// An X509-SVID and its private key.
public struct X509SVID: Sendable {
    /// The SPIFFE ID in the leaf's URI SAN.
    public let id: SPIFFEID
    /// The chain, leaf first, up to but normally not including the trust anchor.
    public let certificates: [Certificate]
    /// The leaf's private key.
    public let privateKey: Certificate.PrivateKey
    /// An operator-chosen label that tells several SVIDs of one workload apart (may be empty).
    public let hint: String

    /// Assembles an SVID, checking that the leaf carries a SPIFFE ID and matches the key.
    ///
    /// - Throws: ``SPIFFEError`` with `emptyChain`, a URI SAN code, or `privateKeyMismatch`.
    public init(certificates: [Certificate], privateKey: Certificate.PrivateKey, hint: String = "") throws {
        guard let leaf = certificates.first else {
            throw SPIFFEError(.emptyChain, "x509svid: the certificate chain is empty")
        }
        self.id = try X509SVIDRules.leafID(leaf)
        guard privateKey.publicKey == leaf.publicKey else {
            throw SPIFFEError(.privateKeyMismatch, "x509svid: the private key does not match the leaf certificate's public key")
        }
        self.certificates = certificates
        self.privateKey = privateKey
        self.hint = hint
    }

    /// Parses an SVID from DER: concatenated certificates and a PKCS#8 private key (the Workload API's form).
    public init(chainDER: [UInt8], privateKeyDER: [UInt8], hint: String = "") throws {
        let certificates = try DERCertificates.parse(concatenated: chainDER, area: "x509svid")
        let key: Certificate.PrivateKey
        do {
            key = try Certificate.PrivateKey(derBytes: privateKeyDER)
        } catch {
            throw SPIFFEError(.malformedPrivateKey, "x509svid: the private key is not a PKCS#8 or SEC1 DER key: \(error)")
        }
        try self.init(certificates: certificates, privateKey: key, hint: hint)
    }

    /// Parses an SVID from PEM: the chain's `CERTIFICATE` blocks, leaf first, and a `PRIVATE KEY` block.
    public init(chainPEM: String, privateKeyPEM: String, hint: String = "") throws {
        let certificates = try DERCertificates.parse(pem: chainPEM, area: "x509svid")
        let key: Certificate.PrivateKey
        do {
            key = try Certificate.PrivateKey(pemEncoded: privateKeyPEM)
        } catch {
            throw SPIFFEError(.malformedPrivateKey, "x509svid: the private key PEM could not be read: \(error)")
        }
        try self.init(certificates: certificates, privateKey: key, hint: hint)
    }

    /// Parses the `CERTIFICATE` blocks of a PEM text, in order (a chain file, leaf first).
    ///
    /// - Throws: ``SPIFFEError`` with `malformedCertificate`, naming the block.
    public static func certificates(pem: String) throws -> [Certificate] {
        try DERCertificates.parse(pem: pem, area: "x509svid")
    }

    /// Parses concatenated DER certificates (the Workload API's encoding of a chain).
    ///
    /// - Throws: ``SPIFFEError`` with `malformedCertificate`, naming the certificate.
    public static func certificates(der: [UInt8]) throws -> [Certificate] {
        try DERCertificates.parse(concatenated: der, area: "x509svid")
    }

    /// The leaf certificate.
    public var leaf: Certificate { certificates[0] }

    /// When the leaf stops being valid.
    public var expiresAt: Date { leaf.notValidAfter }

    /// The hex key identifiers of every CA this chain passes through: each certificate's
    /// authority key identifier, and the subject key identifiers of the intermediates.
    public var issuerKeyIDs: Set<String> {
        var ids: Set<String> = []
        for (index, certificate) in certificates.enumerated() {
            if let aki = try? certificate.extensions.authorityKeyIdentifier?.keyIdentifier { ids.insert(Hex.encode(aki)) }
            if index > 0, let ski = try? certificate.extensions.subjectKeyIdentifier { ids.insert(Hex.encode(ski.keyIdentifier)) }
        }
        return ids
    }

    /// The chain as concatenated DER, leaf first.
    public var chainDER: [UInt8] { DERCertificates.concatenatedDER(certificates) }

    /// The chain as PEM, leaf first.
    public var chainPEM: String { DERCertificates.pem(certificates) }

    /// The private key as PKCS#8 DER.
    public func privateKeyDER() throws -> [UInt8] {
        try PEMDocument(pemString: privateKey.serializeAsPEM().pemString).derBytes
    }

    /// The private key as a PKCS#8 PEM block.
    public func privateKeyPEM() throws -> String {
        try privateKey.serializeAsPEM().pemString + "\n"
    }
}
