// TPM attestation against a real swtpm with EK certificates from a CA the test owns: the device
// side (ESYS) and the verifier side meet, for RSA and ECC EKs, and each forgery is refused with
// its reason.

import Crypto
import Foundation
import HallmarkTPM
import SwiftASN1
import HallmarkTestSupport
import Testing
import X509

@Suite("TPM attestation with swtpm", .serialized)
struct TPMAttestationTests {
    struct Fixture {
        let swtpm: TestSwtpm
        let device: TPMDevice
        let trust: TPMTrust

        init() throws {
            swtpm = try TestSwtpm()
            device = try TPMDevice(tcti: swtpm.tcti)
            trust = try TPMTrust(caDirectory: swtpm.caDirectory, allowedEKHashes: [])
        }
    }

    static let selection: [TPMHash: [Int]] = [.sha256: Array(0...7) + [16]]

    static func nonce() -> [UInt8] { (0..<32).map { _ in UInt8.random(in: 0...255) } }

    @Test("the full flow: EK certificate, credential activation, quote, policy", arguments: TPMDevice.EndorsementKey.allCases)
    func fullFlow(_ kind: TPMDevice.EndorsementKey) async throws {
        let fixture = try Fixture()
        let endorsement = try await TPMVerifier.endorsement(
            certificate: try fixture.device.ekCertificate(kind), ekPublic: try fixture.device.ekPublic(kind), trust: fixture.trust, at: Date()
        )
        #expect(endorsement.vouchedBy?.contains("Hallmark Test TPM Manufacturer CA") == true)
        #expect(endorsement.ekHash.count == 64)
        let ak = try TPMVerifier.attestationKey(try fixture.device.attestationKeyPublic())

        let credential = Self.nonce()
        let challenge = try TPMCredential.make(ek: endorsement.ek, objectName: ak.name, credential: credential)
        #expect(try fixture.device.activateCredential(kind, blob: challenge.blob, secret: challenge.secret) == credential)

        try fixture.swtpm.extend(pcr: 16, digestHex: String(repeating: "ab", count: 32))
        let nonce = Self.nonce()
        let quote = try fixture.device.quote(Self.selection, nonce: nonce)
        let pcr16 = try #require(quote.pcrs[.sha256]?[16])
        let policy = TPMPCRPolicy(expected: [.sha256: [16: pcr16, 0: [UInt8](repeating: 0, count: 32)]])
        let selectors = try TPMVerifier.verifyQuote(
            attest: quote.attest, signature: quote.signature, pcrValues: quote.pcrs, ak: ak, nonce: nonce, selection: Self.selection, policy: policy
        )
        #expect(selectors.count == 9)
        #expect(selectors.map(\.description).contains("tpm:pcr:sha256:16:\(pcr16.map { String(format: "%02x", $0) }.joined())"))
        #expect(selectors.map(\.description).contains("tpm:pcr:sha256:0:" + String(repeating: "0", count: 64)))
    }

    @Test("an EK certificate from an untrusted CA is refused; the allow-list accepts the key itself")
    func untrustedCA() async throws {
        let fixture = try Fixture()
        let other = try TestSwtpm(caName: "Some Other Manufacturer")
        let foreign = try TPMTrust(caDirectory: other.caDirectory, allowedEKHashes: [])
        let certificate = try fixture.device.ekCertificate(.rsa)
        let ekPublic = try fixture.device.ekPublic(.rsa)
        let refused = await #expect(throws: TPMError.self) {
            try await TPMVerifier.endorsement(certificate: certificate, ekPublic: ekPublic, trust: foreign, at: Date())
        }
        #expect(refused?.message.contains("does not chain to a trusted manufacturer CA") == true)
        #expect(refused?.code == .untrustedEK)
        let trusted = try await TPMVerifier.endorsement(certificate: certificate, ekPublic: ekPublic, trust: fixture.trust, at: Date())
        let allowed = try await TPMVerifier.endorsement(
            certificate: certificate, ekPublic: ekPublic, trust: TPMTrust(allowedEKHashes: [trusted.ekHash]), at: Date()
        )
        #expect(allowed.vouchedBy == nil && allowed.ekHash == trusted.ekHash)
        // A certificate for another TPM's EK does not vouch for this one.
        let swapped = await #expect(throws: TPMError.self) {
            try await TPMVerifier.endorsement(certificate: try TPMDevice(tcti: other.tcti).ekCertificate(.rsa), ekPublic: ekPublic, trust: fixture.trust, at: Date())
        }
        #expect(swapped?.message.contains("certifies another key") == true)
        #expect(swapped?.code == .untrustedEK)
    }

    @Test("a credential made for another AK name does not activate (TPM_RC_INTEGRITY)")
    func wrongAKName() throws {
        let fixture = try Fixture()
        let ek = try TPMPublic(bytes: try fixture.device.ekPublic(.rsa))
        let ak = try TPMVerifier.attestationKey(try fixture.device.attestationKeyPublic())
        var name = ak.name
        name[name.count - 1] ^= 0x01
        let challenge = try TPMCredential.make(ek: ek, objectName: name, credential: Self.nonce())
        let refused = #expect(throws: TPMError.self) { try fixture.device.activateCredential(.rsa, blob: challenge.blob, secret: challenge.secret) }
        #expect(refused?.message.contains("ActivateCredential") == true)
        #expect(refused?.code == .device)
        #expect(refused?.message.contains("0x1df") == true || refused?.message.contains("integrity") == true, "\(refused?.message ?? "")")
    }

    @Test("an AK without restricted, or one that may decrypt, is refused")
    func akAttributes() throws {
        let fixture = try Fixture()
        let bytes = try fixture.device.attestationKeyPublic()
        // objectAttributes is the u32 at offset 4 (after type and nameAlg); restricted is bit 16.
        var unrestricted = bytes
        unrestricted[5] &= ~0x01
        let refused = #expect(throws: TPMError.self) { try TPMVerifier.attestationKey(unrestricted) }
        #expect(refused?.message.contains("lacks the restricted attribute") == true)
        #expect(refused?.code == .invalidKey)
        var decrypting = bytes
        decrypting[5] |= 0x02
        let decrypt = #expect(throws: TPMError.self) { try TPMVerifier.attestationKey(decrypting) }
        #expect(decrypt?.message.contains("may decrypt") == true)
        #expect(decrypt?.code == .invalidKey)
        let truncated = #expect(throws: TPMError.self) { try TPMVerifier.attestationKey(Array(bytes.dropLast())) }
        #expect(truncated?.message.contains("TPMT_PUBLIC.unique.ecc.y") == true)
        #expect(truncated?.code == .malformed)
    }

    @Test("a tampered TPMS_ATTEST, another nonce, other PCR values, or a policy miss are each refused")
    func quoteForgeries() throws {
        let fixture = try Fixture()
        let ak = try TPMVerifier.attestationKey(try fixture.device.attestationKeyPublic())
        let nonce = Self.nonce()
        let quote = try fixture.device.quote(Self.selection, nonce: nonce)
        func verify(attest: [UInt8] = quote.attest, pcrs: [TPMHash: [Int: [UInt8]]] = quote.pcrs, nonce: [UInt8] = nonce, policy: TPMPCRPolicy = TPMPCRPolicy()) throws {
            _ = try TPMVerifier.verifyQuote(attest: attest, signature: quote.signature, pcrValues: pcrs, ak: ak, nonce: nonce, selection: Self.selection, policy: policy)
        }
        try verify()
        for index in [0, 6, quote.attest.count / 2, quote.attest.count - 1] {
            var tampered = quote.attest
            tampered[index] ^= 0x01
            let refused = #expect(throws: TPMError.self) { try verify(attest: tampered) }
            #expect(refused?.message.contains("signature does not verify") == true, "byte \(index): \(refused?.message ?? "")")
            #expect(refused?.code == .invalidQuote)
        }
        let replayed = #expect(throws: TPMError.self) { try verify(nonce: Self.nonce()) }
        #expect(replayed?.message.contains("nonce") == true)
        #expect(replayed?.code == .invalidQuote)
        var lying = quote.pcrs
        lying[.sha256]![3] = [UInt8](repeating: 0x11, count: 32)
        let lie = #expect(throws: TPMError.self) { try verify(pcrs: lying) }
        #expect(lie?.message.contains("do not match the quote's PCR digest") == true)
        #expect(lie?.code == .invalidQuote)
        let policy = TPMPCRPolicy(expected: [.sha256: [16: [UInt8](repeating: 0x22, count: 32)]])
        let miss = #expect(throws: TPMError.self) { try verify(policy: policy) }
        #expect(miss?.message.contains("PCR sha256:16 is") == true)
        #expect(miss?.code == .pcrMismatch)
    }

    @Test("a PCR policy file names the field and the rule when it is wrong")
    func policyFile() throws {
        let good = try TPMPCRPolicy(json: Data(#"{"sha256": {"16": "\#(String(repeating: "0", count: 64))"}}"#.utf8))
        #expect(good.selection[.sha256] == Array(0...7) + [16])
        for (json, reason) in [
            (#"{"md5": {"1": "00"}}"#, "bank 'md5'"), (#"{"sha256": {"24": "00"}}"#, "PCR must be 0 to 23"),
            (#"{"sha256": {"1": "abc"}}"#, "64 hex digits"), ("[]", "expected a JSON object"),
        ] {
            let refused = #expect(throws: TPMError.self) { try TPMPCRPolicy(json: Data(json.utf8)) }
            #expect(refused?.message.contains(reason) == true, "\(json): \(refused?.message ?? "")")
            #expect(refused?.code == .policy)
        }
    }

    @Test("the EK hash is SHA-256 of the DER SubjectPublicKeyInfo, as openssl computes it", arguments: TPMDevice.EndorsementKey.allCases)
    func ekHashMatchesOpenSSL(_ kind: TPMDevice.EndorsementKey) async throws {
        let fixture = try Fixture()
        let der = try fixture.device.ekCertificate(kind)
        let endorsement = try await TPMVerifier.endorsement(certificate: der, ekPublic: try fixture.device.ekPublic(kind), trust: fixture.trust, at: Date())
        let path = fixture.swtpm.dir.path("ek-\(kind).der")
        FileManager.default.createFile(atPath: path, contents: Data(der))
        let openssl = try Run.process("/bin/sh", ["-c", "openssl x509 -inform DER -in '\(path)' -pubkey -noout | openssl pkey -pubin -outform DER | sha256sum"])
        #expect(openssl.status == 0, "\(openssl.stderr)")
        #expect(endorsement.ekHash == String(openssl.stdout.prefix(64)), "ours \(endorsement.ekHash), openssl \(openssl.stdout)")
    }

    /// The EK certificate issued anew for the same key by `issuer`, with the given usages.
    static func reissue(_ der: [UInt8], by issuer: (certificate: Certificate, key: Certificate.PrivateKey), keyUsage: KeyUsage?, extended: [ExtendedKeyUsage.Usage]?) throws -> [UInt8] {
        let original = try Certificate(derEncoded: der)
        var extensions = Certificate.Extensions()
        if let keyUsage { try extensions.append(.init(keyUsage, critical: true)) }
        if let extended { try extensions.append(.init(try ExtendedKeyUsage(extended), critical: false)) }
        let certificate = try Certificate(
            version: .v3, serialNumber: Certificate.SerialNumber(), publicKey: original.publicKey,
            notValidBefore: Date().addingTimeInterval(-3600), notValidAfter: Date().addingTimeInterval(86400),
            issuer: issuer.certificate.subject, subject: original.subject, signatureAlgorithm: .ecdsaWithSHA256, extensions: extensions,
            issuerPrivateKey: issuer.key
        )
        var serializer = DER.Serializer()
        try serializer.serialize(certificate)
        return serializer.serializedBytes
    }

    static func manufacturer(_ swtpm: TestSwtpm) throws -> (certificate: Certificate, key: Certificate.PrivateKey) {
        let key = try P256.Signing.PrivateKey(pemRepresentation: try String(contentsOfFile: swtpm.dir.path("localca/signkey.pem"), encoding: .utf8))
        return (try Certificate(pemEncoded: try String(contentsOfFile: swtpm.caCertificatePath, encoding: .utf8)), Certificate.PrivateKey(key))
    }

    @Test("an EK certificate whose key usage or extended key usage is not an EK's is refused, naming the rule")
    func ekUsages() async throws {
        let fixture = try Fixture()
        let der = try fixture.device.ekCertificate(.rsa)
        let ekPublic = try fixture.device.ekPublic(.rsa)
        let ca = try Self.manufacturer(fixture.swtpm)
        let cases: [(KeyUsage?, [ExtendedKeyUsage.Usage]?, String?)] = [
            (KeyUsage(keyEncipherment: true), nil, nil),
            (KeyUsage(keyEncipherment: true), [EKCertificateUsage.oid], nil),
            (KeyUsage(digitalSignature: true, keyEncipherment: true, keyCertSign: true), nil, "includes keyCertSign"),
            (KeyUsage(digitalSignature: true), nil, "must include keyEncipherment"),
            (KeyUsage(keyEncipherment: true), [.serverAuth], "lacks tcg-kp-EKCertificate"),
        ]
        for (usage, extended, rule) in cases {
            let reissued = try Self.reissue(der, by: ca, keyUsage: usage, extended: extended)
            if let rule {
                let refused = await #expect(throws: TPMError.self) {
                    try await TPMVerifier.endorsement(certificate: reissued, ekPublic: ekPublic, trust: fixture.trust, at: Date())
                }
                #expect(refused?.message.contains(rule) == true, "\(rule): \(refused?.message ?? "")")
            } else {
                _ = try await TPMVerifier.endorsement(certificate: reissued, ekPublic: ekPublic, trust: fixture.trust, at: Date())
            }
        }
    }

    @Test("an EK certificate from a manufacturer's intermediate CA verifies with the intermediate given apart from the roots")
    func intermediates() async throws {
        let fixture = try Fixture()
        let root = try Self.manufacturer(fixture.swtpm)
        let intermediateKey = Certificate.PrivateKey(P256.Signing.PrivateKey())
        let intermediate = try Certificate(
            version: .v3, serialNumber: Certificate.SerialNumber(), publicKey: intermediateKey.publicKey,
            notValidBefore: Date().addingTimeInterval(-3600), notValidAfter: Date().addingTimeInterval(86400),
            issuer: root.certificate.subject, subject: try DistinguishedName { CommonName("Hallmark Test TPM Intermediate CA") },
            signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.isCertificateAuthority(maxPathLength: 0))
                Critical(KeyUsage(keyCertSign: true))
            },
            issuerPrivateKey: root.key
        )
        let reissued = try Self.reissue(try fixture.device.ekCertificate(.rsa), by: (intermediate, intermediateKey), keyUsage: KeyUsage(keyEncipherment: true), extended: nil)
        let ekPublic = try fixture.device.ekPublic(.rsa)
        let without = await #expect(throws: TPMError.self) {
            try await TPMVerifier.endorsement(certificate: reissued, ekPublic: ekPublic, trust: fixture.trust, at: Date())
        }
        #expect(without?.message.contains("does not chain to a trusted manufacturer CA") == true)
        let trust = TPMTrust(manufacturerCAs: fixture.trust.manufacturerCAs, intermediates: [intermediate])
        let endorsement = try await TPMVerifier.endorsement(certificate: reissued, ekPublic: ekPublic, trust: trust, at: Date())
        #expect(endorsement.vouchedBy?.contains("Hallmark Test TPM Manufacturer CA") == true)
        // An intermediate alone is not a trust anchor.
        let alone = await #expect(throws: TPMError.self) {
            try await TPMVerifier.endorsement(certificate: reissued, ekPublic: ekPublic, trust: TPMTrust(manufacturerCAs: [], intermediates: [intermediate]), at: Date())
        }
        #expect(alone?.message.contains("no manufacturer CA is configured") == true)
    }
}

enum EKCertificateUsage {
    static let oid = ExtendedKeyUsage.Usage(oid: [2, 23, 133, 8, 1])
}

