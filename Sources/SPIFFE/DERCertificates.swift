// Reading and writing certificates as concatenated DER and as PEM, the encodings SPIFFE uses.

public import X509
import SwiftASN1

extension Certificate {
    /// The certificate's DER encoding.
    public var derBytes: [UInt8] { DERCertificates.der(self) }
}

enum DERCertificates {
    /// Splits concatenated DER certificates (the Workload API's encoding) and parses each.
    static func parse(concatenated bytes: [UInt8], area: String) throws -> [Certificate] {
        var certificates: [Certificate] = []
        var index = 0
        while index < bytes.count {
            let length = try elementLength(bytes, at: index, area: area)
            let der = Array(bytes[index..<(index + length)])
            do {
                certificates.append(try Certificate(derEncoded: der))
            } catch {
                throw SPIFFEError(.malformedCertificate, "\(area): certificate \(certificates.count + 1) is not valid DER X.509: \(error)")
            }
            index += length
        }
        return certificates
    }

    /// Parses every `CERTIFICATE` block of a PEM text, in order; other block types are refused.
    static func parse(pem: String, area: String) throws -> [Certificate] {
        let documents: [PEMDocument]
        do {
            documents = try PEMDocument.parseMultiple(pemString: pem)
        } catch {
            throw SPIFFEError(.malformedCertificate, "\(area): the PEM text could not be read: \(error)")
        }
        return try documents.enumerated().map { index, document in
            guard document.discriminator == "CERTIFICATE" else {
                throw SPIFFEError(.malformedCertificate, "\(area): PEM block \(index + 1) is '\(document.discriminator)', not 'CERTIFICATE'")
            }
            do {
                return try Certificate(derEncoded: document.derBytes)
            } catch {
                throw SPIFFEError(.malformedCertificate, "\(area): PEM block \(index + 1) is not a valid X.509 certificate: \(error)")
            }
        }
    }

    static func der(_ certificate: Certificate) -> [UInt8] {
        var serializer = DER.Serializer()
        // Serialising a certificate that was parsed or built cannot fail.
        try! serializer.serialize(certificate)
        return serializer.serializedBytes
    }

    static func concatenatedDER(_ certificates: [Certificate]) -> [UInt8] {
        certificates.flatMap(der)
    }

    static func pem(_ certificates: [Certificate]) -> String {
        certificates.map { PEMDocument(type: "CERTIFICATE", derBytes: der($0)).pemString + "\n" }.joined()
    }

    /// The length of the DER element at `index`, header included.
    private static func elementLength(_ bytes: [UInt8], at index: Int, area: String) throws -> Int {
        func truncated() -> SPIFFEError {
            SPIFFEError(.malformedCertificate, "\(area): DER data is truncated at byte \(index)")
        }
        guard index + 2 <= bytes.count else { throw truncated() }
        guard bytes[index] == 0x30 else {
            throw SPIFFEError(.malformedCertificate, "\(area): byte \(index) does not start a DER SEQUENCE")
        }
        let first = Int(bytes[index + 1])
        var header = 2
        var length = first
        if first & 0x80 != 0 {
            let count = first & 0x7f
            guard (1...4).contains(count), index + 2 + count <= bytes.count else { throw truncated() }
            length = bytes[(index + 2)..<(index + 2 + count)].reduce(0) { $0 << 8 | Int($1) }
            header += count
        }
        guard index + header + length <= bytes.count else { throw truncated() }
        return header + length
    }
}
