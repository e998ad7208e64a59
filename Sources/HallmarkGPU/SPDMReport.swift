// NVIDIA Hopper attestation evidence: an SPDM 1.1 GET_MEASUREMENTS request followed by the GPU's
// signed MEASUREMENTS response (little-endian). Every length is checked against what is left, and
// the response must end exactly after its signature.

public import Foundation
import HallmarkAttestation
import SPIFFE

/// GPU evidence that could not be collected or read: a stable code, and a message naming the field.
///
/// Match on ``code``; read ``message`` for the cause. New codes may be added, so a `switch` over
/// codes needs a `default`.
public struct GPUEvidenceError: Error, Hashable, Sendable, CustomStringConvertible {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        fileprivate enum Base: String, Hashable, Sendable {
            case unavailable, collection, invalidArgument, malformed, revocation
        }

        fileprivate let base: Base
        fileprivate init(_ base: Base) { self.base = base }

        public var description: String { base.rawValue }

        /// This node has no NVIDIA driver or GPU able to give evidence.
        public static let unavailable = Code(.unavailable)
        /// A call or command collecting evidence failed, or gave something other than evidence.
        public static let collection = Code(.collection)
        /// A request for evidence that cannot be made as given (a nonce of the wrong size).
        public static let invalidArgument = Code(.invalidArgument)
        /// Evidence (an SPDM report, an OCSP response, a RIM) that does not parse; the message names the field.
        public static let malformed = Code(.malformed)
        /// An OCSP response that does not answer for the certificate: unsigned, stale, or missing.
        public static let revocation = Code(.revocation)
    }

    public let code: Code
    /// A sentence naming the cause, prefixed by the area (`gpu:`, `ocsp:`, `rim:`).
    public let message: String
    /// The error this one came from, described, when another error caused it.
    public let underlying: String?

    public init(_ code: Code, _ message: String, underlying: (any Error)? = nil) {
        self.code = code
        self.message = message
        self.underlying = underlying.map { "\($0)" }
    }

    public var description: String { message }
}

struct LittleEndianReader {
    private let bytes: [UInt8]
    private(set) var offset: Int
    let structure: String

    init(_ bytes: [UInt8], from offset: Int = 0, structure: String) {
        self.bytes = bytes
        self.offset = offset
        self.structure = structure
    }

    var remaining: Int { bytes.count - offset }

    mutating func take(_ count: Int, _ field: String) throws -> [UInt8] {
        guard count >= 0, remaining >= count else {
            throw GPUEvidenceError(.malformed, "gpu: \(structure).\(field): needs \(count) bytes at offset \(offset), \(remaining) left (truncated)")
        }
        defer { offset += count }
        return Array(bytes[offset..<offset + count])
    }

    mutating func u8(_ field: String) throws -> UInt8 { try take(1, field)[0] }
    mutating func u16(_ field: String) throws -> Int { try take(2, field).reversed().reduce(0) { $0 << 8 | Int($1) } }
    mutating func u24(_ field: String) throws -> Int { try take(3, field).reversed().reduce(0) { $0 << 8 | Int($1) } }
}

/// One measurement block of the record.
public struct SPDMMeasurementBlock: Hashable, Sendable {
    public let index: Int
    /// The DMTF measurement value (a SHA-384 digest on Hopper).
    public let value: [UInt8]
}

/// The request and the signed response, as the GPU produced them.
public struct SPDMReport: Hashable, Sendable {
    public static let requestLength = 37
    public static let signatureLength = 96

    public let bytes: [UInt8]
    public let requestNonce: [UInt8]
    public let blocks: [SPDMMeasurementBlock]
    public let responderNonce: [UInt8]
    /// Opaque fields by type (NVIDIA's: 3 driver version, 6 VBIOS version, 15–19 SKUs, 20 FWID…).
    public let opaque: [Int: [UInt8]]
    /// Everything the signature covers: the request and the response up to the signature.
    public let signedBytes: [UInt8]
    /// Raw r ‖ s, P-384.
    public let signature: [UInt8]

    public init(bytes: [UInt8]) throws {
        self.bytes = bytes
        var request = LittleEndianReader(bytes, structure: "GET_MEASUREMENTS request")
        let version = try request.u8("version")
        guard version == 0x11 else { throw GPUEvidenceError(.malformed, "gpu: request.version is 0x\(String(version, radix: 16)), not SPDM 1.1 (0x11)") }
        let code = try request.u8("code")
        guard code == 0xE0 else { throw GPUEvidenceError(.malformed, "gpu: request.code is 0x\(String(code, radix: 16)), not GET_MEASUREMENTS (0xE0)") }
        let attributes = try request.u8("param1")
        guard attributes & 0x01 != 0 else { throw GPUEvidenceError(.malformed, "gpu: request.param1 does not ask for a signature") }
        _ = try request.u8("param2")
        requestNonce = try request.take(32, "nonce")
        _ = try request.u8("slotID")

        var response = LittleEndianReader(bytes, from: request.offset, structure: "MEASUREMENTS response")
        let responseVersion = try response.u8("version")
        guard responseVersion == version else { throw GPUEvidenceError(.malformed, "gpu: response.version 0x\(String(responseVersion, radix: 16)) differs from the request's") }
        let responseCode = try response.u8("code")
        guard responseCode == 0x60 else { throw GPUEvidenceError(.malformed, "gpu: response.code is 0x\(String(responseCode, radix: 16)), not MEASUREMENTS (0x60)") }
        _ = try response.u8("param1")
        _ = try response.u8("param2")
        let count = Int(try response.u8("numberOfBlocks"))
        let recordLength = try response.u24("measurementRecordLength")
        var record = LittleEndianReader(try response.take(recordLength, "measurementRecord"), structure: "measurement record")
        var blocks: [SPDMMeasurementBlock] = []
        for position in 0..<count {
            let index = Int(try record.u8("block[\(position)].index"))
            let specification = try record.u8("block[\(position)].specification")
            guard specification == 1 else { throw GPUEvidenceError(.malformed, "gpu: block \(index) is not a DMTF measurement (specification \(specification))") }
            let size = try record.u16("block[\(position)].size")
            var block = LittleEndianReader(try record.take(size, "block[\(position)].measurement"), structure: "block \(index)")
            _ = try block.u8("dmtfType")
            let valueSize = try block.u16("valueSize")
            guard valueSize + 3 == size else {
                throw GPUEvidenceError(.malformed, "gpu: block \(index): value size \(valueSize) is inconsistent with the block size \(size)")
            }
            blocks.append(SPDMMeasurementBlock(index: index, value: try block.take(valueSize, "value")))
        }
        guard record.remaining == 0 else {
            throw GPUEvidenceError(.malformed, "gpu: the measurement record has \(record.remaining) bytes beyond its \(count) blocks")
        }
        self.blocks = blocks
        responderNonce = try response.take(32, "nonce")
        let opaqueLength = try response.u16("opaqueLength")
        var opaque: [Int: [UInt8]] = [:]
        var fields = LittleEndianReader(try response.take(opaqueLength, "opaqueData"), structure: "opaque data")
        while fields.remaining > 0 {
            let type = try fields.u16("type")
            let length = try fields.u16("type \(type).length")
            opaque[type] = try fields.take(length, "type \(type).value")
        }
        self.opaque = opaque
        let signatureStart = response.offset
        signature = try response.take(Self.signatureLength, "signature")
        guard response.remaining == 0 else {
            throw GPUEvidenceError(.malformed, "gpu: \(response.remaining) bytes follow the signature; the report's lengths are inconsistent")
        }
        signedBytes = Array(bytes[..<signatureStart])
    }

    /// Decodes the hex text NVIDIA's tools write.
    public init(hex text: String) throws {
        guard let bytes = Hex.decode(text.filter { !$0.isWhitespace }) else {
            throw GPUEvidenceError(.malformed, "gpu: the report's hex text has an odd number of digits or a non-hex character")
        }
        try self.init(bytes: bytes)
    }

    // MARK: Opaque fields

    static let driverVersionType = 3
    static let vbiosVersionType = 6
    static let fwidType = 20

    private func string(_ type: Int) -> String? {
        opaque[type].map { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
    }

    public var driverVersion: String? { string(Self.driverVersionType) }

    /// The VBIOS version as NVIDIA writes it, such as 96.00.5E.00.01.
    public var vbiosVersion: String? {
        guard let raw = opaque[Self.vbiosVersionType], raw.count == 8 else { return nil }
        let value = raw.reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        return [24, 16, 8, 0, 32].map { Hex.encode([UInt8(truncatingIfNeeded: value >> UInt64($0))]).uppercased() }.joined(separator: ".")
    }

    public var chipSKU: String? { string(15) }
    public var chipSKUModifier: String? { string(16) }
    public var project: String? { string(17) }
    public var projectSKU: String? { string(18) }
    public var projectSKUModifier: String? { string(19) }
    public var fwid: [UInt8]? { opaque[Self.fwidType] }
}
