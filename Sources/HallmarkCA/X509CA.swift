// An X.509 signing authority: a CA certificate and its key, self-signed or under an upstream CA.

public import X509
import Crypto
public import Foundation
import SwiftASN1
public import SPIFFE

/// The X.509 CA that signs X509-SVIDs.
public struct X509CA: Sendable {
    /// The curve of a CA key.
    public enum KeyType: String, Sendable, CaseIterable {
        case p256 = "p256", p384 = "p384"
    }

    /// A stable name for this key (hex of the subject key identifier).
    public let authorityID: String
    public let certificate: Certificate
    public let privateKey: Certificate.PrivateKey
    /// The trust anchor that goes in the bundle: the CA itself, or the upstream CA.
    public let anchor: Certificate
    /// Whether an upstream CA signed this one.
    public var isUpstreamSigned: Bool { anchor != certificate }
    /// The fixed parts of the leaves this CA signs.
    let template: LeafTemplate

    public init(certificate: Certificate, privateKey: Certificate.PrivateKey, anchor: Certificate? = nil) throws {
        guard privateKey.publicKey == certificate.publicKey else {
            throw CAError(.invalidKey, "ca: the CA key does not match the CA certificate")
        }
        self.certificate = certificate
        self.privateKey = privateKey
        self.anchor = anchor ?? certificate
        self.authorityID = Self.authorityID(for: certificate.publicKey)
        self.template = try LeafTemplate(certificate: certificate, privateKey: privateKey)
    }

    /// The certificates an SVID carries after its leaf: the CA itself when upstream-signed.
    public var intermediates: [Certificate] { isUpstreamSigned ? [certificate] : [] }


    /// A new self-signed root for a trust domain.
    public static func selfSigned(trustDomain: TrustDomain, keyType: KeyType = .p256, ttl: TimeInterval, now: Date) throws -> X509CA {
        let key = makeKey(keyType)
        let subject = try subjectName(trustDomain)
        let certificate = try Certificate(
            version: .v3, serialNumber: randomSerial(), publicKey: key.publicKey,
            notValidBefore: now.addingTimeInterval(-10), notValidAfter: now.addingTimeInterval(ttl),
            issuer: subject, subject: subject, signatureAlgorithm: keyType == .p384 ? .ecdsaWithSHA384 : .ecdsaWithSHA256,
            extensions: try caExtensions(trustDomain: trustDomain, publicKey: key.publicKey, issuerKey: key.publicKey),
            issuerPrivateKey: key
        )
        return try X509CA(certificate: certificate, privateKey: key)
    }

    /// A new intermediate signed by an upstream CA, capped to the upstream certificate's life.
    public static func intermediate(
        trustDomain: TrustDomain, keyType: KeyType = .p256, ttl: TimeInterval, now: Date,
        upstreamCertificate: Certificate, upstreamKey: Certificate.PrivateKey
    ) throws -> X509CA {
        guard upstreamKey.publicKey == upstreamCertificate.publicKey else {
            throw CAError(.invalidKey, "ca: the upstream CA key does not match the upstream CA certificate")
        }
        let key = makeKey(keyType)
        let notAfter = min(now.addingTimeInterval(ttl), upstreamCertificate.notValidAfter)
        guard notAfter > now else {
            throw CAError(.expired, "ca: the upstream CA certificate expired at \(upstreamCertificate.notValidAfter)")
        }
        let algorithm: Certificate.SignatureAlgorithm =
            P384.Signing.PublicKey(upstreamKey.publicKey) != nil ? .ecdsaWithSHA384 : .ecdsaWithSHA256
        let certificate = try Certificate(
            version: .v3, serialNumber: randomSerial(), publicKey: key.publicKey,
            notValidBefore: now.addingTimeInterval(-10), notValidAfter: notAfter,
            issuer: upstreamCertificate.subject, subject: try subjectName(trustDomain), signatureAlgorithm: algorithm,
            extensions: try caExtensions(trustDomain: trustDomain, publicKey: key.publicKey, issuerKey: upstreamKey.publicKey),
            issuerPrivateKey: upstreamKey
        )
        return try X509CA(certificate: certificate, privateKey: key, anchor: upstreamCertificate)
    }

    static func makeKey(_ type: KeyType) -> Certificate.PrivateKey {
        switch type {
        case .p256: Certificate.PrivateKey(P256.Signing.PrivateKey())
        case .p384: Certificate.PrivateKey(P384.Signing.PrivateKey())
        }
    }

    static func subjectName(_ trustDomain: TrustDomain) throws -> DistinguishedName {
        try DistinguishedName {
            OrganizationName("Hallmark")
            CommonName("Hallmark CA \(trustDomain.name)")
        }
    }

    static func randomSerial() -> Certificate.SerialNumber { Certificate.SerialNumber(bytes: randomSerialBytes()) }

    static func caExtensions(trustDomain: TrustDomain, publicKey: Certificate.PublicKey, issuerKey: Certificate.PublicKey) throws
        -> Certificate.Extensions
    {
        try Certificate.Extensions {
            Critical(BasicConstraints.isCertificateAuthority(maxPathLength: nil))
            Critical(KeyUsage(digitalSignature: true, keyCertSign: true, cRLSign: true))
            SubjectKeyIdentifier(hash: publicKey)
            AuthorityKeyIdentifier(keyIdentifier: SubjectKeyIdentifier(hash: issuerKey).keyIdentifier)
            SubjectAlternativeNames([.uniformResourceIdentifier(trustDomain.id.description)])
        }
    }

    /// The authority ID of a CA certificate, as the journal and `authority show` name it.
    public static func authorityID(of certificate: Certificate) -> String {
        authorityID(for: certificate.publicKey)
    }

    static func authorityID(for key: Certificate.PublicKey) -> String {
        Hex.encode(SubjectKeyIdentifier(hash: key).keyIdentifier)
    }
}

/// A failure of the CA: a stable code to match on, and a message naming the cause.
///
/// Match on ``code``; read ``message`` for the cause. Each API maps codes to its statuses in one
/// place (the server's `RPCErrors`).
public struct CAError: Error, Hashable, Sendable, CustomStringConvertible {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        fileprivate enum Base: String, Hashable, Sendable {
            case invalidCSR, invalidArgument, expired, failedPrecondition, notFound, unavailable, invalidKey, configuration, internalError
        }

        fileprivate let base: Base
        fileprivate init(_ base: Base) { self.base = base }

        public var description: String { base.rawValue }

        /// A CSR that is malformed, badly signed, or of a key the CA does not sign.
        public static let invalidCSR = Code(.invalidCSR)
        /// A request the CA refuses as given (a JWT-SVID without an audience).
        public static let invalidArgument = Code(.invalidArgument)
        /// A CA certificate or key, or an authority, past its end.
        public static let expired = Code(.expired)
        /// A rule of the keys' life refuses the operation in the state they are in.
        public static let failedPrecondition = Code(.failedPrecondition)
        /// No authority with the ID named.
        public static let notFound = Code(.notFound)
        /// No key can sign now (none active yet).
        public static let unavailable = Code(.unavailable)
        /// A CA key that does not match its certificate, is of an unsupported type, or cannot be read.
        public static let invalidKey = Code(.invalidKey)
        /// A file or directory the CA is configured with cannot be used.
        public static let configuration = Code(.configuration)
        /// The CA produced something that does not verify: a bug, never the caller's fault.
        public static let internalError = Code(.internalError)
    }

    public let code: Code
    /// A sentence naming the cause, prefixed by the area (`ca:`, `csr:`, `authority:`, `jwt:`).
    public let message: String
    /// What the CA's own failure came from, when another error caused it.
    public let underlying: String?

    public init(_ code: Code, _ message: String, underlying: (any Error)? = nil) {
        self.code = code
        self.message = message
        self.underlying = underlying.map { "\($0)" }
    }

    public var description: String { message }
}
