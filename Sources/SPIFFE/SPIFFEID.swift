// A SPIFFE ID (`spiffe://trust-domain/path`), valid by construction, by the SPIFFE-ID specification.

/// A SPIFFE ID such as `spiffe://ai.example/model/llama-serve`.
///
/// A value that exists is valid. The scheme and trust domain are folded to lower case when parsing;
/// the path is case-sensitive.
public struct SPIFFEID: Hashable, Comparable, Sendable, CustomStringConvertible {
    /// The largest SPIFFE ID accepted, in bytes.
    public static let maximumLength = 2048

    /// The trust domain the ID belongs to.
    public let trustDomain: TrustDomain
    /// The path, empty or starting with `/` (for example `/model/llama-serve`).
    public let path: String

    /// Parses a SPIFFE ID.
    ///
    /// - Throws: ``SPIFFEError`` naming the rule the text breaks.
    public init(parsing text: String) throws {
        let utf8 = text.utf8
        if utf8.isEmpty {
            throw SPIFFEError(.emptyID, "spiffeid: the SPIFFE ID is empty")
        }
        if utf8.count > Self.maximumLength {
            throw SPIFFEError(.idTooLong, "spiffeid: the SPIFFE ID is \(utf8.count) bytes, more than the \(Self.maximumLength) allowed")
        }
        let scheme = Array("spiffe://".utf8)
        let head = Array(utf8.prefix(scheme.count))
        let lowered = head.map { (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains($0) ? $0 + 32 : $0 }
        guard lowered == scheme else {
            throw SPIFFEError(.invalidScheme, "spiffeid: the scheme must be 'spiffe://'")
        }
        let rest = text.utf8.dropFirst(scheme.count)
        let slash = rest.firstIndex(of: UInt8(ascii: "/")) ?? rest.endIndex
        let authority = Substring(text.utf8[rest.startIndex..<slash])
        let path = Substring(text.utf8[slash..<rest.endIndex])
        self.trustDomain = try TrustDomain(validatedName: TrustDomain.validatedName(authority))
        try Self.validatePath(path)
        self.path = String(path)
    }

    /// Makes an ID in a trust domain from a path (`/model/llama-serve`, or empty).
    ///
    /// - Throws: ``SPIFFEError`` when the path breaks a rule.
    public init(trustDomain: TrustDomain, path: String) throws {
        try Self.validatePath(Substring(path))
        let length = "spiffe://".utf8.count + trustDomain.name.utf8.count + path.utf8.count
        if length > Self.maximumLength {
            throw SPIFFEError(.idTooLong, "spiffeid: the SPIFFE ID would be \(length) bytes, more than the \(Self.maximumLength) allowed")
        }
        self.trustDomain = trustDomain
        self.path = path
    }

    /// Makes an ID in a trust domain from path segments (`["model", "llama-serve"]`).
    ///
    /// - Throws: ``SPIFFEError`` when a segment breaks a rule.
    public init(trustDomain: TrustDomain, segments: [String]) throws {
        try self.init(trustDomain: trustDomain, path: segments.map { "/" + $0 }.joined())
    }

    init(trustDomain: TrustDomain, validatedPath: String) {
        self.trustDomain = trustDomain
        self.path = validatedPath
    }

    /// The ID as text, `spiffe://TRUST-DOMAIN/PATH`.
    public var description: String { "spiffe://\(trustDomain.name)\(path)" }

    /// Whether the ID belongs to the given trust domain.
    public func isMember(of trustDomain: TrustDomain) -> Bool { self.trustDomain == trustDomain }

    public static func < (lhs: SPIFFEID, rhs: SPIFFEID) -> Bool { lhs.description < rhs.description }

    static func validatePath(_ path: Substring) throws {
        guard let first = path.utf8.first else { return }
        guard first == UInt8(ascii: "/") else {
            throw SPIFFEError(.pathNotAbsolute, "spiffeid: the path must start with '/'")
        }
        var segmentLength = 0
        var segmentDots = 0
        func endSegment() throws {
            if segmentLength == 0 {
                throw SPIFFEError(.emptyPathSegment, "spiffeid: path segments cannot be empty")
            }
            if segmentDots == segmentLength && segmentLength <= 2 {
                throw SPIFFEError(.dotPathSegment, "spiffeid: path segments cannot be '.' or '..'")
            }
        }
        for (offset, byte) in path.utf8.enumerated() {
            switch byte {
            case UInt8(ascii: "/"):
                if offset > 0 { try endSegment() }
                segmentLength = 0
                segmentDots = 0
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
                UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "_"):
                segmentLength += 1
            case UInt8(ascii: "."):
                segmentLength += 1
                segmentDots += 1
            case UInt8(ascii: "%"):
                throw SPIFFEError(.percentEncodingNotAllowed, "spiffeid: percent-encoding is not allowed in the path")
            case UInt8(ascii: "?"):
                throw SPIFFEError(.queryNotAllowed, "spiffeid: a SPIFFE ID cannot carry a query")
            case UInt8(ascii: "#"):
                throw SPIFFEError(.fragmentNotAllowed, "spiffeid: a SPIFFE ID cannot carry a fragment")
            default:
                throw SPIFFEError(
                    .invalidPathCharacter,
                    "spiffeid: path segment characters are limited to letters, digits, '.', '-' and '_' (found byte 0x\(hex(byte)))"
                )
            }
        }
        if path.utf8.last == UInt8(ascii: "/") {
            throw SPIFFEError(.trailingSlash, "spiffeid: the path cannot end with '/'")
        }
        try endSegment()
    }
}

extension SPIFFEID: Codable {
    public init(from decoder: any Decoder) throws {
        try self.init(parsing: decoder.singleValueContainer().decode(String.self))
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }
}
