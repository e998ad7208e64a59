// The certificate rules of the X509-SVID specification (sections 4 and 5), each with its own code.

public import X509
public import Foundation
import SwiftASN1

enum X509SVIDRules {
    /// The SPIFFE ID of a leaf: exactly one URI SAN, a SPIFFE ID with a path.
    static func leafID(_ leaf: Certificate) throws -> SPIFFEID {
        let id = try uriSANID(leaf, role: "leaf")
        guard !id.path.isEmpty else {
            throw SPIFFEError(.leafIDWithoutPath, "x509svid: the leaf's SPIFFE ID \(id) has no path; a leaf must name a workload")
        }
        return id
    }

    static func uriSANID(_ certificate: Certificate, role: String) throws -> SPIFFEID {
        let names: SubjectAlternativeNames?
        do {
            names = try certificate.extensions.subjectAlternativeNames
        } catch {
            throw SPIFFEError(.malformedCertificate, "x509svid: the \(role)'s subject alternative names cannot be read: \(error)")
        }
        let uris = (names ?? SubjectAlternativeNames()).compactMap { name -> String? in
            if case .uniformResourceIdentifier(let uri) = name { return uri }
            return nil
        }
        guard let uri = uris.first else {
            throw SPIFFEError(.missingURISAN, "x509svid: the \(role) certificate contains no URI SAN")
        }
        guard uris.count == 1 else {
            throw SPIFFEError(.multipleURISANs, "x509svid: the \(role) certificate contains \(uris.count) URI SANs; exactly one is allowed")
        }
        do {
            return try SPIFFEID(parsing: uri)
        } catch let error as SPIFFEError {
            throw SPIFFEError(.invalidURISAN, "x509svid: the \(role)'s URI SAN '\(uri)' is not a SPIFFE ID: \(error.message)", underlying: error)
        }
    }

    /// The leaf rules: CA=false, key usage critical with digitalSignature and no certificate or
    /// CRL signing, and an EKU, where present, with both serverAuth and clientAuth.
    static func checkLeaf(_ leaf: Certificate) throws {
        let extensions = leaf.extensions
        if let constraints = try read({ try extensions.basicConstraints }, "basic constraints"),
            case .isCertificateAuthority = constraints
        {
            throw SPIFFEError(.leafIsCA, "x509svid: the leaf certificate has CA=true")
        }
        guard let usageExtension = extensions[oid: .X509ExtensionID.keyUsage],
            let usage = try read({ try extensions.keyUsage }, "key usage")
        else {
            throw SPIFFEError(.missingKeyUsage, "x509svid: the leaf certificate has no key usage extension")
        }
        guard usageExtension.critical else {
            throw SPIFFEError(.keyUsageNotCritical, "x509svid: the leaf's key usage extension is not marked critical")
        }
        guard usage.digitalSignature else {
            throw SPIFFEError(.missingDigitalSignature, "x509svid: the leaf's key usage lacks digitalSignature")
        }
        if usage.keyCertSign {
            throw SPIFFEError(.leafHasKeyCertSign, "x509svid: the leaf's key usage includes keyCertSign")
        }
        if usage.cRLSign {
            throw SPIFFEError(.leafHasCRLSign, "x509svid: the leaf's key usage includes cRLSign")
        }
        if let eku = try read({ try extensions.extendedKeyUsage }, "extended key usage") {
            let missing = [("serverAuth", ExtendedKeyUsage.Usage.serverAuth), ("clientAuth", .clientAuth)]
                .filter { !eku.contains($0.1) }.map(\.0)
            if !missing.isEmpty {
                throw SPIFFEError(
                    .extendedKeyUsageMismatch,
                    "x509svid: the leaf's extended key usage lacks \(missing.joined(separator: " and "))"
                )
            }
        }
    }

    /// A signing certificate: CA=true and keyCertSign.
    static func checkSigning(_ certificate: Certificate, position: Int) throws {
        let extensions = certificate.extensions
        guard let constraints = try read({ try extensions.basicConstraints }, "basic constraints"),
            case .isCertificateAuthority = constraints
        else {
            throw SPIFFEError(
                .signingCertificateNotCA,
                "x509svid: signing certificate \(position) (\(certificate.subject)) does not have CA=true"
            )
        }
        guard let usage = try read({ try extensions.keyUsage }, "key usage"), usage.keyCertSign else {
            throw SPIFFEError(
                .signingCertificateMissingKeyCertSign,
                "x509svid: signing certificate \(position) (\(certificate.subject)) lacks keyCertSign"
            )
        }
    }

    static func checkValidity(_ certificate: Certificate, role: String, at time: Date) throws {
        if time > certificate.notValidAfter {
            throw SPIFFEError(
                .certificateExpired,
                "x509svid: the \(role) certificate expired at \(certificate.notValidAfter.rfc3339) (checked at \(time.rfc3339))"
            )
        }
        if time < certificate.notValidBefore {
            throw SPIFFEError(
                .certificateNotYetValid,
                "x509svid: the \(role) certificate is not valid before \(certificate.notValidBefore.rfc3339) (checked at \(time.rfc3339))"
            )
        }
    }

    private static func read<T>(_ body: () throws -> T?, _ what: String) throws -> T? {
        do {
            return try body()
        } catch {
            throw SPIFFEError(.malformedCertificate, "x509svid: the \(what) extension cannot be read: \(error)")
        }
    }
}

extension Date {
    /// RFC 3339 in UTC, to the second.
    var rfc3339: String {
        formatted(Date.ISO8601FormatStyle(includingFractionalSeconds: false, timeZone: .gmt))
    }
}

extension SPIFFEID {
    /// The SPIFFE ID of an X509-SVID leaf: its single URI SAN.
    ///
    /// - Throws: ``SPIFFEError`` with a URI SAN code when the certificate carries no single SPIFFE ID.
    public init(x509SVIDLeaf certificate: Certificate) throws {
        self = try X509SVIDRules.leafID(certificate)
    }
}
