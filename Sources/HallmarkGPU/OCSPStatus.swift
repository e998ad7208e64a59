// Revocation of the GPU's certificates from OCSP responses given locally (RFC 6960): NVIDIA's
// OCSP service needs the network, so an offline verifier takes its responses as files. Each
// response is checked for its signature (by the certificate's issuer, or a responder certificate
// the issuer delegated to with id-kp-OCSPSigning), for covering the certificate (CertID), and for
// being current at the verification time.

import Crypto
import Foundation
import SPIFFE
import SwiftASN1
import X509

enum OCSPStatus {
    enum Outcome: Equatable {
        case good
        case revoked
        case unknown
    }

    struct Single {
        let hashAlgorithm: ASN1ObjectIdentifier
        let issuerNameHash: [UInt8]
        let issuerKeyHash: [UInt8]
        let serial: [UInt8]
        let outcome: Outcome
        let thisUpdate: Date
        let nextUpdate: Date?
    }

    struct Response {
        let tbs: [UInt8]
        let signatureAlgorithm: ASN1ObjectIdentifier
        let signature: [UInt8]
        let certificates: [Certificate]
        let responses: [Single]
    }

    static let basic: ASN1ObjectIdentifier = [1, 3, 6, 1, 5, 5, 7, 48, 1, 1]
    static let sha1: ASN1ObjectIdentifier = [1, 3, 14, 3, 2, 26]
    static let sha256: ASN1ObjectIdentifier = [2, 16, 840, 1, 101, 3, 4, 2, 1]
    static let sha384: ASN1ObjectIdentifier = [2, 16, 840, 1, 101, 3, 4, 2, 2]
    static let ecdsaSHA256: ASN1ObjectIdentifier = [1, 2, 840, 10045, 4, 3, 2]
    static let ecdsaSHA384: ASN1ObjectIdentifier = [1, 2, 840, 10045, 4, 3, 3]

    private static func children(_ node: ASN1Node, _ what: String) throws -> [ASN1Node] {
        guard case .constructed(let nodes) = node.content else { throw GPUEvidenceError(.malformed, "ocsp: \(what) is not constructed") }
        return Array(nodes)
    }

    private static func bytes(_ node: ASN1Node, _ what: String) throws -> [UInt8] {
        guard case .primitive(let bytes) = node.content else { throw GPUEvidenceError(.malformed, "ocsp: \(what) is not primitive") }
        return Array(bytes)
    }

    private static func time(_ node: ASN1Node) throws -> Date {
        let value = try GeneralizedTime(derEncoded: node)
        var components = DateComponents(timeZone: TimeZone(identifier: "UTC"), year: value.year, month: value.month, day: value.day, hour: value.hours, minute: value.minutes, second: value.seconds)
        components.calendar = Calendar(identifier: .gregorian)
        guard let date = components.date else { throw GPUEvidenceError(.malformed, "ocsp: a time is out of range") }
        return date
    }

    /// Parses a DER OCSPResponse holding a BasicOCSPResponse.
    static func parse(_ der: [UInt8]) throws -> Response {
        let root = try children(try DER.parse(der), "OCSPResponse")
        guard let statusNode = root.first, try bytes(statusNode, "responseStatus") == [0] else {
            throw GPUEvidenceError(.revocation, "ocsp: the response status is not successful")
        }
        guard root.count == 2, let bytesNode = try children(root[1], "responseBytes").first else {
            throw GPUEvidenceError(.malformed, "ocsp: the response carries no responseBytes")
        }
        let responseBytes = try children(bytesNode, "ResponseBytes")
        guard responseBytes.count == 2, try ASN1ObjectIdentifier(derEncoded: responseBytes[0]) == basic else {
            throw GPUEvidenceError(.malformed, "ocsp: the response is not a basic OCSP response")
        }
        let basicNodes = try children(try DER.parse(try bytes(responseBytes[1], "response")), "BasicOCSPResponse")
        guard basicNodes.count >= 3 else { throw GPUEvidenceError(.malformed, "ocsp: BasicOCSPResponse is truncated") }
        let tbs = Array(basicNodes[0].encodedBytes)
        let algorithm = try ASN1ObjectIdentifier(derEncoded: try children(basicNodes[1], "signatureAlgorithm")[0])
        let signature = try ASN1BitString(derEncoded: basicNodes[2])
        var certificates: [Certificate] = []
        if basicNodes.count > 3, let list = try children(basicNodes[3], "certs").first {
            certificates = try children(list, "certs").map { try Certificate(derEncoded: $0) }
        }
        var fields = try children(basicNodes[0], "ResponseData")
        if let first = fields.first, first.identifier.tagClass == .contextSpecific, first.identifier.tagNumber == 0 { fields.removeFirst() }
        guard fields.count >= 3 else { throw GPUEvidenceError(.malformed, "ocsp: ResponseData is truncated") }
        let singles = try children(fields[2], "responses").map { node -> Single in
            let parts = try children(node, "SingleResponse")
            guard parts.count >= 3 else { throw GPUEvidenceError(.malformed, "ocsp: a SingleResponse is truncated") }
            let certID = try children(parts[0], "CertID")
            guard certID.count == 4 else { throw GPUEvidenceError(.malformed, "ocsp: CertID is malformed") }
            let outcome: Outcome
            switch parts[1].identifier.tagNumber {
            case 0: outcome = .good
            case 1: outcome = .revoked
            default: outcome = .unknown
            }
            var nextUpdate: Date?
            if parts.count > 3, parts[3].identifier.tagClass == .contextSpecific, parts[3].identifier.tagNumber == 0 {
                nextUpdate = try time(try children(parts[3], "nextUpdate")[0])
            }
            return Single(
                hashAlgorithm: try ASN1ObjectIdentifier(derEncoded: try children(certID[0], "hashAlgorithm")[0]),
                issuerNameHash: try bytes(certID[1], "issuerNameHash"), issuerKeyHash: try bytes(certID[2], "issuerKeyHash"),
                serial: try bytes(certID[3], "serialNumber"), outcome: outcome, thisUpdate: try time(parts[2]), nextUpdate: nextUpdate
            )
        }
        return Response(tbs: tbs, signatureAlgorithm: algorithm, signature: Array(signature.bytes), certificates: certificates, responses: singles)
    }

    private static func digest(_ algorithm: ASN1ObjectIdentifier, _ data: [UInt8]) -> [UInt8]? {
        switch algorithm {
        case sha1: Array(Insecure.SHA1.hash(data: data))
        case sha256: Array(SHA256.hash(data: data))
        case sha384: Array(SHA384.hash(data: data))
        default: nil
        }
    }

    private static func verify(_ response: Response, key: Certificate.PublicKey) -> Bool {
        let sha384 = response.signatureAlgorithm == ecdsaSHA384
        guard sha384 || response.signatureAlgorithm == ecdsaSHA256 else { return false }
        if let key = P384.Signing.PublicKey(key), let signature = try? P384.Signing.ECDSASignature(derRepresentation: response.signature) {
            return sha384
                ? key.isValidSignature(signature, for: SHA384.hash(data: response.tbs)) : key.isValidSignature(signature, for: SHA256.hash(data: response.tbs))
        }
        if let key = P256.Signing.PublicKey(key), let signature = try? P256.Signing.ECDSASignature(derRepresentation: response.signature) {
            return sha384
                ? key.isValidSignature(signature, for: SHA384.hash(data: response.tbs)) : key.isValidSignature(signature, for: SHA256.hash(data: response.tbs))
        }
        return false
    }

    /// The issuer's subject and subjectPublicKey bits exactly as its certificate encodes them
    /// (CertID hashes those bytes).
    private static func issuerParts(_ certificate: Certificate) throws -> (name: [UInt8], key: [UInt8]) {
        var fields = try children(try children(try DER.parse(certificate.derBytes), "Certificate")[0], "TBSCertificate")
        if let first = fields.first, first.identifier.tagClass == .contextSpecific { fields.removeFirst() }
        guard fields.count > 5 else { throw GPUEvidenceError(.malformed, "ocsp: TBSCertificate is truncated") }
        let spki = try children(fields[5], "SubjectPublicKeyInfo")
        guard spki.count == 2 else { throw GPUEvidenceError(.malformed, "ocsp: SubjectPublicKeyInfo is malformed") }
        return (Array(fields[4].encodedBytes), Array(try ASN1BitString(derEncoded: spki[1]).bytes))
    }

    /// The status of `certificate` (issued by `issuer`) in `responses`, or why it could not be had.
    static func status(of certificate: Certificate, issuer: Certificate, in responses: [Response], at time: Date) -> Result<Outcome, GPUEvidenceError> {
        let name: [UInt8]
        let issuerKey: [UInt8]
        do {
            (name, issuerKey) = try issuerParts(issuer)
        } catch {
            return .failure(GPUEvidenceError(.revocation, "ocsp: cannot read the issuer of \(certificate.subject): \(error)"))
        }
        let serial = certificate.serialNumber.bytes
        for response in responses {
            for single in response.responses {
                guard let nameHash = digest(single.hashAlgorithm, name), let keyHash = digest(single.hashAlgorithm, issuerKey),
                    single.issuerNameHash == nameHash, single.issuerKeyHash == keyHash, Array(single.serial.drop { $0 == 0 }) == Array(serial.drop { $0 == 0 })
                else { continue }
                // Signed by the issuer, or by a responder certificate the issuer signed for OCSP.
                let delegated = response.certificates.first { responder in
                    responder.issuer == issuer.subject && issuer.publicKey.isValidSignature(responder.signature, for: responder)
                        && ((try? responder.extensions.extendedKeyUsage?.contains(.ocspSigning)) ?? false)
                }
                guard verify(response, key: issuer.publicKey) || delegated.map({ verify(response, key: $0.publicKey) }) == true else {
                    return .failure(GPUEvidenceError(.revocation, "ocsp: the response for \(certificate.subject) is not signed by its issuer or a delegated responder"))
                }
                guard single.thisUpdate <= time, single.nextUpdate.map({ time <= $0 }) ?? true else {
                    return .failure(GPUEvidenceError(.revocation, "ocsp: the response for \(certificate.subject) is not current at \(time)"))
                }
                return .success(single.outcome)
            }
        }
        return .failure(GPUEvidenceError(.revocation, "ocsp: no response covers \(certificate.subject)"))
    }
}
