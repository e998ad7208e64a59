// Signing X509-SVIDs from CSRs. The SPIFFE ID comes from the registration, never from the CSR.

public import X509
import Crypto
import _CryptoExtras
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

/// A signed X509-SVID as it goes on the wire.
public struct IssuedX509SVID: Sendable {
    /// DER certificates, leaf first, without the anchor.
    public let chain: [[UInt8]]
    /// The leaf's serial number, big-endian.
    public let serial: [UInt8]
    public let notAfter: Date
}

extension X509CA {
    /// Signs an X509-SVID for a CSR and returns the chain as DER, leaf first, without the anchor.
    ///
    /// The leaf is written from the CA's template (``LeafTemplate``); its one costly step is the
    /// signature. Use ``selfTest(at:)`` once per CA to check the template against the SPIFFE verifier.
    ///
    /// - Throws: ``CAError`` when the CSR is malformed, its signature is wrong, its key is not
    ///   P-256, P-384 or RSA of at least 2048 bits, or the CA has expired.
    public func issueX509SVID(_ params: X509SVIDParams) throws -> IssuedX509SVID {
        let csr = try Self.checkedCSR(params.csr)
        let notAfter = min(params.now.addingTimeInterval(params.ttl), certificate.notValidAfter)
        guard notAfter > params.now else {
            throw CAError(.expired, "ca: the signing certificate expired at \(certificate.notValidAfter); no SVID can be issued")
        }
        let serial = Self.randomSerialBytes()
        let leaf = try template.leaf(
            serial: serial, notBefore: params.now.addingTimeInterval(-svidBackdate), notAfter: notAfter,
            spki: csr.spki, subjectPublicKey: csr.keyBits, uri: params.spiffeID.description, dnsNames: params.dnsNames
        )
        return IssuedX509SVID(
            chain: [leaf] + intermediates.map(\.derBytes), serial: serial,
            notAfter: Date(timeIntervalSince1970: notAfter.timeIntervalSince1970.rounded(.down))
        )
    }

    /// Signs an X509-SVID as ``issueX509SVID(_:)`` does and checks the result with the SPIFFE
    /// verifier before returning it parsed.
    ///
    /// - Throws: ``CAError`` as ``issueX509SVID(_:)``, or (a bug) when the result does not verify.
    public func issueVerifiedX509SVID(_ params: X509SVIDParams) async throws -> [Certificate] {
        let issued = try issueX509SVID(params)
        let bundle = X509Bundle(trustDomain: params.spiffeID.trustDomain, authorities: [anchor])
        do {
            let chain = try issued.chain.map { try Certificate(derEncoded: $0) }
            _ = try await X509SVIDVerifier(bundles: bundle).verify(chain, at: params.now)
            return chain
        } catch let error as SPIFFEError {
            throw CAError(.internalError, "ca: the issued certificate for \(params.spiffeID) failed SVID verification: \(error.message)")
        } catch let error as CAError {
            throw error
        } catch {
            throw CAError(.internalError, "ca: the issued certificate for \(params.spiffeID) does not parse: \(error)")
        }
    }

    /// Signs a throwaway SVID and checks it with the SPIFFE verifier: the template's guard, run
    /// when a CA is created or loaded rather than on every SVID.
    public func selfTest(at now: Date) async throws {
        let request = try SVIDRequest()
        let trustDomain = try TrustDomain(Self.trustDomainName(of: certificate) ?? "hallmark.invalid")
        _ = try await issueVerifiedX509SVID(
            X509SVIDParams(csr: request.csr, spiffeID: SPIFFEID(trustDomain: trustDomain, path: "/hallmark/self-test"), ttl: 60, now: now)
        )
    }

    /// The trust domain in a CA certificate's URI SAN.
    static func trustDomainName(of certificate: Certificate) -> String? {
        guard let names = try? certificate.extensions.subjectAlternativeNames else { return nil }
        for case .uniformResourceIdentifier(let uri) in names {
            if let id = try? SPIFFEID(parsing: uri) { return id.trustDomain.name }
        }
        return nil
    }

    /// 128 random bits, positive, with a non-zero first byte so the encoding is minimal.
    static func randomSerialBytes() -> [UInt8] {
        var generator = SystemRandomNumberGenerator()
        let high = generator.next() as UInt64, low = generator.next() as UInt64
        var bytes = withUnsafeBytes(of: high.bigEndian, Array.init) + withUnsafeBytes(of: low.bigEndian, Array.init)
        bytes[0] = (bytes[0] & 0x7f) | 0x01
        return bytes
    }

    /// The parts of a checked CSR that go into the leaf.
    struct CheckedCSR {
        /// SubjectPublicKeyInfo, DER.
        var spki: ArraySlice<UInt8>
        /// The subjectPublicKey BIT STRING's value.
        var keyBits: ArraySlice<UInt8>
    }

    /// P-256 SubjectPublicKeyInfo up to the point: id-ecPublicKey, prime256v1, BIT STRING of 66.
    private static let p256SPKIPrefix: [UInt8] = [
        0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01,
        0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
    ]
    private static let ecdsaWithSHA256: [UInt8] = [0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02]

    /// Parses a CSR and checks its signature and key. P-256 keys signed with SHA-256 (what every
    /// agent sends) are checked here directly; others go through swift-certificates.
    static func checkedCSR(_ der: [UInt8]) throws -> CheckedCSR {
        let parts: CSRParts
        do { parts = try CSRParts(der) } catch let error as CAError { throw error } catch {
            throw CAError(.invalidCSR, "csr: not a DER PKCS#10 certificate signing request: \(error)")
        }
        if parts.spki.count == 91, parts.spki.starts(with: p256SPKIPrefix), parts.algorithm.elementsEqual(ecdsaWithSHA256) {
            guard let key = try? P256.Signing.PublicKey(x963Representation: parts.spki.dropFirst(26)),
                let signature = try? P256.Signing.ECDSASignature(derRepresentation: parts.signature)
            else { throw CAError(.invalidCSR, "csr: the P-256 key or the signature is malformed") }
            guard key.isValidSignature(signature, for: parts.info) else {
                throw CAError(.invalidCSR, "csr: the signature does not verify with the CSR's own key")
            }
        } else {
            _ = try checkedCSRKey(der)
        }
        return CheckedCSR(spki: parts.spki, keyBits: parts.keyBits)
    }

    /// Parses a CSR, checks its signature and its key, and returns the key.
    public static func checkedCSRKey(_ der: [UInt8]) throws -> Certificate.PublicKey {
        let csr: CertificateSigningRequest
        do {
            csr = try CertificateSigningRequest(derEncoded: der)
        } catch CryptoKitError.incorrectParameterSize {
            // swift-certificates refuses RSA keys under 2048 bits while parsing.
            throw CAError(.invalidCSR, "csr: the key is too small; RSA keys need at least 2048 bits")
        } catch {
            throw CAError(.invalidCSR, "csr: not a DER PKCS#10 certificate signing request: \(error)")
        }
        guard csr.publicKey.isValidSignature(csr.signature, for: csr) else {
            throw CAError(.invalidCSR, "csr: the signature does not verify with the CSR's own key")
        }
        let key = csr.publicKey
        if P256.Signing.PublicKey(key) != nil || P384.Signing.PublicKey(key) != nil { return key }
        // Parsed without the size floor, so that a short key is named as such.
        if let rsa = try? _RSA.Signing.PublicKey(unsafeDERRepresentation: key.subjectPublicKeyInfoBytes) {
            guard rsa.keySizeInBits >= 2048 else {
                throw CAError(.invalidCSR, "csr: the RSA key has \(rsa.keySizeInBits) bits; at least 2048 are required")
            }
            return key
        }
        throw CAError(.invalidCSR, "csr: the key must be P-256, P-384 or RSA of at least 2048 bits")
    }
}

/// A PKCS#10 CSR taken apart (RFC 2986 §4), without judging the key or the signature.
struct CSRParts {
    /// CertificationRequestInfo, DER: what the signature covers.
    var info: ArraySlice<UInt8>
    var spki: ArraySlice<UInt8>
    var keyBits: ArraySlice<UInt8>
    /// signatureAlgorithm, DER.
    var algorithm: ArraySlice<UInt8>
    /// The signature BIT STRING's value.
    var signature: ArraySlice<UInt8>

    init(_ der: [UInt8]) throws {
        let root = try DER.parse(der)
        var top = try Self.children(root, .sequence, count: 3)
        let info = top.removeFirst(), algorithm = top.removeFirst(), signature = top.removeFirst()
        let fields = try Self.children(info, .sequence, count: 4)
        guard fields[0].identifier == .integer, case .primitive(let version) = fields[0].content, version.elementsEqual([0]) else {
            throw CAError(.invalidCSR, "csr: the version must be 0")
        }
        let spki = try Self.children(fields[2], .sequence, count: 2)
        guard algorithm.identifier == .sequence else { throw CAError(.invalidCSR, "csr: signatureAlgorithm is not a SEQUENCE") }
        self.info = info.encodedBytes
        self.spki = fields[2].encodedBytes
        self.keyBits = try Self.bitString(spki[1])
        self.algorithm = algorithm.encodedBytes
        self.signature = try Self.bitString(signature)
    }

    private static func children(_ node: ASN1Node, _ identifier: ASN1Identifier, count: Int) throws -> [ASN1Node] {
        guard node.identifier == identifier, case .constructed(let nodes) = node.content else {
            throw CAError(.invalidCSR, "csr: expected a \(identifier)")
        }
        let children = Array(nodes)
        guard children.count == count else { throw CAError(.invalidCSR, "csr: expected \(count) fields, found \(children.count)") }
        return children
    }

    /// The bytes of a BIT STRING with no unused bits.
    private static func bitString(_ node: ASN1Node) throws -> ArraySlice<UInt8> {
        guard node.identifier == .bitString, case .primitive(let bytes) = node.content, bytes.first == 0 else {
            throw CAError(.invalidCSR, "csr: expected a BIT STRING of whole bytes")
        }
        return bytes.dropFirst()
    }
}
