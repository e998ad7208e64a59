// The X509-SVID leaf as DER, written directly: the parts that are the same for every SVID a CA
// signs (algorithm, issuer, key usage, EKU, basic constraints, authority key ID) are encoded once
// per CA, and each SVID only fills in its serial, validity, subject, key, key ID and names. The
// result is byte for byte what swift-certificates' builder writes for the same fields (a test
// holds it to that), at a fraction of the cost: signing is the only expensive step left.

import Crypto
import Foundation
import SwiftASN1
import X509

/// The CA's key in the form that signs raw bytes.
enum LeafSigningKey: Sendable {
    case p256(P256.Signing.PrivateKey)
    case p384(P384.Signing.PrivateKey)

    init(_ key: Certificate.PrivateKey) throws {
        let pem = try key.serializeAsPEM().pemString
        if let p256 = try? P256.Signing.PrivateKey(pemRepresentation: pem) {
            self = .p256(p256)
        } else if let p384 = try? P384.Signing.PrivateKey(pemRepresentation: pem) {
            self = .p384(p384)
        } else {
            throw CAError(.invalidKey, "ca: the CA key must be P-256 or P-384")
        }
    }

    /// AlgorithmIdentifier for ecdsa-with-SHA256 or ecdsa-with-SHA384 (RFC 5758), no parameters.
    var algorithmIdentifier: [UInt8] {
        switch self {
        case .p256: [0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02]
        case .p384: [0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03]
        }
    }

    /// A DER ECDSA-Sig-Value over `bytes`, hashed with the curve's hash. Written from the raw
    /// r‖s here: the library's DER conversion cost about a tenth of an SVID's issuance.
    func signature(for bytes: [UInt8]) throws -> [UInt8] {
        switch self {
        case .p256(let key): DERWriter.ecdsaSignature(raw: Array(try key.signature(for: bytes).rawRepresentation))
        case .p384(let key): DERWriter.ecdsaSignature(raw: Array(try key.signature(for: bytes).rawRepresentation))
        }
    }
}

/// The fixed parts of a CA's X509-SVID leaves.
struct LeafTemplate: Sendable {
    let signingKey: LeafSigningKey
    /// version [0] v3, ready to precede the serial.
    private static let version: [UInt8] = [0xa0, 0x03, 0x02, 0x01, 0x02]
    private let algorithm: [UInt8]
    private let issuer: [UInt8]
    /// keyUsage (critical, digitalSignature), extKeyUsage (serverAuth, clientAuth), basicConstraints
    /// (critical, not a CA): the extensions every leaf starts with, in this order.
    private static let fixedExtensions: [UInt8] = [
        0x30, 0x0e, 0x06, 0x03, 0x55, 0x1d, 0x0f, 0x01, 0x01, 0xff, 0x04, 0x04, 0x03, 0x02, 0x07, 0x80,
        0x30, 0x1d, 0x06, 0x03, 0x55, 0x1d, 0x25, 0x04, 0x16, 0x30, 0x14,
        0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x01,
        0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x02,
        0x30, 0x0c, 0x06, 0x03, 0x55, 0x1d, 0x13, 0x01, 0x01, 0xff, 0x04, 0x02, 0x30, 0x00,
    ]
    /// authorityKeyIdentifier with the CA's key ID.
    private let authorityKeyIdentifier: [UInt8]

    init(certificate: Certificate, privateKey: Certificate.PrivateKey) throws {
        signingKey = try LeafSigningKey(privateKey)
        algorithm = signingKey.algorithmIdentifier
        var serializer = DER.Serializer()
        try serializer.serialize(certificate.subject)
        issuer = serializer.serializedBytes
        let keyID = SubjectKeyIdentifier(hash: certificate.publicKey).keyIdentifier
        authorityKeyIdentifier = DERWriter.certificateExtension(
            [0x55, 0x1d, 0x23], value: DERWriter.tlv(0x30, DERWriter.tlv(0x80, Array(keyID)))
        )
    }

    /// The DER of a signed leaf.
    ///
    /// - Parameters:
    ///   - serial: 1 to 20 bytes, positive and minimal (the caller's random serial is).
    ///   - spki: the SubjectPublicKeyInfo, DER, as it came in the CSR.
    ///   - subjectPublicKey: the key bits of `spki`, for the subject key identifier.
    func leaf(
        serial: [UInt8], notBefore: Date, notAfter: Date, spki: ArraySlice<UInt8>, subjectPublicKey: ArraySlice<UInt8>,
        uri: String, dnsNames: [String]
    ) throws -> [UInt8] {
        var names: [UInt8] = DERWriter.tlv(0x86, Array(uri.utf8))
        for name in dnsNames { names += DERWriter.tlv(0x82, Array(name.utf8)) }
        var subject = DERWriter.tlv(0x31, DERWriter.tlv(0x30, [0x06, 0x03, 0x55, 0x04, 0x0a] + DERWriter.tlv(0x0c, Array("Hallmark".utf8))))
        if let first = dnsNames.first {
            subject += DERWriter.tlv(0x31, DERWriter.tlv(0x30, [0x06, 0x03, 0x55, 0x04, 0x03] + DERWriter.tlv(0x0c, Array(first.utf8))))
        }
        let keyID = Array(Insecure.SHA1.hash(data: subjectPublicKey))
        var extensions = Self.fixedExtensions
        extensions += DERWriter.certificateExtension([0x55, 0x1d, 0x0e], value: DERWriter.tlv(0x04, keyID))
        extensions += authorityKeyIdentifier
        extensions += DERWriter.certificateExtension([0x55, 0x1d, 0x11], value: DERWriter.tlv(0x30, names))

        var body = Self.version
        body.reserveCapacity(512)
        body += DERWriter.tlv(0x02, serial)
        body += algorithm
        body += issuer
        body += DERWriter.tlv(0x30, DERWriter.time(notBefore) + DERWriter.time(notAfter))
        body += DERWriter.tlv(0x30, subject)
        body += spki
        body += DERWriter.tlv(0xa3, DERWriter.tlv(0x30, extensions))
        let tbs = DERWriter.tlv(0x30, body)

        let signature = try signingKey.signature(for: tbs)
        return DERWriter.tlv(0x30, tbs + algorithm + DERWriter.tlv(0x03, [0x00] + signature))
    }
}

/// Just enough of a DER writer for the leaf: definite lengths, primitive values given as bytes.
enum DERWriter {
    static func tlv(_ tag: UInt8, _ content: [UInt8]) -> [UInt8] {
        var out: [UInt8] = [tag]
        out.reserveCapacity(content.count + 4)
        let count = content.count
        switch count {
        case ..<0x80: out.append(UInt8(count))
        case ..<0x100: out += [0x81, UInt8(count)]
        case ..<0x10000: out += [0x82, UInt8(count >> 8), UInt8(count & 0xff)]
        default: out += [0x83, UInt8(count >> 16), UInt8((count >> 8) & 0xff), UInt8(count & 0xff)]
        }
        out += content
        return out
    }

    /// ECDSA-Sig-Value ::= SEQUENCE { r INTEGER, s INTEGER } (RFC 3279 §2.2.3) from r‖s, each half
    /// an unsigned big-endian number: leading zeros dropped, a zero byte added where the top bit is set.
    static func ecdsaSignature(raw: [UInt8]) -> [UInt8] {
        let half = raw.count / 2
        func integer(_ bytes: ArraySlice<UInt8>) -> [UInt8] {
            var digits = bytes.drop { $0 == 0 }
            if digits.isEmpty { digits = [0] }
            return tlv(0x02, (digits.first! & 0x80 != 0 ? [0x00] : []) + digits)
        }
        return tlv(0x30, integer(raw[..<half]) + integer(raw[half...]))
    }

    /// An Extension, not critical, with the OID's content bytes under id-ce (2.5.29).
    static func certificateExtension(_ oid: [UInt8], value: [UInt8]) -> [UInt8] {
        tlv(0x30, tlv(0x06, oid) + tlv(0x04, value))
    }

    /// UTCTime before 2050, GeneralizedTime from then on (RFC 5280 §4.1.2.5), whole seconds, UTC.
    static func time(_ date: Date) -> [UInt8] {
        let seconds = Int64(date.timeIntervalSince1970.rounded(.down))
        let days = seconds >= 0 ? seconds / 86400 : (seconds - 86399) / 86400
        let secondOfDay = Int(seconds - days * 86400)
        let (year, month, day) = civil(fromDays: days)
        func two(_ value: Int) -> [UInt8] { [UInt8(0x30 + value / 10), UInt8(0x30 + value % 10)] }
        var text: [UInt8]
        let tag: UInt8
        if (1950..<2050).contains(year) {
            tag = 0x17
            text = two(year % 100)
        } else {
            tag = 0x18
            text = two(year / 100) + two(year % 100)
        }
        text += two(month) + two(day) + two(secondOfDay / 3600) + two(secondOfDay / 60 % 60) + two(secondOfDay % 60)
        text.append(0x5a)
        return tlv(tag, text)
    }

    /// The proleptic Gregorian date of a day count from 1970-01-01, by 400-year eras.
    private static func civil(fromDays days: Int64) -> (year: Int, month: Int, day: Int) {
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let dayOfEra = z - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let mp = (5 * dayOfYear + 2) / 153
        let day = dayOfYear - (153 * mp + 2) / 5 + 1
        let month = mp < 10 ? mp + 3 : mp - 9
        let year = yearOfEra + era * 400 + (month <= 2 ? 1 : 0)
        return (Int(year), Int(month), Int(day))
    }
}
