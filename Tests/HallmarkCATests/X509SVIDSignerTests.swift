// Signing X509-SVIDs from CSRs: the profile, the caps, and the CSRs that are refused.

import Crypto
import _CryptoExtras
import Foundation
import SwiftASN1
import Testing
import X509
@testable import HallmarkCA
import HallmarkTestSupport
import SPIFFE

@Suite("X509-SVID signing")
struct X509SVIDSignerTests {
    let td = try! TrustDomain("example.org")
    let id = try! SPIFFEID(parsing: "spiffe://example.org/model/llama")

    static func csr(_ key: Certificate.PrivateKey, algorithm: Certificate.SignatureAlgorithm = .ecdsaWithSHA256) throws -> [UInt8] {
        let csr = try CertificateSigningRequest(
            version: .v1, subject: try DistinguishedName { CommonName("ignored") }, privateKey: key,
            attributes: CertificateSigningRequest.Attributes(), signatureAlgorithm: algorithm
        )
        var serializer = DER.Serializer()
        try serializer.serialize(csr)
        return serializer.serializedBytes
    }

    @Test("the leaf has the SPIFFE profile and verifies", arguments: X509CA.KeyType.allCases)
    func profile(_ keyType: X509CA.KeyType) async throws {
        let ca = try X509CA.selfSigned(trustDomain: td, keyType: keyType, ttl: 86400, now: TestClock.now)
        let key = Certificate.PrivateKey(P256.Signing.PrivateKey())
        let chain = try await ca.issueVerifiedX509SVID(
            X509SVIDParams(csr: try Self.csr(key), spiffeID: id, dnsNames: ["llama.example.org"], ttl: 3600, now: TestClock.now)
        )
        #expect(chain.count == 1)
        let leaf = chain[0]
        #expect(leaf.publicKey == key.publicKey)
        #expect(leaf.notValidBefore == TestClock.now.addingTimeInterval(-10))
        #expect(leaf.notValidAfter == TestClock.now.addingTimeInterval(3600))
        #expect(leaf.serialNumber.bytes.count == 16)
        let usage = try #require(leaf.extensions[oid: .X509ExtensionID.keyUsage])
        #expect(usage.critical)
        #expect(try leaf.extensions.keyUsage == KeyUsage(digitalSignature: true))
        #expect(try leaf.extensions.basicConstraints == .notCertificateAuthority)
        #expect(try leaf.extensions.extendedKeyUsage?.contains(.clientAuth) == true)
        #expect(try leaf.extensions.subjectKeyIdentifier != nil)
        #expect(try leaf.extensions.authorityKeyIdentifier?.keyIdentifier == (try ca.certificate.extensions.subjectKeyIdentifier)?.keyIdentifier)
        let names = try #require(try leaf.extensions.subjectAlternativeNames)
        #expect(Array(names) == [.uniformResourceIdentifier(id.description), .dnsName("llama.example.org")])
        let verified = try await X509SVIDVerifier(bundles: X509Bundle(trustDomain: td, authorities: [ca.certificate])).verify(chain, at: TestClock.now)
        #expect(verified.id == id)
    }

    /// The leaf swift-certificates' general-purpose builder writes for the same fields, the
    /// reference the template is held to.
    static func referenceLeaf(
        ca: X509CA, serial: [UInt8], key: Certificate.PublicKey, notBefore: Date, notAfter: Date, id: SPIFFEID, dnsNames: [String]
    ) throws -> Certificate {
        try Certificate(
            version: .v3, serialNumber: Certificate.SerialNumber(bytes: serial), publicKey: key,
            notValidBefore: notBefore, notValidAfter: notAfter, issuer: ca.certificate.subject,
            subject: try DistinguishedName {
                OrganizationName("Hallmark")
                if let first = dnsNames.first { CommonName(first) }
            },
            signatureAlgorithm: P384.Signing.PublicKey(ca.certificate.publicKey) != nil ? .ecdsaWithSHA384 : .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(KeyUsage(digitalSignature: true))
                try ExtendedKeyUsage([.serverAuth, .clientAuth])
                Critical(BasicConstraints.notCertificateAuthority)
                SubjectKeyIdentifier(hash: key)
                AuthorityKeyIdentifier(keyIdentifier: SubjectKeyIdentifier(hash: ca.certificate.publicKey).keyIdentifier)
                SubjectAlternativeNames([.uniformResourceIdentifier(id.description)] + dnsNames.map { .dnsName($0) })
            },
            issuerPrivateKey: ca.privateKey
        )
    }

    static let templateCases: [(X509CA.KeyType, String, [String], Date)] = [
        (.p256, "p256", [], TestClock.now),
        (.p256, "p384", ["llama.example.org"], TestClock.now),
        (.p384, "rsa", ["a.example.org", "b.example.org"], TestClock.now),
        // 2051: GeneralizedTime instead of UTCTime.
        (.p384, "p256", ["a.example.org"], Date(timeIntervalSince1970: 2_556_143_999)),
        // A long SAN, so that lengths take two bytes.
        (.p256, "p256", (0..<12).map { "replica-\($0).inference.example.org" }, TestClock.now),
    ]

    @Test("the templated leaf is byte for byte what swift-certificates' builder writes", arguments: templateCases)
    func templateMatchesBuilder(_ caKey: X509CA.KeyType, _ csrKey: String, _ dnsNames: [String], _ now: Date) async throws {
        let ca = try X509CA.selfSigned(trustDomain: td, keyType: caKey, ttl: 86400 * 30, now: now)
        let key: Certificate.PrivateKey = switch csrKey {
        case "p384": Certificate.PrivateKey(P384.Signing.PrivateKey())
        case "rsa": Certificate.PrivateKey(try _RSA.Signing.PrivateKey(keySize: .bits2048))
        default: Certificate.PrivateKey(P256.Signing.PrivateKey())
        }
        let csr = try Self.csr(key, algorithm: csrKey == "rsa" ? .sha256WithRSAEncryption : csrKey == "p384" ? .ecdsaWithSHA384 : .ecdsaWithSHA256)
        let checked = try X509CA.checkedCSR(csr)
        let serial = X509CA.randomSerialBytes()
        let notBefore = now.addingTimeInterval(-10), notAfter = now.addingTimeInterval(3600)
        let der = try ca.template.leaf(
            serial: serial, notBefore: notBefore, notAfter: notAfter, spki: checked.spki, subjectPublicKey: checked.keyBits,
            uri: id.description, dnsNames: dnsNames
        )
        let leaf = try Certificate(derEncoded: der)
        let reference = try Self.referenceLeaf(
            ca: ca, serial: serial, key: key.publicKey, notBefore: notBefore, notAfter: notAfter, id: id, dnsNames: dnsNames
        )
        #expect(leaf.tbsCertificateBytes == reference.tbsCertificateBytes)
        #expect(ca.certificate.publicKey.isValidSignature(leaf.signature, for: leaf))
        _ = try await X509SVIDVerifier(bundles: X509Bundle(trustDomain: td, authorities: [ca.certificate])).verify([leaf], at: now)
    }

    @Test("ECDSA signatures written as DER from r‖s are byte for byte swift-crypto's own, edge halves included")
    func ecdsaSignatureDER() throws {
        let p256 = P256.Signing.PrivateKey(), p384 = P384.Signing.PrivateKey()
        for round in 0..<500 {
            let message = Array("message \(round)".utf8)
            let a = try p256.signature(for: message), b = try p384.signature(for: message)
            #expect(DERWriter.ecdsaSignature(raw: Array(a.rawRepresentation)) == Array(a.derRepresentation))
            #expect(DERWriter.ecdsaSignature(raw: Array(b.rawRepresentation)) == Array(b.derRepresentation))
        }
        // Halves with leading zeros, the top bit set, and the smallest value, as the library writes them.
        let halves: [[UInt8]] = [
            [0x00, 0x00] + Array(repeating: 0x7f, count: 30), [0x80] + Array(repeating: 0x01, count: 31),
            Array(repeating: 0x00, count: 31) + [0x01], [0x00, 0x80] + Array(repeating: 0xff, count: 30),
        ]
        for r in halves {
            for s in halves {
                let signature = try P256.Signing.ECDSASignature(rawRepresentation: r + s)
                #expect(DERWriter.ecdsaSignature(raw: r + s) == Array(signature.derRepresentation), "\(r.prefix(2)) \(s.prefix(2))")
            }
        }
    }

    @Test("a CA's self-test signs and verifies a throwaway SVID", arguments: X509CA.KeyType.allCases)
    func selfTest(_ keyType: X509CA.KeyType) async throws {
        try await X509CA.selfSigned(trustDomain: td, keyType: keyType, ttl: 600, now: TestClock.now).selfTest(at: TestClock.now)
        let root = try TestCA.root()
        try await X509CA.intermediate(trustDomain: td, keyType: keyType, ttl: 600, now: TestClock.now, upstreamCertificate: root.certificate, upstreamKey: root.key)
            .selfTest(at: TestClock.now)
    }

    @Test("the DER chain and the parsed chain agree; the serial and expiry are the leaf's")
    func issuedDER() throws {
        let root = try TestCA.root()
        let ca = try X509CA.intermediate(trustDomain: td, ttl: 86400, now: TestClock.now, upstreamCertificate: root.certificate, upstreamKey: root.key)
        let issued = try ca.issueX509SVID(
            X509SVIDParams(csr: try Self.csr(Certificate.PrivateKey(P256.Signing.PrivateKey())), spiffeID: id, ttl: 90.5, now: TestClock.now)
        )
        let chain = try issued.chain.map { try Certificate(derEncoded: $0) }
        #expect(chain.count == 2 && chain[1] == ca.certificate)
        #expect(chain[0].serialNumber.bytes.elementsEqual(issued.serial))
        #expect(chain[0].notValidAfter == issued.notAfter)
        #expect(issued.notAfter == TestClock.now.addingTimeInterval(90))
    }

    @Test("CSRs that are not whole DER, or have another version, are refused with the reason")
    func malformedCSRs() throws {
        let good = try Self.csr(Certificate.PrivateKey(P256.Signing.PrivateKey()))
        var trailing = good
        trailing.append(0x00)
        #expect(throws: CAError.self) { try X509CA.checkedCSR(trailing) }
        #expect(throws: CAError.self) { try X509CA.checkedCSR(Array(good.dropLast())) }
        #expect(throws: CAError.self) { try X509CA.checkedCSR([]) }
        // The version INTEGER sits at a fixed place for this encoder: 30 81 xx 30 81 xx 02 01 00.
        var version = good
        let at = try #require((0..<20).first { version[$0] == 0x02 && version[$0 + 1] == 0x01 && version[$0 + 2] == 0x00 })
        version[at + 2] = 0x01
        let error = #expect(throws: CAError.self) { try X509CA.checkedCSR(version) }
        #expect(error?.message.contains("version") == true || error?.message.contains("signature") == true, "\(String(describing: error))")
    }

    @Test("the SPIFFE ID comes from the request, never the CSR's subject")
    func idFromRequest() async throws {
        let ca = try X509CA.selfSigned(trustDomain: td, ttl: 86400, now: TestClock.now)
        let chain = try await ca.issueVerifiedX509SVID(
            X509SVIDParams(csr: try Self.csr(Certificate.PrivateKey(P256.Signing.PrivateKey())), spiffeID: id, ttl: 60, now: TestClock.now)
        )
        #expect(!chain[0].subject.description.contains("ignored"))
    }

    @Test("NotAfter is capped by the signing certificate")
    func cappedByCA() async throws {
        let ca = try X509CA.selfSigned(trustDomain: td, ttl: 600, now: TestClock.now)
        let chain = try await ca.issueVerifiedX509SVID(
            X509SVIDParams(csr: try Self.csr(Certificate.PrivateKey(P384.Signing.PrivateKey())), spiffeID: id, ttl: 86400, now: TestClock.now)
        )
        #expect(chain[0].notValidAfter == ca.certificate.notValidAfter)
    }

    @Test("serials are random")
    func randomSerials() async throws {
        let ca = try X509CA.selfSigned(trustDomain: td, ttl: 86400, now: TestClock.now)
        let csr = try Self.csr(Certificate.PrivateKey(P256.Signing.PrivateKey()))
        var serials = Set<[UInt8]>()
        for _ in 0..<20 {
            serials.insert(try await ca.issueVerifiedX509SVID(X509SVIDParams(csr: csr, spiffeID: id, ttl: 60, now: TestClock.now))[0].serialNumber.bytes.map { $0 })
        }
        #expect(serials.count == 20)
    }

    @Test("an upstream CA makes the server CA an intermediate; the bundle holds the upstream root")
    func upstream() async throws {
        let root = try TestCA.root()
        let ca = try X509CA.intermediate(
            trustDomain: td, ttl: 86400, now: TestClock.now, upstreamCertificate: root.certificate, upstreamKey: root.key
        )
        #expect(ca.isUpstreamSigned)
        #expect(ca.anchor == root.certificate)
        let chain = try await ca.issueVerifiedX509SVID(
            X509SVIDParams(csr: try Self.csr(Certificate.PrivateKey(P256.Signing.PrivateKey())), spiffeID: id, ttl: 60, now: TestClock.now)
        )
        #expect(chain == [chain[0], ca.certificate])
        _ = try await X509SVIDVerifier(bundles: X509Bundle(trustDomain: td, authorities: [root.certificate])).verify(chain, at: TestClock.now)
        #expect(ca.certificate.notValidAfter <= root.certificate.notValidAfter)
    }

    @Test("a CSR whose signature does not match its key is refused")
    func badSignature() async throws {
        let ca = try X509CA.selfSigned(trustDomain: td, ttl: 86400, now: TestClock.now)
        var csr = try Self.csr(Certificate.PrivateKey(P256.Signing.PrivateKey()))
        csr[csr.count - 5] ^= 0x01
        let error = await #expect(throws: CAError.self) {
            try await ca.issueVerifiedX509SVID(X509SVIDParams(csr: csr, spiffeID: id, ttl: 60, now: TestClock.now))
        }
        #expect(error?.message.contains("csr:") == true)
    }

    @Test("an RSA key under 2048 bits is refused; 2048 is accepted")
    func rsaSizes() async throws {
        let ca = try X509CA.selfSigned(trustDomain: td, ttl: 86400, now: TestClock.now)
        let small = try _RSA.Signing.PrivateKey(unsafeKeySize: .init(bitCount: 1024))
        let error = await #expect(throws: CAError.self) {
            try await ca.issueVerifiedX509SVID(
                X509SVIDParams(csr: try Self.csr(Certificate.PrivateKey(small), algorithm: .sha256WithRSAEncryption), spiffeID: id, ttl: 60, now: TestClock.now)
            )
        }
        #expect(error?.message.contains("at least 2048 bits") == true, "\(String(describing: error))")
        let big = try _RSA.Signing.PrivateKey(keySize: .bits2048)
        let chain = try await ca.issueVerifiedX509SVID(
            X509SVIDParams(csr: try Self.csr(Certificate.PrivateKey(big), algorithm: .sha256WithRSAEncryption), spiffeID: id, ttl: 60, now: TestClock.now)
        )
        #expect(chain[0].publicKey == Certificate.PrivateKey(big).publicKey)
    }

    @Test("an Ed25519 key is refused, and so is garbage")
    func otherKeys() async throws {
        let ca = try X509CA.selfSigned(trustDomain: td, ttl: 86400, now: TestClock.now)
        let ed = try Self.csr(Certificate.PrivateKey(Curve25519.Signing.PrivateKey()), algorithm: .ed25519)
        await #expect(throws: CAError.self) { try await ca.issueVerifiedX509SVID(X509SVIDParams(csr: ed, spiffeID: id, ttl: 60, now: TestClock.now)) }
        await #expect(throws: CAError.self) { try await ca.issueVerifiedX509SVID(X509SVIDParams(csr: [0x30, 0x00], spiffeID: id, ttl: 60, now: TestClock.now)) }
    }

    @Test("an expired CA issues nothing")
    func expiredCA() async throws {
        let ca = try X509CA.selfSigned(trustDomain: td, ttl: 600, now: TestClock.now)
        await #expect(throws: CAError.self) {
            try await ca.issueVerifiedX509SVID(
                X509SVIDParams(csr: try Self.csr(Certificate.PrivateKey(P256.Signing.PrivateKey())), spiffeID: id, ttl: 60, now: TestClock.now.addingTimeInterval(3600))
            )
        }
    }
}

@Suite("JWT-SVID signing")
struct JWTSignerTests {
    @Test("a signed token validates with the bundle's authority")
    func roundTrip() throws {
        let key = JWTSigningKey.generate(notAfter: TestClock.now.addingTimeInterval(86400))
        let id = try SPIFFEID(parsing: "spiffe://example.org/svc")
        let signed = try key.sign(spiffeID: id, audience: ["a", "b"], ttl: 300, now: TestClock.now)
        let bundle = try JWTBundle(trustDomain: id.trustDomain, authorities: [key.authority])
        let svid = try JWTSVID(parsing: signed.token, bundles: bundle, audience: "b", at: TestClock.now)
        #expect(svid.id == id)
        #expect(svid.keyID == key.keyID)
        #expect(svid.expiresAt == TestClock.now.addingTimeInterval(300))
        #expect(signed.expiresAt == svid.expiresAt)
    }

    @Test("expiry is capped by the key's own life, and an empty audience is refused")
    func caps() throws {
        let key = JWTSigningKey.generate(notAfter: TestClock.now.addingTimeInterval(60))
        let id = try SPIFFEID(parsing: "spiffe://example.org/svc")
        #expect(try key.sign(spiffeID: id, audience: ["a"], ttl: 300, now: TestClock.now).expiresAt == TestClock.now.addingTimeInterval(60))
        #expect(throws: CAError.self) { try key.sign(spiffeID: id, audience: [], ttl: 300, now: TestClock.now) }
    }
}

@Suite("CA key files")
struct KeyFileTests {
    @Test("keys are written 0600 and read back")
    func mode() throws {
        let dir = try TemporaryDirectory("keys")
        let key = Certificate.PrivateKey(P256.Signing.PrivateKey())
        try KeyFile.ensurePrivateDirectory(dir.path("keys"))
        try KeyFile.write(key, to: dir.path("keys/ca.key"))
        let attributes = try FileManager.default.attributesOfItem(atPath: dir.path("keys/ca.key"))
        #expect((attributes[.posixPermissions] as? NSNumber)?.intValue == 0o600)
        let folder = try FileManager.default.attributesOfItem(atPath: dir.path("keys"))
        #expect((folder[.posixPermissions] as? NSNumber)?.intValue == 0o700)
        #expect(try KeyFile.readPrivateKey(dir.path("keys/ca.key")).publicKey == key.publicKey)
    }
}
