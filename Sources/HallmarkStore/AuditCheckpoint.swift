// Signed checkpoints of the audit log, with a key the database never holds. A checkpoint signs
// (sequence, head hash, time); the store writes one in the transaction that appends record N·k
// (k the interval) and on request (at shutdown), and the newest is also kept in the data
// directory beside the key. Verification then tells apart: a chain recomputed after an edit (a
// record's hash is no longer the one signed), a truncation (the log ends before the newest
// checkpoint), and a missing or replaced key — each named.
//
// The signed message is text, so that anyone can check a checkpoint with openssl:
//   hallmark-audit-checkpoint-v1\nsequence N\nhead HEX\ntime_ms T\n
// signed ECDSA P-256 with SHA-256, DER (`openssl dgst -sha256 -verify key.pem -signature sig msg`).

public import Crypto
public import Foundation
import HallmarkAttestation
import HallmarkSupport
import SPIFFE
import SwiftASN1
import X509

public struct AuditCheckpoint: Hashable, Sendable, Codable {
    public var sequence: Int64
    public var headHash: [UInt8]
    public var timeMS: Int64
    public var signature: [UInt8]
    /// SHA-256 of the signing key's DER SubjectPublicKeyInfo, hex.
    public var keyID: String

    public init(sequence: Int64, headHash: [UInt8], timeMS: Int64, signature: [UInt8], keyID: String) {
        self.sequence = sequence
        self.headHash = headHash
        self.timeMS = timeMS
        self.signature = signature
        self.keyID = keyID
    }

    /// The exact bytes signed.
    public var message: [UInt8] {
        Array("hallmark-audit-checkpoint-v1\nsequence \(sequence)\nhead \(Hex.encode(headHash))\ntime_ms \(timeMS)\n".utf8)
    }

    public func isSigned(by key: P256.Signing.PublicKey) -> Bool {
        guard let signature = try? P256.Signing.ECDSASignature(derRepresentation: signature) else { return false }
        return key.isValidSignature(signature, for: SHA256.hash(data: message))
    }
}

/// The server's checkpoint key and the newest checkpoint, in the data directory.
public final class AuditCheckpointer: Sendable {
    public static let keyFile = "audit-checkpoint.key"
    public static let headFile = "audit-checkpoint.json"

    public let keyPath: String
    public let headPath: String
    /// A checkpoint is written with every `interval`-th record.
    public let interval: Int64
    private let key: P256.Signing.PrivateKey
    public let keyID: String

    /// Loads the key from `dataDir`, or makes one (mode 0600) when there is none.
    public init(dataDir: String, interval: Int64 = 100) throws {
        keyPath = (dataDir as NSString).appendingPathComponent(Self.keyFile)
        headPath = (dataDir as NSString).appendingPathComponent(Self.headFile)
        self.interval = max(1, interval)
        if let pem = FileManager.default.contents(atPath: keyPath) {
            do { key = try P256.Signing.PrivateKey(pemRepresentation: String(decoding: pem, as: UTF8.self)) } catch {
                throw StoreError(.corrupt, "store: the audit checkpoint key \(keyPath) is not a P-256 key: \(error)")
            }
        } else {
            key = P256.Signing.PrivateKey()
            try PrivateFiles.write(key.pemRepresentation + "\n", to: keyPath, mode: 0o600)
        }
        keyID = try Self.keyID(key.publicKey)
    }

    public static func keyID(_ key: P256.Signing.PublicKey) throws -> String {
        var serializer = DER.Serializer()
        try serializer.serialize(Certificate.PublicKey(key))
        return Hex.encode(SHA256.hash(data: serializer.serializedBytes))
    }

    public var publicKeyPEM: String { key.publicKey.pemRepresentation }

    func sign(sequence: Int64, head: [UInt8], time: Date) throws -> AuditCheckpoint {
        var checkpoint = AuditCheckpoint(sequence: sequence, headHash: head, timeMS: Int64((time.timeIntervalSince1970 * 1000).rounded()), signature: [], keyID: keyID)
        checkpoint.signature = Array(try key.signature(for: SHA256.hash(data: checkpoint.message)).derRepresentation)
        return checkpoint
    }

    /// Keeps the newest checkpoint beside the key (after the transaction that stored it commits).
    func recordHead(_ checkpoint: AuditCheckpoint) {
        guard let json = try? JSONEncoder().encode(checkpoint) else { return }
        try? PrivateFiles.write(Array(json), to: headPath, mode: 0o600)
    }
}

/// What `audit verify` checks the log against, read from the data directory when it runs (not
/// from memory), so that a key deleted or replaced behind the server's back is seen.
public struct AuditTrust: Sendable {
    public let keyPath: String
    public let headPath: String
    public let key: P256.Signing.PublicKey?
    public let head: AuditCheckpoint?
    public let headUnreadable: Bool

    public init(dataDir: String) {
        keyPath = (dataDir as NSString).appendingPathComponent(AuditCheckpointer.keyFile)
        headPath = (dataDir as NSString).appendingPathComponent(AuditCheckpointer.headFile)
        key = FileManager.default.contents(atPath: keyPath).flatMap { try? P256.Signing.PrivateKey(pemRepresentation: String(decoding: $0, as: UTF8.self)).publicKey }
        let headData = FileManager.default.contents(atPath: headPath)
        head = headData.flatMap { try? JSONDecoder().decode(AuditCheckpoint.self, from: $0) }
        headUnreadable = headData != nil && head == nil
    }
}

extension AuditChain {
    /// Checks the chain, then every checkpoint and the newest one kept beside the key.
    public static func verify(_ records: [AuditRecord], checkpoints: [AuditCheckpoint], trust: AuditTrust) -> AuditVerification {
        let chain = verify(records)
        guard chain.intact else { return chain }
        let count = Int64(records.count)
        guard let key = trust.key else {
            return AuditVerification(records: count, firstBadSequence: 0, reason: "the audit checkpoint key \(trust.keyPath) is missing: the log cannot be checked against its checkpoints")
        }
        let keyID = (try? AuditCheckpointer.keyID(key)) ?? ""
        let last = records.last?.sequence ?? 0
        func hash(at sequence: Int64) -> [UInt8]? {
            guard sequence >= 1, sequence <= records.count else { return nil }
            return records[Int(sequence - 1)].hash
        }
        func check(_ checkpoint: AuditCheckpoint, _ what: String) -> AuditVerification? {
            guard checkpoint.keyID == keyID, checkpoint.isSigned(by: key) else {
                return AuditVerification(records: count, firstBadSequence: checkpoint.sequence, reason: "\(what) at record \(checkpoint.sequence) is not signed by the checkpoint key \(trust.keyPath) (key id \(checkpoint.keyID)): forged, or the key was replaced")
            }
            guard checkpoint.sequence <= last else {
                return AuditVerification(records: count, firstBadSequence: last + 1, reason: "the log was truncated: it ends at record \(last), but \(what) covers record \(checkpoint.sequence)")
            }
            guard hash(at: checkpoint.sequence) == checkpoint.headHash else {
                return AuditVerification(records: count, firstBadSequence: checkpoint.sequence, reason: "the chain was rewritten: record \(checkpoint.sequence)'s hash is not the one \(what) signed")
            }
            return nil
        }
        for checkpoint in checkpoints {
            if let failure = check(checkpoint, "checkpoint \(checkpoint.sequence)") { return failure }
        }
        guard !trust.headUnreadable else {
            return AuditVerification(records: count, firstBadSequence: 0, reason: "the newest checkpoint \(trust.headPath) cannot be read")
        }
        guard let head = trust.head else {
            if let newest = checkpoints.last {
                return AuditVerification(records: count, firstBadSequence: newest.sequence, reason: "the newest checkpoint \(trust.headPath) is missing, though the database holds checkpoints")
            }
            return AuditVerification(records: count)
        }
        if let failure = check(head, "the newest checkpoint (\(trust.headPath))") { return failure }
        guard checkpoints.contains(head) else {
            return AuditVerification(records: count, firstBadSequence: head.sequence, reason: "checkpoint \(head.sequence) is missing from the database: checkpoints were deleted")
        }
        return AuditVerification(records: count)
    }
}
