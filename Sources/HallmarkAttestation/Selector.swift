// Selectors: the `type:value` facts that attestation proves about a node or a workload, and that
// registration entries require.

/// A selector such as `unix:uid:1001` (type `unix`, value `uid:1001`) or `gpu:model:H100`.
public struct Selector: Hashable, Comparable, Sendable, CustomStringConvertible, Codable {
    /// The largest selector accepted, type and value together, in bytes.
    public static let maximumLength = 1024

    public let type: String
    public let value: String

    /// Makes a selector from its parts.
    ///
    /// - Throws: ``SelectorError`` when a part is empty, too long, or the type has characters
    ///   other than letters, digits, '_', '-' and '.'.
    public init(type: String, value: String) throws {
        guard !type.isEmpty else { throw SelectorError(.emptyPart, "selector: the type is empty (expected TYPE:VALUE)") }
        guard !value.isEmpty else { throw SelectorError(.emptyPart, "selector: '\(type)' has an empty value (expected TYPE:VALUE)") }
        guard type.utf8.allSatisfy(Self.isTypeByte) else {
            throw SelectorError(.invalidType, "selector: type '\(type)' may use only letters, digits, '_', '-' and '.'")
        }
        guard type.utf8.count + 1 + value.utf8.count <= Self.maximumLength else {
            throw SelectorError(.tooLong, "selector: '\(type):…' is longer than \(Self.maximumLength) bytes")
        }
        // Control characters (general category Cc) are exactly U+0000–U+001F and U+007F–U+009F;
        // compared by value, as Unicode property lookups cost more than all else here.
        guard !value.unicodeScalars.contains(where: { $0.value < 0x20 || (0x7F...0x9F).contains($0.value) }) else {
            throw SelectorError(.controlCharacter, "selector: the value of '\(type)' contains a control character")
        }
        self.type = type
        self.value = value
    }

    /// Parses `TYPE:VALUE`; the value may itself contain ':'.
    ///
    /// - Throws: ``SelectorError`` naming what is wrong.
    public init(parsing text: String) throws {
        guard let colon = text.firstIndex(of: ":") else {
            throw SelectorError(.emptyPart, "selector: '\(text)' has no ':' (expected TYPE:VALUE, such as unix:uid:1001)")
        }
        try self.init(type: String(text[..<colon]), value: String(text[text.index(after: colon)...]))
    }

    public var description: String { "\(type):\(value)" }

    public static func < (lhs: Selector, rhs: Selector) -> Bool {
        (lhs.type, lhs.value) < (rhs.type, rhs.value)
    }

    private static func isTypeByte(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
            UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "_"), UInt8(ascii: "-"), UInt8(ascii: "."):
            return true
        default:
            return false
        }
    }
}

/// A selector that could not be built: a stable code, and a message naming the rule.
///
/// Match on ``code``; read ``message`` for the cause. New codes may be added, so a `switch` over
/// codes needs a `default`.
public struct SelectorError: Error, Hashable, Sendable, CustomStringConvertible {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        fileprivate enum Base: String, Hashable, Sendable {
            case emptyPart, invalidType, tooLong, controlCharacter
        }

        fileprivate let base: Base
        fileprivate init(_ base: Base) { self.base = base }

        public var description: String { base.rawValue }

        /// The type or the value is empty, or the text has no `:` between them.
        public static let emptyPart = Code(.emptyPart)
        /// The type uses a character other than letters, digits, `_`, `-` and `.`.
        public static let invalidType = Code(.invalidType)
        /// The selector is longer than the most allowed.
        public static let tooLong = Code(.tooLong)
        /// The value holds a control character.
        public static let controlCharacter = Code(.controlCharacter)
    }

    public let code: Code
    /// A sentence naming the cause, prefixed `selector:`.
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

extension Set<Selector> {
    /// Whether every selector of `required` is in this set (an entry's rule for a workload).
    public func satisfies(_ required: some Collection<Selector>) -> Bool {
        required.allSatisfy(contains)
    }
}
