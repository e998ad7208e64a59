// The server's side of TPM node attestation: the EK certificate against trusted manufacturer CAs
// (or an allow-list of EK key hashes), the attestation key's attributes and name, and a quote's
// signature, nonce, signer and PCR digest, then the PCR policy. Each refusal names its reason.

public import Foundation
import Crypto
import _CryptoExtras
public import HallmarkAttestation
import SwiftASN1
public import X509

/// Whom the server trusts to vouch for EKs.
public struct TPMTrust: Sendable {
    public var manufacturerCAs: [Certificate]
    /// Hex SHA-256 of EK SubjectPublicKeyInfo DER, accepted without a certificate chain.
    public var allowedEKHashes: Set<String>

    public init(manufacturerCAs: [Certificate] = [], allowedEKHashes: Set<String> = []) {
        self.manufacturerCAs = manufacturerCAs
        self.allowedEKHashes = Set(allowedEKHashes.map { $0.lowercased() })
    }

    /// Loads every PEM or DER certificate in a directory.
    public init(caDirectory: String?, allowedEKHashes: Set<String>) throws {
        var cas: [Certificate] = []
        if let caDirectory {
            let names = try FileManager.default.contentsOfDirectory(atPath: caDirectory).sorted()
            for name in names {
                let path = (caDirectory as NSString).appendingPathComponent(name)
                guard let data = FileManager.default.contents(atPath: path) else { continue }
                if let text = String(data: data, encoding: .utf8), text.contains("-----BEGIN CERTIFICATE-----") {
                    cas += try PEMDocument.parseMultiple(pemString: text).map { try Certificate(derEncoded: $0.derBytes) }
                } else if let certificate = try? Certificate(derEncoded: Array(data)) {
                    cas.append(certificate)
                }
            }
            guard !cas.isEmpty else { throw TPMError("tpm: --tpm-ek-ca-dir \(caDirectory) holds no certificate") }
        }
        self.init(manufacturerCAs: cas, allowedEKHashes: allowedEKHashes)
    }
}

/// Which PCR values a node must have, per bank and index.
public struct TPMPCRPolicy: Hashable, Sendable {
    public var expected: [TPMHash: [Int: [UInt8]]]

    public init(expected: [TPMHash: [Int: [UInt8]]] = [:]) { self.expected = expected }

    /// `{"sha256": {"16": "hex digest", …}, …}`.
    public init(json: Data) throws {
        guard let object = try? JSONSerialization.jsonObject(with: json) as? [String: Any] else {
            throw TPMError("tpm policy: expected a JSON object {\"sha256\": {\"PCR\": \"hex\"}}")
        }
        var expected: [TPMHash: [Int: [UInt8]]] = [:]
        for (bank, values) in object {
            guard let hash = TPMHash(bank: bank) else { throw TPMError("tpm policy: bank '\(bank)' is not sha1, sha256, sha384 or sha512") }
            guard let values = values as? [String: Any] else { throw TPMError("tpm policy: \(bank) must map PCR numbers to hex digests") }
            for (index, value) in values {
                guard let pcr = Int(index), (0..<24).contains(pcr) else { throw TPMError("tpm policy: \(bank).\(index): PCR must be 0 to 23") }
                guard let hex = value as? String, let digest = Hex.decode(hex), digest.count == hash.digestSize else {
                    throw TPMError("tpm policy: \(bank).\(index): expected \(hash.digestSize * 2) hex digits")
                }
                expected[hash, default: [:]][pcr] = digest
            }
        }
        self.expected = expected
    }

    /// What the server asks a node to quote: sha256 PCRs 0–7 and every PCR the policy names.
    public var selection: [TPMHash: [Int]] {
        var selection: [TPMHash: Set<Int>] = [.sha256: Set(0...7)]
        for (bank, values) in expected { selection[bank, default: []].formUnion(values.keys) }
        return selection.mapValues { $0.sorted() }
    }
}

/// A verified endorsement: the EK, its hash, and the CA that vouched for it (nil when allow-listed).
public struct TPMEndorsement: Sendable {
    public let ek: TPMPublic
    public let ekHash: String
    public let vouchedBy: String?
}

public enum TPMVerifier {
    /// The endorsement hierarchy's handle, the first part of a primary key's qualified name.
    static let endorsementHierarchy: UInt32 = 0x4000_000B


    /// Checks the EK certificate (chain to a trusted CA, or the key on the allow-list) and that it
    /// certifies the EK public area the agent sent.
    public static func endorsement(certificate der: [UInt8], ekPublic: [UInt8], trust: TPMTrust, at time: Date) async throws -> TPMEndorsement {
        let ek = try TPMPublic(bytes: ekPublic)
        let certificate: Certificate
        do { certificate = try Certificate(derEncoded: der) } catch { throw TPMError("tpm: the EK certificate is not DER X.509: \(error)") }
        guard try certifiedKey(of: ek) == certificate.publicKey else {
            throw TPMError("tpm: the EK certificate certifies another key than the EK the agent presented")
        }
        let ekHash = Hex.encode(SHA256.hash(data: certificate.publicKey.subjectPublicKeyInfoBytes))
        if trust.allowedEKHashes.contains(ekHash) {
            return TPMEndorsement(ek: ek, ekHash: ekHash, vouchedBy: nil)
        }
        guard !trust.manufacturerCAs.isEmpty else {
            throw TPMError("tpm: EK \(ekHash) is not on the allow-list and no manufacturer CA is configured")
        }
        var verifier = Verifier(rootCertificates: CertificateStore(trust.manufacturerCAs)) {
            RFC5280Policy(validationTime: time)
            EKCertificatePolicy()
        }
        switch await verifier.validate(leaf: certificate, intermediates: CertificateStore()) {
        case .validCertificate(let chain):
            return TPMEndorsement(ek: ek, ekHash: ekHash, vouchedBy: chain.last.map { "\($0.subject)" })
        case .couldNotValidate(let failures):
            let reasons = failures.map { "\($0.policyFailureReason)" }
            throw TPMError("tpm: the EK certificate does not chain to a trusted manufacturer CA: \(reasons.isEmpty ? "no path to a trusted CA" : reasons.joined(separator: "; "))")
        }
    }

    /// The key a TPM public area holds, as a certificate's key, to compare with the EK certificate.
    static func certifiedKey(of area: TPMPublic) throws -> Certificate.PublicKey {
        switch area.key {
        case .rsa(let modulus, let exponent):
            var e = withUnsafeBytes(of: exponent.bigEndian) { Array($0) }
            while e.first == 0 { e.removeFirst() }
            return Certificate.PublicKey(try _RSA.Signing.PublicKey(n: modulus, e: e))
        case .ecc(TPMPublic.curveP256, let x, let y):
            return Certificate.PublicKey(try P256.Signing.PublicKey(rawRepresentation: x + y))
        case .ecc(TPMPublic.curveP384, let x, let y):
            return Certificate.PublicKey(try P384.Signing.PublicKey(rawRepresentation: x + y))
        case .ecc(let curve, _, _):
            throw TPMError("tpm: curve 0x\(String(curve, radix: 16)) is not supported")
        }
    }

    /// Parses the AK and checks it is a TPM-bound restricted signing key that cannot decrypt.
    public static func attestationKey(_ bytes: [UInt8]) throws -> TPMPublic {
        let ak = try TPMPublic(bytes: bytes)
        let required: [(TPMObjectAttributes, String)] = [(.fixedTPM, "fixedTPM"), (.restricted, "restricted"), (.sign, "sign")]
        for (attribute, name) in required where !ak.attributes.contains(attribute) {
            throw TPMError("tpm: the attestation key lacks the \(name) attribute")
        }
        guard !ak.attributes.contains(.decrypt) else { throw TPMError("tpm: the attestation key may decrypt; an AK must only sign") }
        guard case .ecc(TPMPublic.curveP256, _, _) = ak.key, ak.scheme == 0x0018, ak.schemeHash == TPMHash.sha256.rawValue else {
            throw TPMError("tpm: the attestation key must be ECC P-256 with ECDSA-SHA256")
        }
        return ak
    }

    /// The AK's qualified name as a primary key of the endorsement hierarchy: what a quote's
    /// `qualifiedSigner` must be.
    public static func qualifiedName(ak: TPMPublic) -> [UInt8] {
        var input: [UInt8] = []
        input.appendU32(endorsementHierarchy)
        input += ak.name
        var name: [UInt8] = []
        name.appendU16(ak.nameAlg.rawValue)
        return name + ak.nameAlg.digest(input)
    }

    /// Verifies a quote and the policy; returns the `tpm:pcr:<bank>:<index>:<hex>` selectors.
    ///
    /// - Parameters:
    ///   - pcrValues: the values the agent says it quoted, per bank and index.
    ///   - selection: what the server asked for; the quote must cover exactly that.
    public static func verifyQuote(
        attest: [UInt8], signature: [UInt8], pcrValues: [TPMHash: [Int: [UInt8]]], ak: TPMPublic, nonce: [UInt8],
        selection: [TPMHash: [Int]], policy: TPMPCRPolicy
    ) throws -> [Selector] {
        // The signature first: nothing of an unsigned structure is read.
        let signed = try TPMSignature(bytes: signature)
        guard case .ecc(_, let x, let y) = ak.key, case .ecdsa(let r, let s) = signed.value, signed.hash == .sha256 else {
            throw TPMError("tpm: the quote is not signed ECDSA-SHA256 as the attestation key requires")
        }
        let key = try P256.Signing.PublicKey(rawRepresentation: x + y)
        guard r.count <= 32, s.count <= 32,
            let ecdsa = try? P256.Signing.ECDSASignature(rawRepresentation: pad(r, 32) + pad(s, 32)),
            key.isValidSignature(ecdsa, for: SHA256.hash(data: attest))
        else {
            throw TPMError("tpm: the quote's signature does not verify with the attestation key")
        }
        let quote = try TPMQuote(bytes: attest)
        guard quote.qualifiedSigner == qualifiedName(ak: ak) else {
            throw TPMError("tpm: the quote was signed by another key than the attested AK (qualifiedSigner mismatch)")
        }
        guard quote.extraData == nonce else { throw TPMError("tpm: the quote does not carry this server's nonce") }
        let requested = selection.filter { !$0.value.isEmpty }
        let quoted = Dictionary(quote.selections.filter { !$0.pcrs.isEmpty }.map { ($0.hash, $0.pcrs) }, uniquingKeysWith: { $0 + $1 })
        guard quoted == requested else { throw TPMError("tpm: the quote covers other PCRs than the server asked for") }
        var concatenated: [UInt8] = []
        for part in quote.selections {
            for pcr in part.pcrs {
                guard let value = pcrValues[part.hash]?[pcr], value.count == part.hash.digestSize else {
                    throw TPMError("tpm: no \(part.hash) value sent for quoted PCR \(pcr)")
                }
                concatenated += value
            }
        }
        guard signed.hash.digest(concatenated) == quote.pcrDigest else {
            throw TPMError("tpm: the PCR values sent do not match the quote's PCR digest")
        }
        for (bank, values) in policy.expected.sorted(by: { $0.key.rawValue < $1.key.rawValue }) {
            for (pcr, digest) in values.sorted(by: { $0.key < $1.key }) where pcrValues[bank]?[pcr] != digest {
                throw TPMError("tpm: PCR \(bank):\(pcr) is \(Hex.encode(pcrValues[bank]?[pcr] ?? [])), the policy requires \(Hex.encode(digest))")
            }
        }
        var selectors: [Selector] = []
        for part in quote.selections {
            for pcr in part.pcrs {
                selectors.append(try Selector(type: "tpm", value: "pcr:\(part.hash):\(pcr):\(Hex.encode(pcrValues[part.hash]![pcr]!))"))
            }
        }
        return selectors
    }

    private static func pad(_ bytes: [UInt8], _ size: Int) -> [UInt8] {
        [UInt8](repeating: 0, count: max(0, size - bytes.count)) + bytes
    }
}

/// EK certificates carry a critical Subject Alternative Name holding only a directoryName with the
/// TPM's manufacturer, model and version; the verifier reads it, so it may be critical.
struct EKCertificatePolicy: VerifierPolicy {
    let verifyingCriticalExtensions: [ASN1ObjectIdentifier] = [.X509ExtensionID.subjectAlternativeName]

    func chainMeetsPolicyRequirements(chain: UnverifiedCertificateChain) async -> PolicyEvaluationResult { .meetsPolicy }
}
