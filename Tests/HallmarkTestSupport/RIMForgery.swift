// RIMs forged as an attacker would, with the real tools: NVIDIA's document with a golden
// measurement changed, re-signed by xmlsec1 under a key the attacker holds. Each forgery carries
// that key a different way, or bends the signature's shape, so that a verifier that trusts what a
// document says about its own key, or digests less than the whole document, would accept it.

public import Foundation
import Crypto
import SwiftASN1
import X509

public enum RIMForgery: String, CaseIterable, Sendable, CustomStringConvertible {
    /// Signed with a fresh RSA key, carried in <KeyValue><RSAKeyValue>.
    case rsaKeyValue
    /// Signed with a fresh P-384 key, carried in <KeyValue><ECKeyValue> (XML-DSig 1.1).
    case ecKeyValue
    /// Signed by a leaf of a self-made CA, both carried in <X509Data>.
    case selfMadeChain
    /// A second Reference beside the one over the whole document.
    case twoReferences
    /// An XPath transform that leaves the Payload (the golden measurements) out of the digest.
    case extraTransform

    public var description: String { rawValue }

    /// The golden value the forgeries put in place of NVIDIA's first one.
    public static let forgedMeasurement = String(repeating: "00", count: 48)

    /// Writes the forgery of `original` (a signed RIM's XML) into `dir` and returns its path: the
    /// golden value `golden` (hex; the first one when nil) becomes `forged`.
    public func forge(_ original: String, replacing golden: String? = nil, with forged: String = forgedMeasurement, in dir: String) throws -> String {
        let target: String
        if let golden {
            target = golden
        } else {
            guard let hashStart = original.range(of: #"Hash0=""#)?.upperBound else { throw TestFailure("forge: the document has no Hash0") }
            target = String(original[hashStart...].prefix(96))
        }
        guard original.contains(target) else { throw TestFailure("forge: the document has no golden value \(target)") }
        var document = original.replacingOccurrences(of: target, with: forged)
        guard let signatureStart = document.range(of: "<ds:Signature") ?? document.range(of: "<Signature "),
            let signatureEnd = document.range(of: "</ds:Signature>") ?? document.range(of: "</Signature>")
        else { throw TestFailure("forge: the document has no Signature") }
        document.replaceSubrange(signatureStart.lowerBound..<signatureEnd.upperBound, with: template)

        let templatePath = "\(dir)/\(rawValue).template.xml"
        let output = "\(dir)/\(rawValue).swidtag"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try document.write(toFile: templatePath, atomically: true, encoding: .utf8)
        switch self {
        case .rsaKeyValue:
            try Self.run("/usr/bin/openssl", ["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", "\(dir)/attacker-rsa.key"])
            try Self.run("/usr/bin/xmlsec1", ["--sign", "--privkey-pem", "\(dir)/attacker-rsa.key", "--output", output, templatePath])
        case .ecKeyValue:
            // xmlsec1 cannot write an ECKeyValue, so the key is signed with and then written in by hand
            // (KeyInfo lies outside what the signature covers).
            let key = "\(dir)/attacker-ec.key"
            try Self.run("/usr/bin/openssl", ["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384", "-out", key])
            try Self.run("/usr/bin/xmlsec1", ["--sign", "--privkey-pem", key, "--output", output, templatePath])
            try Self.run("/usr/bin/openssl", ["pkey", "-in", key, "-pubout", "-outform", "DER", "-out", "\(dir)/attacker-ec.spki"])
            let point = Data(try Data(contentsOf: URL(fileURLWithPath: "\(dir)/attacker-ec.spki")).suffix(97)).base64EncodedString()
            let keyValue = #"<ds:KeyValue><dsig11:ECKeyValue xmlns:dsig11="http://www.w3.org/2009/xmldsig11#"><dsig11:NamedCurve URI="urn:oid:1.3.132.0.34"/><dsig11:PublicKey>\#(point)</dsig11:PublicKey></dsig11:ECKeyValue></ds:KeyValue>"#
            let signed = try String(contentsOfFile: output, encoding: .utf8)
            guard let placeholder = signed.range(of: "<ds:KeyName>attacker</ds:KeyName>") else { throw TestFailure("forge: no KeyName placeholder") }
            try signed.replacingCharacters(in: placeholder, with: keyValue).write(toFile: output, atomically: true, encoding: .utf8)
        case .selfMadeChain, .twoReferences, .extraTransform:
            try Self.certificate(dir, "attacker-ca", subject: "NVIDIA CoRIM signing Root CA", issuer: nil)
            try Self.certificate(dir, "attacker-signer", subject: "NVIDIA RIM signer", issuer: "attacker-ca")
            try Self.run("/usr/bin/xmlsec1", [
                "--sign", "--privkey-pem", "\(dir)/attacker-signer.key,\(dir)/attacker-signer.pem,\(dir)/attacker-ca.pem", "--output", output, templatePath,
            ])
        }
        return output
    }

    /// The signature template: NVIDIA's shape, bent as the case says.
    var template: String {
        let enveloped = #"<ds:Transform Algorithm="http://www.w3.org/2000/09/xmldsig#enveloped-signature"/>"#
        let c14n11 = #"<ds:Transform Algorithm="http://www.w3.org/2006/12/xml-c14n11"/>"#
        let xpath = #"<ds:Transform Algorithm="http://www.w3.org/TR/1999/REC-xpath-19991116"><ds:XPath>not(ancestor-or-self::*[local-name()='Payload'])</ds:XPath></ds:Transform>"#
        func reference(_ transforms: String) -> String {
            #"<ds:Reference URI=""><ds:Transforms>\#(transforms)</ds:Transforms><ds:DigestMethod Algorithm="http://www.w3.org/2001/04/xmldsig-more#sha384"/><ds:DigestValue></ds:DigestValue></ds:Reference>"#
        }
        let method = self == .rsaKeyValue ? "http://www.w3.org/2001/04/xmldsig-more#rsa-sha384" : "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha384"
        let references: String
        switch self {
        case .twoReferences: references = reference(enveloped + c14n11) + reference(enveloped)
        case .extraTransform: references = reference(enveloped + xpath + c14n11)
        default: references = reference(enveloped + c14n11)
        }
        let keyInfo: String
        switch self {
        case .rsaKeyValue: keyInfo = "<ds:KeyValue/>"
        case .ecKeyValue: keyInfo = "<ds:KeyName>attacker</ds:KeyName>"
        default: keyInfo = "<ds:X509Data/>"
        }
        return #"<ds:Signature xmlns:ds="http://www.w3.org/2000/09/xmldsig#"><ds:SignedInfo><ds:CanonicalizationMethod Algorithm="http://www.w3.org/2006/12/xml-c14n11"/>"#
            + #"<ds:SignatureMethod Algorithm="\#(method)"/>\#(references)</ds:SignedInfo><ds:SignatureValue></ds:SignatureValue><ds:KeyInfo>\#(keyInfo)</ds:KeyInfo></ds:Signature>"#
    }

    static func run(_ executable: String, _ arguments: [String]) throws {
        let result = try Run.process(executable, arguments)
        guard result.status == 0 else { throw TestFailure("\(executable) \(arguments.joined(separator: " ")): \(result.stderr)") }
    }

    /// A P-384 key and certificate, self-signed or issued by `issuer`, valid from 2023 to 2033 (so
    /// that it is valid at every time NVIDIA's own RIM certificates were).
    static func certificate(_ dir: String, _ name: String, subject: String, issuer: String?) throws {
        let key = P384.Signing.PrivateKey()
        let certificateKey = Certificate.PrivateKey(key)
        let subjectName = try DistinguishedName { OrganizationName("NVIDIA Corporation"); CommonName(subject) }
        var issuerName = subjectName
        var issuerKey = certificateKey
        if let issuer {
            let issuerCertificate = try Certificate(pemEncoded: try String(contentsOfFile: "\(dir)/\(issuer).pem", encoding: .utf8))
            issuerName = issuerCertificate.subject
            issuerKey = Certificate.PrivateKey(try P384.Signing.PrivateKey(pemRepresentation: try String(contentsOfFile: "\(dir)/\(issuer).key", encoding: .utf8)))
        }
        let extensions = try Certificate.Extensions {
            Critical(BasicConstraints.isCertificateAuthority(maxPathLength: nil))
            Critical(KeyUsage(keyCertSign: true))
        }
        let leafExtensions = try Certificate.Extensions {
            Critical(BasicConstraints.notCertificateAuthority)
            Critical(KeyUsage(digitalSignature: true))
        }
        let certificate = try Certificate(
            version: .v3, serialNumber: Certificate.SerialNumber(), publicKey: certificateKey.publicKey,
            notValidBefore: Date(timeIntervalSince1970: 1_672_531_200), notValidAfter: Date(timeIntervalSince1970: 1_988_150_400),
            issuer: issuerName, subject: subjectName, signatureAlgorithm: .ecdsaWithSHA384,
            extensions: issuer == nil ? extensions : leafExtensions, issuerPrivateKey: issuerKey
        )
        try key.pemRepresentation.write(toFile: "\(dir)/\(name).key", atomically: true, encoding: .utf8)
        try certificate.serializeAsPEM().pemString.write(toFile: "\(dir)/\(name).pem", atomically: true, encoding: .utf8)
    }
}
