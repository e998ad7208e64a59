// The audit log's hash chain: each record's hash covers the previous hash and every field, so a
// record altered, inserted or removed breaks the chain from that record on.

public import Crypto
public import Foundation

public enum AuditChain {
    /// The previous hash of the first record.
    public static let genesis = [UInt8](repeating: 0, count: 32)

    /// The hash of a record at `sequence` following `previousHash`: SHA-256 of its preimage.
    public static func hash(sequence: Int64, event: AuditEvent, previousHash: [UInt8]) -> [UInt8] {
        Array(SHA256.hash(data: preimage(sequence: sequence, event: event, previousHash: previousHash)))
    }

    /// The bytes a record's hash covers: the previous hash (32 bytes); the sequence, the time in
    /// Unix milliseconds and the caller's uid as 8-byte big-endian integers; then action, target,
    /// result and detail, each as an 8-byte big-endian length and its UTF-8 bytes; then, for every
    /// record but those written before actors were kept, the actor (`admin:UID`, `server`,
    /// `agent:ID`) the same way. Every field is length-prefixed, so a record with an actor and one
    /// without never cover the same bytes: an actor can be neither removed nor added.
    public static func preimage(sequence: Int64, event: AuditEvent, previousHash: [UInt8]) -> [UInt8] {
        var bytes = previousHash
        func integer(_ value: Int64) { withUnsafeBytes(of: value.bigEndian) { bytes += $0 } }
        func text(_ value: String) {
            let utf8 = Array(value.utf8)
            integer(Int64(utf8.count))
            bytes += utf8
        }
        integer(sequence)
        integer(Int64((event.time.timeIntervalSince1970 * 1000).rounded()))
        integer(event.callerUID)
        text(event.action)
        text(event.target)
        text(event.result)
        text(event.detail)
        if let actor = event.actor.stored { text(actor) }
        return bytes
    }

    /// Checks a run of records, in order from the first.
    public static func verify(_ records: some Sequence<AuditRecord>) -> AuditVerification {
        var previous = genesis
        var expectedSequence: Int64 = 1
        var count: Int64 = 0
        for record in records {
            count += 1
            if record.sequence != expectedSequence {
                return AuditVerification(
                    records: count, firstBadSequence: record.sequence,
                    reason: "record \(record.sequence) follows record \(expectedSequence - 1): records are missing"
                )
            }
            if record.previousHash != previous {
                return AuditVerification(
                    records: count, firstBadSequence: record.sequence,
                    reason: "record \(record.sequence) does not chain to the record before it"
                )
            }
            if hash(sequence: record.sequence, event: record.event, previousHash: previous) != record.hash {
                return AuditVerification(
                    records: count, firstBadSequence: record.sequence,
                    reason: "record \(record.sequence) was altered: its fields no longer match its hash"
                )
            }
            previous = record.hash
            expectedSequence += 1
        }
        return AuditVerification(records: count)
    }
}
