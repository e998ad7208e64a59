// The server's side of TPM node attestation: the EK certificate against trusted manufacturer CAs
// (or an allow-list of EK key hashes), the attestation key's attributes and name, and a quote's
// signature, nonce, signer and PCR digest, then the PCR policy. Each refusal names its reason.

public import Foundation
import Crypto
import SPIFFE
import _CryptoExtras
public import HallmarkAttestation
import SwiftASN1
public import X509

/// Whom the server trusts to vouch for EKs.
public struct TPMTrust: Sendable {
    /// The trust anchors: manufacturers' root CAs.
    public var manufacturerCAs: [Certificate]
    /// Manufacturers' intermediate CAs: used to build a path to a root, never trusted on their own.
    public var intermediates: [Certificate]
    /// Hex SHA-256 of EK SubjectPublicKeyInfo DER, accepted without a certificate chain.
    public var allowedEKHashes: Set<String>

    public init(manufacturerCAs: [Certificate] = [], intermediates: [Certificate] = [], allowedEKHashes: Set<String> = []) {
        self.manufacturerCAs = manufacturerCAs
        self.intermediates = intermediates
        self.allowedEKHashes = Set(allowedEKHashes.map { $0.lowercased() })
    }

    /// Loads every PEM or DER certificate in the CA directory (roots) and in the intermediate directory.
    public init(caDirectory: String?, intermediateDirectory: String? = nil, allowedEKHashes: Set<String>) throws {
        let cas = try caDirectory.map { try Self.certificates(in: $0, flag: "--tpm-ek-ca-dir") } ?? []
        let intermediates = try intermediateDirectory.map { try Self.certificates(in: $0, flag: "--tpm-ek-intermediate-dir") } ?? []
        self.init(manufacturerCAs: cas, intermediates: intermediates, allowedEKHashes: allowedEKHashes)
    }

    private static func certificates(in directory: String, flag: String) throws -> [Certificate] {
        var certificates: [Certificate] = []
        for name in try FileManager.default.contentsOfDirectory(atPath: directory).sorted() {
            let path = (directory as NSString).appendingPathComponent(name)
            guard let data = FileManager.default.contents(atPath: path) else { continue }
            if let text = String(data: data, encoding: .utf8), text.contains("-----BEGIN CERTIFICATE-----") {
                certificates += try PEMDocument.parseMultiple(pemString: text).map { try Certificate(derEncoded: $0.derBytes) }
            } else if let certificate = try? Certificate(derEncoded: Array(data)) {
                certificates.append(certificate)
            }
        }
        guard !certificates.isEmpty else { throw TPMError(.configuration, "tpm: \(flag) \(directory) holds no certificate") }
        return certificates
    }
}

/// Which PCR values a node must have, per bank and index.
public struct TPMPCRPolicy: Hashable, Sendable {
    public var expected: [TPMHash: [Int: [UInt8]]]

    public init(expected: [TPMHash: [Int: [UInt8]]] = [:]) { self.expected = expected }

    /// `{"sha256": {"16": "hex digest", …}, …}`.
    public init(json: Data) throws {
        guard let object = try? JSONSerialization.jsonObject(with: json) as? [String: Any] else {
            throw TPMError(.policy, "tpm policy: expected a JSON object {\"sha256\": {\"PCR\": \"hex\"}}")
        }
        var expected: [TPMHash: [Int: [UInt8]]] = [:]
        for (bank, values) in object {
            guard let hash = TPMHash(bank: bank) else { throw TPMError(.policy, "tpm policy: bank '\(bank)' is not sha1, sha256, sha384 or sha512") }
            guard let values = values as? [String: Any] else { throw TPMError(.policy, "tpm policy: \(bank) must map PCR numbers to hex digests") }
            for (index, value) in values {
                guard let pcr = Int(index), (0..<24).contains(pcr) else { throw TPMError(.policy, "tpm policy: \(bank).\(index): PCR must be 0 to 23") }
                guard let hex = value as? String, let digest = Hex.decode(hex), digest.count == hash.digestSize else {
                    throw TPMError(.policy, "tpm policy: \(bank).\(index): expected \(hash.digestSize * 2) hex digits")
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
        do { certificate = try Certificate(derEncoded: der) } catch { throw TPMError(.malformed, "tpm: the EK certificate is not DER X.509: \(error)") }
        guard try certifiedKey(of: ek) == certificate.publicKey else {
            throw TPMError(.untrustedEK, "tpm: the EK certificate certifies another key than the EK the agent presented")
        }
        let ekHash = try Self.ekHash(certificate.publicKey)
        if trust.allowedEKHashes.contains(ekHash) {
            return TPMEndorsement(ek: ek, ekHash: ekHash, vouchedBy: nil)
        }
        guard !trust.manufacturerCAs.isEmpty else {
            throw TPMError(.untrustedEK, "tpm: EK \(ekHash) is not on the allow-list and no manufacturer CA is configured")
        }
        var verifier = Verifier(rootCertificates: CertificateStore(trust.manufacturerCAs)) {
            RFC5280Policy(validationTime: time)
            EKCertificatePolicy()
        }
        switch await verifier.validate(leaf: certificate, intermediates: CertificateStore(trust.intermediates)) {
        case .validCertificate(let chain):
            return TPMEndorsement(ek: ek, ekHash: ekHash, vouchedBy: chain.last.map { "\($0.subject)" })
        case .couldNotValidate(let failures):
            let reasons = failures.map { "\($0.policyFailureReason)" }
            throw TPMError(.untrustedEK, "tpm: the EK certificate does not chain to a trusted manufacturer CA: \(reasons.isEmpty ? "no path to a trusted CA" : reasons.joined(separator: "; "))")
        }
    }

    /// The EK's identity: hex SHA-256 of its DER SubjectPublicKeyInfo, the value
    /// `openssl x509 -pubkey -noout | openssl pkey -pubin -outform DER | sha256sum` prints.
    public static func ekHash(_ key: Certificate.PublicKey) throws -> String {
        var serializer = DER.Serializer()
        try serializer.serialize(key)
        return Hex.encode(SHA256.hash(data: serializer.serializedBytes))
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
            throw TPMError(.unsupported, "tpm: curve 0x\(String(curve, radix: 16)) is not supported")
        }
    }

    /// Parses the AK and checks it is a TPM-bound restricted signing key that cannot decrypt.
    public static func attestationKey(_ bytes: [UInt8]) throws -> TPMPublic {
        let ak = try TPMPublic(bytes: bytes)
        let required: [(TPMObjectAttributes, String)] = [(.fixedTPM, "fixedTPM"), (.restricted, "restricted"), (.sign, "sign")]
        for (attribute, name) in required where !ak.attributes.contains(attribute) {
            throw TPMError(.invalidKey, "tpm: the attestation key lacks the \(name) attribute")
        }
        guard !ak.attributes.contains(.decrypt) else { throw TPMError(.invalidKey, "tpm: the attestation key may decrypt; an AK must only sign") }
        guard case .ecc(TPMPublic.curveP256, _, _) = ak.key, ak.scheme == 0x0018, ak.schemeHash == TPMHash.sha256.rawValue else {
            throw TPMError(.invalidKey, "tpm: the attestation key must be ECC P-256 with ECDSA-SHA256")
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
            throw TPMError(.invalidQuote, "tpm: the quote is not signed ECDSA-SHA256 as the attestation key requires")
        }
        let key = try P256.Signing.PublicKey(rawRepresentation: x + y)
        guard r.count <= 32, s.count <= 32,
            let ecdsa = try? P256.Signing.ECDSASignature(rawRepresentation: pad(r, 32) + pad(s, 32)),
            key.isValidSignature(ecdsa, for: SHA256.hash(data: attest))
        else {
            throw TPMError(.invalidQuote, "tpm: the quote's signature does not verify with the attestation key")
        }
        let quote = try TPMQuote(bytes: attest)
        guard quote.qualifiedSigner == qualifiedName(ak: ak) else {
            throw TPMError(.invalidQuote, "tpm: the quote was signed by another key than the attested AK (qualifiedSigner mismatch)")
        }
        guard quote.extraData == nonce else { throw TPMError(.invalidQuote, "tpm: the quote does not carry this server's nonce") }
        let requested = selection.filter { !$0.value.isEmpty }
        let quoted = Dictionary(quote.selections.filter { !$0.pcrs.isEmpty }.map { ($0.hash, $0.pcrs) }, uniquingKeysWith: { $0 + $1 })
        guard quoted == requested else { throw TPMError(.invalidQuote, "tpm: the quote covers other PCRs than the server asked for") }
        var concatenated: [UInt8] = []
        for part in quote.selections {
            for pcr in part.pcrs {
                guard let value = pcrValues[part.hash]?[pcr], value.count == part.hash.digestSize else {
                    throw TPMError(.invalidQuote, "tpm: no \(part.hash) value sent for quoted PCR \(pcr)")
                }
                concatenated += value
            }
        }
        guard signed.hash.digest(concatenated) == quote.pcrDigest else {
            throw TPMError(.invalidQuote, "tpm: the PCR values sent do not match the quote's PCR digest")
        }
        for (bank, values) in policy.expected.sorted(by: { $0.key.rawValue < $1.key.rawValue }) {
            for (pcr, digest) in values.sorted(by: { $0.key < $1.key }) where pcrValues[bank]?[pcr] != digest {
                throw TPMError(.pcrMismatch, "tpm: PCR \(bank):\(pcr) is \(Hex.encode(pcrValues[bank]?[pcr] ?? [])), the policy requires \(Hex.encode(digest))")
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
/// What the TCG EK Credential Profile asks of the EK certificate itself: where it has a key usage,
/// the one its key type is for (keyEncipherment for RSA, keyAgreement for ECC) and never
/// certificate signing; where it has an extended key usage, tcg-kp-EKCertificate.
struct EKCertificatePolicy: VerifierPolicy {
    static let ekCertificateUsage = ExtendedKeyUsage.Usage(oid: [2, 23, 133, 8, 1])
    let verifyingCriticalExtensions: [ASN1ObjectIdentifier] = [
        .X509ExtensionID.subjectAlternativeName, .X509ExtensionID.keyUsage, .X509ExtensionID.extendedKeyUsage,
    ]

    func chainMeetsPolicyRequirements(chain: UnverifiedCertificateChain) async -> PolicyEvaluationResult {
        let leaf = chain.leaf
        do {
            if let usage = try leaf.extensions.keyUsage {
                guard !usage.keyCertSign else { return .failsToMeetPolicy(reason: "tpm: the EK certificate's key usage includes keyCertSign") }
                let rsa = _RSA.Signing.PublicKey(leaf.publicKey) != nil
                if rsa, !usage.keyEncipherment {
                    return .failsToMeetPolicy(reason: "tpm: an RSA EK certificate's key usage must include keyEncipherment")
                }
                if !rsa, !usage.keyAgreement {
                    return .failsToMeetPolicy(reason: "tpm: an ECC EK certificate's key usage must include keyAgreement")
                }
            }
            if let extended = try leaf.extensions.extendedKeyUsage, !extended.contains(Self.ekCertificateUsage) {
                return .failsToMeetPolicy(reason: "tpm: the EK certificate's extended key usage lacks tcg-kp-EKCertificate (2.23.133.8.1)")
            }
        } catch {
            return .failsToMeetPolicy(reason: "tpm: the EK certificate's key usage extensions cannot be read: \(error)")
        }
        return .meetsPolicy
    }
}
