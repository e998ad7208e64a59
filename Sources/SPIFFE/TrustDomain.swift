// A SPIFFE trust domain: the authority part of a SPIFFE ID, valid by construction.

/// The name of a SPIFFE trust domain, such as `ai.example`.
///
/// A value that exists is valid: non-empty, only `[a-z0-9._-]`, at most 255 bytes. Upper-case
/// letters are folded to lower case when parsing, as trust domains compare case-insensitively.
public struct TrustDomain: Hashable, Comparable, Sendable, CustomStringConvertible {
    /// The largest trust domain name accepted, in bytes.
    public static let maximumLength = 255

    /// The trust domain name, lower case (for example `ai.example`).
    public let name: String

    /// Parses a trust domain from its name (`ai.example`) or from a SPIFFE ID of it (`spiffe://ai.example`).
    ///
    /// - Throws: ``SPIFFEError`` naming the rule the text breaks.
    public init(_ text: String) throws {
        if text.utf8.contains(UInt8(ascii: ":")) && text.contains("://") {
            let id = try SPIFFEID(parsing: text)
            guard id.path.isEmpty else {
                throw SPIFFEError(.invalidTrustDomainCharacter, "trustdomain: \(text) is a SPIFFE ID with a path, not a trust domain")
            }
            self = id.trustDomain
        } else {
            self.name = try Self.validatedName(Substring(text))
        }
    }

    init(validatedName: String) {
        self.name = validatedName
    }

    /// The trust domain's own SPIFFE ID, `spiffe://NAME`.
    public var id: SPIFFEID { SPIFFEID(trustDomain: self, validatedPath: "") }

    public var description: String { name }

    public static func < (lhs: TrustDomain, rhs: TrustDomain) -> Bool { lhs.name < rhs.name }

    /// Checks the authority part of an ID and returns it folded to lower case.
    static func validatedName(_ authority: Substring) throws -> String {
        if authority.isEmpty {
            throw SPIFFEError(.missingTrustDomain, "spiffeid: the trust domain is missing")
        }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(authority.utf8.count)
        for byte in authority.utf8 {
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                UInt8(ascii: "."), UInt8(ascii: "-"), UInt8(ascii: "_"):
                bytes.append(byte)
            case UInt8(ascii: "A")...UInt8(ascii: "Z"):
                bytes.append(byte + 32)
            case UInt8(ascii: "@"):
                throw SPIFFEError(.userInfoNotAllowed, "spiffeid: a SPIFFE ID cannot carry user info ('@' in the trust domain)")
            case UInt8(ascii: ":"):
                throw SPIFFEError(.portNotAllowed, "spiffeid: a SPIFFE ID cannot carry a port (':' in the trust domain)")
            case UInt8(ascii: "%"):
                throw SPIFFEError(.percentEncodingNotAllowed, "spiffeid: percent-encoding is not allowed in the trust domain")
            case UInt8(ascii: "?"):
                throw SPIFFEError(.queryNotAllowed, "spiffeid: a SPIFFE ID cannot carry a query")
            case UInt8(ascii: "#"):
                throw SPIFFEError(.fragmentNotAllowed, "spiffeid: a SPIFFE ID cannot carry a fragment")
            default:
                throw SPIFFEError(
                    .invalidTrustDomainCharacter,
                    "spiffeid: trust domain characters are limited to lower-case letters, digits, '.', '-' and '_' (found byte 0x\(hex(byte)))"
                )
            }
        }
        guard bytes.count <= maximumLength else {
            throw SPIFFEError(.trustDomainTooLong, "spiffeid: the trust domain is \(bytes.count) bytes, more than the \(maximumLength) allowed")
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}

extension TrustDomain: Codable {
    public init(from decoder: any Decoder) throws {
        try self.init(decoder.singleValueContainer().decode(String.self))
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(name)
    }
}

func hex(_ byte: UInt8) -> String {
    let digits = Array("0123456789abcdef")
    return String([digits[Int(byte >> 4)], digits[Int(byte & 0x0f)]])
}
