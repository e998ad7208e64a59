// Certificates minted for tests with swift-certificates: roots, intermediates and leaves whose
// every SPIFFE-relevant property can be set, so each verification rule can be broken on its own.

public import X509
import Crypto
public import Foundation
import Synchronization
import SwiftASN1

/// A certificate authority for tests.
public struct TestCA: Sendable {
    public let certificate: Certificate
    public let key: Certificate.PrivateKey

    /// What a CA certificate carries; the defaults are a proper SPIFFE signing certificate.
    public struct Options: Sendable {
        public var name: String
        public var trustDomain: String
        public var isCA = true
        public var keyCertSign = true
        public var notBefore: Date
        public var notAfter: Date

        public init(name: String = "Hallmark Test Root", trustDomain: String = "example.org", now: Date = TestClock.now) {
            self.name = name
            self.trustDomain = trustDomain
            self.notBefore = now.addingTimeInterval(-3600)
            self.notAfter = now.addingTimeInterval(30 * 86400)
        }
    }

    /// A self-signed root.
    public static func root(_ options: Options = Options()) throws -> TestCA {
        let key = Certificate.PrivateKey(P256.Signing.PrivateKey())
        let subject = try DistinguishedName { CommonName(options.name); OrganizationName("Hallmark tests") }
        let certificate = try Certificate(
            version: .v3, serialNumber: Certificate.SerialNumber(), publicKey: key.publicKey,
            notValidBefore: options.notBefore, notValidAfter: options.notAfter,
            issuer: subject, subject: subject, signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try caExtensions(options, publicKey: key.publicKey, issuerKey: nil),
            issuerPrivateKey: key
        )
        return TestCA(certificate: certificate, key: key)
    }

    /// An intermediate signed by this CA.
    public func intermediate(_ options: Options = Options(name: "Hallmark Test Intermediate")) throws -> TestCA {
        let key = Certificate.PrivateKey(P256.Signing.PrivateKey())
        let subject = try DistinguishedName { CommonName(options.name); OrganizationName("Hallmark tests") }
        let certificate = try Certificate(
            version: .v3, serialNumber: Certificate.SerialNumber(), publicKey: key.publicKey,
            notValidBefore: options.notBefore, notValidAfter: options.notAfter,
            issuer: self.certificate.subject, subject: subject, signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Self.caExtensions(options, publicKey: key.publicKey, issuerKey: self.key.publicKey),
            issuerPrivateKey: self.key
        )
        return TestCA(certificate: certificate, key: key)
    }

    /// What a leaf carries; the defaults are a proper X509-SVID for `spiffe://example.org/workload`.
    public struct LeafOptions: Sendable {
        public var uris: [String]
        public var isCA = false
        public var keyUsage: KeyUsage? = KeyUsage(digitalSignature: true)
        public var keyUsageCritical = true
        public var extendedKeyUsage: [ExtendedKeyUsage.Usage]? = [.serverAuth, .clientAuth]
        public var notBefore: Date
        public var notAfter: Date

        public init(id: String = "spiffe://example.org/workload", now: Date = TestClock.now) {
            self.uris = [id]
            self.notBefore = now.addingTimeInterval(-10)
            self.notAfter = now.addingTimeInterval(3600)
        }
    }

    /// A leaf signed by this CA, with its new private key.
    public func leaf(_ options: LeafOptions = LeafOptions()) throws -> (certificate: Certificate, key: Certificate.PrivateKey) {
        let key = Certificate.PrivateKey(P256.Signing.PrivateKey())
        var extensions = Certificate.Extensions()
        try extensions.append(
            Certificate.Extension(BasicConstraints.notCertificateAuthority, critical: true)
        )
        if options.isCA {
            try extensions.update(Certificate.Extension(BasicConstraints.isCertificateAuthority(maxPathLength: nil), critical: true))
        }
        if let usage = options.keyUsage {
            try extensions.append(Certificate.Extension(usage, critical: options.keyUsageCritical))
        }
        if let usages = options.extendedKeyUsage {
            try extensions.append(Certificate.Extension(try ExtendedKeyUsage(usages), critical: false))
        }
        if !options.uris.isEmpty {
            try extensions.append(
                Certificate.Extension(SubjectAlternativeNames(options.uris.map { .uniformResourceIdentifier($0) }), critical: false)
            )
        }
        try extensions.append(Certificate.Extension(SubjectKeyIdentifier(hash: key.publicKey), critical: false))
        try extensions.append(Certificate.Extension(AuthorityKeyIdentifier(keyIdentifier: SubjectKeyIdentifier(hash: self.key.publicKey).keyIdentifier), critical: false))
        let certificate = try Certificate(
            version: .v3, serialNumber: Certificate.SerialNumber(), publicKey: key.publicKey,
            notValidBefore: options.notBefore, notValidAfter: options.notAfter,
            issuer: self.certificate.subject,
            subject: try DistinguishedName { OrganizationName("Hallmark tests") },
            signatureAlgorithm: .ecdsaWithSHA256, extensions: extensions, issuerPrivateKey: self.key
        )
        return (certificate, key)
    }

    private static func caExtensions(_ options: Options, publicKey: Certificate.PublicKey, issuerKey: Certificate.PublicKey?) throws -> Certificate.Extensions {
        var extensions = Certificate.Extensions()
        try extensions.append(
            Certificate.Extension(
                options.isCA ? BasicConstraints.isCertificateAuthority(maxPathLength: nil) : BasicConstraints.notCertificateAuthority,
                critical: true
            )
        )
        try extensions.append(
            Certificate.Extension(
                options.keyCertSign ? KeyUsage(digitalSignature: true, keyCertSign: true, cRLSign: true) : KeyUsage(digitalSignature: true),
                critical: true
            )
        )
        try extensions.append(
            Certificate.Extension(
                SubjectAlternativeNames([.uniformResourceIdentifier("spiffe://\(options.trustDomain)")]), critical: false
            )
        )
        try extensions.append(Certificate.Extension(SubjectKeyIdentifier(hash: publicKey), critical: false))
        if let issuerKey {
            try extensions.append(
                Certificate.Extension(AuthorityKeyIdentifier(keyIdentifier: SubjectKeyIdentifier(hash: issuerKey).keyIdentifier), critical: false)
            )
        }
        return extensions
    }
}

/// A fixed "now" for tests, so that validity windows never depend on the wall clock.
public enum TestClock {
    /// 2026-06-01T12:00:00Z.
    public static let now = Date(timeIntervalSince1970: 1_780_315_200)
}

/// A clock that moves only when a test says so, for code that takes `() -> Date`.
public final class ManualClock: Sendable {
    private let current: Mutex<Date>

    public init(_ start: Date = TestClock.now) { current = Mutex(start) }

    public var now: Date { current.withLock { $0 } }

    public func advance(by interval: TimeInterval) { current.withLock { $0 += interval } }

    public func set(_ time: Date) { current.withLock { $0 = time } }

    /// The clock as a closure to inject.
    public var function: @Sendable () -> Date { { [self] in now } }
}

/// PEM and DER of certificates and keys, for files the tests hand to other programs.
public enum TestPEM {
    public static func der(_ certificate: Certificate) throws -> [UInt8] {
        var serializer = DER.Serializer()
        try serializer.serialize(certificate)
        return serializer.serializedBytes
    }

    public static func pem(_ certificates: [Certificate]) throws -> String {
        try certificates.map { try $0.serializeAsPEM().pemString + "\n" }.joined()
    }

    public static func pem(_ key: Certificate.PrivateKey) throws -> String {
        try key.serializeAsPEM().pemString + "\n"
    }
}
