// The agent's own SVID and key, kept in its data directory (mode 0600) so that a restarted agent
// resumes without attesting again; workloads' keys never touch the disk.

import Crypto
import Foundation
import HallmarkSupport
import SPIFFE
import SwiftASN1
import X509

enum AgentIdentity {
    static func load(_ config: AgentConfig, now: Date) -> X509SVID? {
        guard let chain = try? String(contentsOfFile: config.agentSVIDPath, encoding: .utf8),
            let key = try? String(contentsOfFile: config.agentKeyPath, encoding: .utf8),
            let svid = try? X509SVID(chainPEM: chain, privateKeyPEM: key),
            svid.expiresAt > now
        else { return nil }
        return svid
    }

    static func save(_ svid: X509SVID, _ config: AgentConfig) throws {
        try write(svid.chainPEM, to: config.agentSVIDPath, mode: 0o644)
        try write(try svid.privateKeyPEM(), to: config.agentKeyPath, mode: 0o600)
    }

    /// Removes the saved SVID and key: the server no longer accepts them.
    static func forget(_ config: AgentConfig) {
        for path in [config.agentSVIDPath, config.agentKeyPath] { try? FileManager.default.removeItem(atPath: path) }
    }

    static func loadBundle(_ config: AgentConfig) -> SPIFFEBundle? {
        guard let name = try? String(contentsOfFile: config.trustDomainPath, encoding: .utf8),
            let trustDomain = try? TrustDomain(name.trimmingCharacters(in: .whitespacesAndNewlines)),
            let data = FileManager.default.contents(atPath: config.bundlePath)
        else { return nil }
        return try? SPIFFEBundle(trustDomain: trustDomain, json: data)
    }

    static func saveBundle(_ bundle: SPIFFEBundle, _ config: AgentConfig) throws {
        try write(bundle.trustDomain.name, to: config.trustDomainPath, mode: 0o644)
        try write(String(decoding: try bundle.json(), as: UTF8.self), to: config.bundlePath, mode: 0o644)
    }

    static func write(_ text: String, to path: String, mode: mode_t) throws {
        do { try PrivateFiles.write(text, to: path, mode: mode) } catch let error as PrivateFileError { throw AgentError(.files, "agent: \(error.message)", underlying: error) }
    }

    /// A short-lived self-signed certificate that lets an agent without an SVID complete mTLS to attest.
    static func bootstrapCertificate(_ key: Certificate.PrivateKey, now: Date) throws -> Certificate {
        let name = try DistinguishedName { CommonName("hallmark-agent-bootstrap") }
        return try Certificate(
            version: .v3, serialNumber: Certificate.SerialNumber(), publicKey: key.publicKey,
            notValidBefore: now.addingTimeInterval(-60), notValidAfter: now.addingTimeInterval(600), issuer: name, subject: name,
            signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.notCertificateAuthority)
                Critical(KeyUsage(digitalSignature: true))
            },
            issuerPrivateKey: key
        )
    }
}

extension Certificate.PrivateKey {
    func derBytes() throws -> [UInt8] {
        try PEMDocument(pemString: serializeAsPEM().pemString).derBytes
    }

    /// The attestation challenge, signed ECDSA with SHA-256 (DER), as the server expects.
    func signChallenge(_ nonce: [UInt8]) throws -> [UInt8] {
        let pem = try serializeAsPEM().pemString
        let key = try P256.Signing.PrivateKey(pemRepresentation: pem)
        return Array(try key.signature(for: SHA256.hash(data: nonce)).derRepresentation)
    }
}
