// The TPM 2.0 structures the verifier reads, parsed from their big-endian wire form (TPM 2.0
// Library, Part 2): TPMT_PUBLIC, TPMS_ATTEST of a quote, and TPMT_SIGNATURE. Every length is
// checked; trailing bytes are refused.

public import Foundation
import Crypto

/// A TPM failure or refusal: a stable code, and a message naming the structure, key or PCR.
///
/// Match on ``code``; read ``message`` for the cause. New codes may be added, so a `switch` over
/// codes needs a `default`.
public struct TPMError: Error, Hashable, Sendable, CustomStringConvertible {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        fileprivate enum Base: String, Hashable, Sendable {
            case malformed, unsupported, device, configuration, policy, invalidArgument, invalidKey, untrustedEK, invalidQuote, pcrMismatch
        }

        fileprivate let base: Base
        fileprivate init(_ base: Base) { self.base = base }

        public var description: String { base.rawValue }

        /// A TPM structure or certificate that does not parse; the message names the structure and field.
        public static let malformed = Code(.malformed)
        /// An algorithm, curve or key type Hallmark does not accept.
        public static let unsupported = Code(.unsupported)
        /// The TPM (or its TCTI) failed a command.
        public static let device = Code(.device)
        /// A file or directory the TPM attestor is configured with cannot be used.
        public static let configuration = Code(.configuration)
        /// A PCR policy file that breaks its format.
        public static let policy = Code(.policy)
        /// A request the TPM code cannot carry out as given (a credential too long).
        public static let invalidArgument = Code(.invalidArgument)
        /// An endorsement or attestation key without the attributes its role requires.
        public static let invalidKey = Code(.invalidKey)
        /// An endorsement key neither allow-listed nor certified by a trusted manufacturer CA.
        public static let untrustedEK = Code(.untrustedEK)
        /// A quote that is not signed by the attested key over this nonce and these PCR values.
        public static let invalidQuote = Code(.invalidQuote)
        /// A PCR value other than the policy requires.
        public static let pcrMismatch = Code(.pcrMismatch)
    }

    public let code: Code
    /// A sentence naming the cause, prefixed `tpm:`.
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

/// Reads big-endian TPM fields, failing with the structure and field named.
struct TPMReader {
    private let bytes: [UInt8]
    private(set) var offset = 0
    let structure: String

    init(_ bytes: [UInt8], structure: String) {
        self.bytes = bytes
        self.structure = structure
    }

    var remaining: Int { bytes.count - offset }

    mutating func take(_ count: Int, _ field: String) throws -> [UInt8] {
        guard count >= 0, remaining >= count else {
            throw TPMError(.malformed, "tpm: \(structure).\(field): needs \(count) bytes at offset \(offset), \(remaining) left")
        }
        defer { offset += count }
        return Array(bytes[offset..<offset + count])
    }

    mutating func u8(_ field: String) throws -> UInt8 { try take(1, field)[0] }
    mutating func u16(_ field: String) throws -> UInt16 { try take(2, field).reduce(0) { $0 << 8 | UInt16($1) } }
    mutating func u32(_ field: String) throws -> UInt32 { try take(4, field).reduce(0) { $0 << 8 | UInt32($1) } }
    mutating func u64(_ field: String) throws -> UInt64 { try take(8, field).reduce(0) { $0 << 8 | UInt64($1) } }

    /// A TPM2B: a u16 size and that many bytes.
    mutating func sized(_ field: String) throws -> [UInt8] { try take(Int(try u16("\(field).size")), field) }

    func finish() throws {
        guard remaining == 0 else { throw TPMError(.malformed, "tpm: \(structure): \(remaining) trailing bytes after the structure") }
    }
}

extension Array where Element == UInt8 {
    mutating func appendU16(_ value: UInt16) { append(contentsOf: [UInt8(value >> 8), UInt8(value & 0xff)]) }
    mutating func appendU32(_ value: UInt32) { append(contentsOf: (0..<4).reversed().map { UInt8((value >> ($0 * 8)) & 0xff) }) }
    mutating func appendSized(_ bytes: [UInt8]) {
        appendU16(UInt16(bytes.count))
        append(contentsOf: bytes)
    }
}

/// A TPM hash algorithm (TPM_ALG_ID).
public enum TPMHash: UInt16, Sendable, CaseIterable, CustomStringConvertible {
    case sha1 = 0x0004, sha256 = 0x000B, sha384 = 0x000C, sha512 = 0x000D

    public init(_ id: UInt16, field: String) throws {
        guard let hash = TPMHash(rawValue: id) else { throw TPMError(.unsupported, "tpm: \(field): unsupported hash algorithm 0x\(String(id, radix: 16))") }
        self = hash
    }

    /// The PCR bank's name as selectors and policies write it.
    public init?(bank: String) {
        guard let hash = Self.allCases.first(where: { $0.description == bank }) else { return nil }
        self = hash
    }

    public var description: String {
        switch self {
        case .sha1: "sha1"
        case .sha256: "sha256"
        case .sha384: "sha384"
        case .sha512: "sha512"
        }
    }

    public var digestSize: Int {
        switch self {
        case .sha1: 20
        case .sha256: 32
        case .sha384: 48
        case .sha512: 64
        }
    }

    public func digest(_ data: some DataProtocol) -> [UInt8] {
        switch self {
        case .sha1: Array(Insecure.SHA1.hash(data: data))
        case .sha256: Array(SHA256.hash(data: data))
        case .sha384: Array(SHA384.hash(data: data))
        case .sha512: Array(SHA512.hash(data: data))
        }
    }

    public func hmac(key: [UInt8], _ data: [UInt8]) -> [UInt8] {
        let key = SymmetricKey(data: key)
        switch self {
        case .sha1: return Array(HMAC<Insecure.SHA1>.authenticationCode(for: data, using: key))
        case .sha256: return Array(HMAC<SHA256>.authenticationCode(for: data, using: key))
        case .sha384: return Array(HMAC<SHA384>.authenticationCode(for: data, using: key))
        case .sha512: return Array(HMAC<SHA512>.authenticationCode(for: data, using: key))
        }
    }
}

/// TPMA_OBJECT bits the verifier looks at.
public struct TPMObjectAttributes: OptionSet, Hashable, Sendable {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    public static let fixedTPM = Self(rawValue: 1 << 1)
    public static let fixedParent = Self(rawValue: 1 << 4)
    public static let sensitiveDataOrigin = Self(rawValue: 1 << 5)
    public static let userWithAuth = Self(rawValue: 1 << 6)
    public static let adminWithPolicy = Self(rawValue: 1 << 7)
    public static let restricted = Self(rawValue: 1 << 16)
    public static let decrypt = Self(rawValue: 1 << 17)
    public static let sign = Self(rawValue: 1 << 18)
}

/// A TPMT_PUBLIC: an RSA or ECC key's public area.
public struct TPMPublic: Hashable, Sendable {
    public enum Key: Hashable, Sendable {
        /// Modulus (big-endian) and exponent (65537 when the structure says 0).
        case rsa(modulus: [UInt8], exponent: UInt32)
        /// Curve (TPM_ECC_CURVE) and the point's coordinates.
        case ecc(curve: UInt16, x: [UInt8], y: [UInt8])
    }

    public static let curveP256: UInt16 = 0x0003
    public static let curveP384: UInt16 = 0x0004

    public let bytes: [UInt8]
    public let nameAlg: TPMHash
    public let attributes: TPMObjectAttributes
    public let authPolicy: [UInt8]
    /// The symmetric algorithm's key bits (AES for storage keys such as an EK; 0 for NULL).
    public let symmetricKeyBits: Int
    /// The signing scheme (TPM_ALG_ID, 0x0010 for NULL) and its hash.
    public let scheme: UInt16
    public let schemeHash: UInt16?
    public let key: Key

    public init(bytes: [UInt8]) throws {
        self.bytes = bytes
        var reader = TPMReader(bytes, structure: "TPMT_PUBLIC")
        let type = try reader.u16("type")
        nameAlg = try TPMHash(try reader.u16("nameAlg"), field: "TPMT_PUBLIC.nameAlg")
        attributes = TPMObjectAttributes(rawValue: try reader.u32("objectAttributes"))
        authPolicy = try reader.sized("authPolicy")
        // TPMT_SYM_DEF_OBJECT: NULL ends it; otherwise key bits and mode follow.
        let symmetric = try reader.u16("parameters.symmetric.algorithm")
        if symmetric == 0x0010 {
            symmetricKeyBits = 0
        } else {
            symmetricKeyBits = Int(try reader.u16("parameters.symmetric.keyBits"))
            _ = try reader.u16("parameters.symmetric.mode")
        }
        scheme = try reader.u16("parameters.scheme")
        schemeHash = scheme == 0x0010 ? nil : try reader.u16("parameters.scheme.hashAlg")
        switch type {
        case 0x0001:
            _ = try reader.u16("parameters.keyBits")
            let exponent = try reader.u32("parameters.exponent")
            key = .rsa(modulus: try reader.sized("unique.rsa"), exponent: exponent == 0 ? 65537 : exponent)
        case 0x0023:
            let curve = try reader.u16("parameters.curveID")
            let kdf = try reader.u16("parameters.kdf")
            if kdf != 0x0010 { _ = try reader.u16("parameters.kdf.hashAlg") }
            key = .ecc(curve: curve, x: try reader.sized("unique.ecc.x"), y: try reader.sized("unique.ecc.y"))
        default:
            throw TPMError(.unsupported, "tpm: TPMT_PUBLIC.type: 0x\(String(type, radix: 16)) is neither RSA (0x1) nor ECC (0x23)")
        }
        try reader.finish()
    }

    /// The object's Name: nameAlg ‖ H_nameAlg(TPMT_PUBLIC), computed here, never taken from the attester.
    public var name: [UInt8] {
        var name: [UInt8] = []
        name.appendU16(nameAlg.rawValue)
        return name + nameAlg.digest(bytes)
    }
}

/// A quote's TPMS_ATTEST.
public struct TPMQuote: Hashable, Sendable {
    public static let magic: UInt32 = 0xFF54_4347
    public static let typeQuote: UInt16 = 0x8018

    public struct Selection: Hashable, Sendable {
        public let hash: TPMHash
        /// The selected PCR indices, ascending.
        public let pcrs: [Int]
    }

    public let bytes: [UInt8]
    public let qualifiedSigner: [UInt8]
    public let extraData: [UInt8]
    public let selections: [Selection]
    public let pcrDigest: [UInt8]

    public init(bytes: [UInt8]) throws {
        self.bytes = bytes
        var reader = TPMReader(bytes, structure: "TPMS_ATTEST")
        let magic = try reader.u32("magic")
        guard magic == Self.magic else { throw TPMError(.malformed, "tpm: TPMS_ATTEST.magic is 0x\(String(magic, radix: 16)), not TPM_GENERATED_VALUE") }
        let type = try reader.u16("type")
        guard type == Self.typeQuote else { throw TPMError(.malformed, "tpm: TPMS_ATTEST.type is 0x\(String(type, radix: 16)), not a quote (0x8018)") }
        qualifiedSigner = try reader.sized("qualifiedSigner")
        extraData = try reader.sized("extraData")
        _ = try reader.u64("clockInfo.clock")
        _ = try reader.u32("clockInfo.resetCount")
        _ = try reader.u32("clockInfo.restartCount")
        _ = try reader.u8("clockInfo.safe")
        _ = try reader.u64("firmwareVersion")
        let count = try reader.u32("quote.pcrSelect.count")
        guard count <= 16 else { throw TPMError(.malformed, "tpm: TPMS_ATTEST.quote.pcrSelect.count \(count) is more than there are banks") }
        var selections: [Selection] = []
        for index in 0..<Int(count) {
            let hash = try TPMHash(try reader.u16("quote.pcrSelect[\(index)].hash"), field: "TPMS_ATTEST.quote.pcrSelect[\(index)].hash")
            let size = Int(try reader.u8("quote.pcrSelect[\(index)].sizeofSelect"))
            let bitmap = try reader.take(size, "quote.pcrSelect[\(index)].pcrSelect")
            let pcrs = (0..<(size * 8)).filter { bitmap[$0 / 8] & (1 << ($0 % 8)) != 0 }
            selections.append(Selection(hash: hash, pcrs: pcrs))
        }
        self.selections = selections
        pcrDigest = try reader.sized("quote.pcrDigest")
        try reader.finish()
    }
}

/// A TPMT_SIGNATURE, as far as the verifier uses one: ECDSA (r, s) or an RSA signature.
public struct TPMSignature: Hashable, Sendable {
    public enum Value: Hashable, Sendable {
        case ecdsa(r: [UInt8], s: [UInt8])
        case rsassa([UInt8])
        case rsapss([UInt8])
    }

    public let hash: TPMHash
    public let value: Value

    public init(bytes: [UInt8]) throws {
        var reader = TPMReader(bytes, structure: "TPMT_SIGNATURE")
        let algorithm = try reader.u16("sigAlg")
        hash = try TPMHash(try reader.u16("signature.hash"), field: "TPMT_SIGNATURE.signature.hash")
        switch algorithm {
        case 0x0018: value = .ecdsa(r: try reader.sized("signature.r"), s: try reader.sized("signature.s"))
        case 0x0014: value = .rsassa(try reader.sized("signature.sig"))
        case 0x0016: value = .rsapss(try reader.sized("signature.sig"))
        default: throw TPMError(.unsupported, "tpm: TPMT_SIGNATURE.sigAlg 0x\(String(algorithm, radix: 16)) is not ECDSA, RSASSA or RSAPSS")
        }
        try reader.finish()
    }
}
