// X509-SVID and X509Bundle encodings: DER as the Workload API sends them, and PEM.

import Crypto
import Foundation
import Testing
import X509
import SPIFFE
import HallmarkTestSupport

@Suite("X509-SVID encodings")
struct X509SVIDTests {
    @Test("an SVID round-trips through concatenated DER and PKCS#8")
    func derRoundTrip() throws {
        let root = try TestCA.root()
        let intermediate = try root.intermediate()
        let (leaf, key) = try intermediate.leaf()
        let svid = try X509SVID(certificates: [leaf, intermediate.certificate], privateKey: key, hint: "internal")
        let parsed = try X509SVID(chainDER: svid.chainDER, privateKeyDER: try svid.privateKeyDER())
        #expect(parsed.id.description == "spiffe://example.org/workload")
        #expect(parsed.certificates == [leaf, intermediate.certificate])
        #expect(parsed.privateKey.publicKey == key.publicKey)
        #expect(parsed.expiresAt == leaf.notValidAfter)
    }

    @Test("an SVID round-trips through PEM")
    func pemRoundTrip() throws {
        let (leaf, key) = try TestCA.root().leaf()
        let svid = try X509SVID(certificates: [leaf], privateKey: key)
        let parsed = try X509SVID(chainPEM: svid.chainPEM, privateKeyPEM: try svid.privateKeyPEM())
        #expect(parsed.leaf == leaf)
        #expect(try svid.privateKeyPEM().hasPrefix("-----BEGIN PRIVATE KEY-----"))
    }

    @Test("a key that does not match the leaf is refused")
    func keyMismatch() throws {
        let (leaf, _) = try TestCA.root().leaf()
        let other = Certificate.PrivateKey(P256.Signing.PrivateKey())
        #expect(throws: SPIFFEError(.privateKeyMismatch, "x509svid: the private key does not match the leaf certificate's public key")) {
            try X509SVID(certificates: [leaf], privateKey: other)
        }
    }

    @Test("truncated or foreign DER is refused", arguments: [[0x30], [0x30, 0x82, 0x10], [0x04, 0x00], [0x30, 0x03, 0x02, 0x01, 0x01]] as [[UInt8]])
    func badDER(_ bytes: [UInt8]) throws {
        let error = #expect(throws: SPIFFEError.self) { try X509Bundle(trustDomain: TrustDomain("example.org"), der: bytes) }
        #expect(error?.code == .malformedCertificate)
    }

    @Test("a bundle round-trips through DER and PEM, without duplicates")
    func bundleRoundTrip() throws {
        let a = try TestCA.root(.init(name: "A"))
        let b = try TestCA.root(.init(name: "B"))
        let td = try TrustDomain("example.org")
        let bundle = X509Bundle(trustDomain: td, authorities: [a.certificate, b.certificate, a.certificate])
        #expect(bundle.authorities == [a.certificate, b.certificate])
        #expect(try X509Bundle(trustDomain: td, der: bundle.der) == bundle)
        #expect(try X509Bundle(trustDomain: td, pem: bundle.pem) == bundle)
    }

    @Test("a PEM file with a key block where certificates belong is refused")
    func pemWrongBlock() throws {
        let key = try TestPEM.pem(Certificate.PrivateKey(P256.Signing.PrivateKey()))
        let error = #expect(throws: SPIFFEError.self) { try X509Bundle(trustDomain: TrustDomain("example.org"), pem: key) }
        #expect(error?.message.contains("PRIVATE KEY") == true)
    }
}
