// The SPIFFE-ID specification's syntax rules, case by case.

import Testing
import SPIFFE

@Suite("SPIFFE ID")
struct SPIFFEIDTests {
    private static func code(of text: String) -> SPIFFEError.Code? {
        do {
            _ = try SPIFFEID(parsing: text)
            return nil
        } catch let error as SPIFFEError {
            return error.code
        } catch {
            return nil
        }
    }

    private static func isTrustDomainByte(_ byte: UInt8) -> Bool {
        (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte) || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte)
            || [UInt8(ascii: "."), UInt8(ascii: "-"), UInt8(ascii: "_")].contains(byte)
    }

    private static func isUpper(_ byte: UInt8) -> Bool { (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(byte) }

    @Test("every byte in the trust domain", arguments: 0...255)
    func trustDomainByte(_ value: Int) throws {
        let byte = UInt8(value)
        let text = "spiffe://tr" + String(decoding: [byte], as: UTF8.self) + "ust/path"
        switch byte {
        case _ where Self.isTrustDomainByte(byte):
            let id = try SPIFFEID(parsing: text)
            #expect(id.trustDomain.name == "tr\(Character(Unicode.Scalar(byte)))ust")
            #expect(id.path == "/path")
        case _ where Self.isUpper(byte):
            let id = try SPIFFEID(parsing: text)
            #expect(id.trustDomain.name == "tr\(Character(Unicode.Scalar(byte + 32)))ust", "upper case is folded")
        case UInt8(ascii: "/"):
            // The slash ends the trust domain: this is a valid ID with a two-segment path.
            let id = try SPIFFEID(parsing: text)
            #expect(id.trustDomain.name == "tr")
            #expect(id.path == "/ust/path")
        case UInt8(ascii: "@"): #expect(Self.code(of: text) == .userInfoNotAllowed)
        case UInt8(ascii: ":"): #expect(Self.code(of: text) == .portNotAllowed)
        case UInt8(ascii: "%"): #expect(Self.code(of: text) == .percentEncodingNotAllowed)
        case UInt8(ascii: "?"): #expect(Self.code(of: text) == .queryNotAllowed)
        case UInt8(ascii: "#"): #expect(Self.code(of: text) == .fragmentNotAllowed)
        default: #expect(Self.code(of: text) == .invalidTrustDomainCharacter)
        }
    }

    @Test("every byte in a path segment", arguments: 0...255)
    func pathByte(_ value: Int) throws {
        let byte = UInt8(value)
        let text = "spiffe://trust/pa" + String(decoding: [byte], as: UTF8.self) + "th"
        switch byte {
        case _ where Self.isTrustDomainByte(byte) || Self.isUpper(byte):
            let id = try SPIFFEID(parsing: text)
            #expect(id.path == "/pa\(Character(Unicode.Scalar(byte)))th", "the path keeps its case")
        case UInt8(ascii: "/"):
            #expect(try SPIFFEID(parsing: text).path == "/pa/th")
        case UInt8(ascii: "%"): #expect(Self.code(of: text) == .percentEncodingNotAllowed)
        case UInt8(ascii: "?"): #expect(Self.code(of: text) == .queryNotAllowed)
        case UInt8(ascii: "#"): #expect(Self.code(of: text) == .fragmentNotAllowed)
        default: #expect(Self.code(of: text) == .invalidPathCharacter)
        }
    }

    @Test("refusals name their rule", arguments: [
        ("", SPIFFEError.Code.emptyID),
        ("http://example.org/a", .invalidScheme),
        ("spiffe:/example.org/a", .invalidScheme),
        ("example.org/a", .invalidScheme),
        ("spiffe://", .missingTrustDomain),
        ("spiffe:///path", .missingTrustDomain),
        ("spiffe://user@example.org/a", .userInfoNotAllowed),
        ("spiffe://example.org:8080/a", .portNotAllowed),
        ("spiffe://example.org/a?x=1", .queryNotAllowed),
        ("spiffe://example.org/a#frag", .fragmentNotAllowed),
        ("spiffe://example.org/a%20b", .percentEncodingNotAllowed),
        ("spiffe://example%2eorg/a", .percentEncodingNotAllowed),
        ("spiffe://example.org/", .trailingSlash),
        ("spiffe://example.org/a/", .trailingSlash),
        ("spiffe://example.org//a", .emptyPathSegment),
        ("spiffe://example.org/a//b", .emptyPathSegment),
        ("spiffe://example.org/.", .dotPathSegment),
        ("spiffe://example.org/..", .dotPathSegment),
        ("spiffe://example.org/a/./b", .dotPathSegment),
        ("spiffe://example.org/a/../b", .dotPathSegment),
    ])
    func refusals(_ text: String, _ expected: SPIFFEError.Code) {
        #expect(Self.code(of: text) == expected)
    }

    @Test("dots inside a segment are fine")
    func dotsInSegments() throws {
        #expect(try SPIFFEID(parsing: "spiffe://example.org/.../a.b/..c").path == "/.../a.b/..c")
    }

    @Test("the trust domain may be 255 bytes, not 256")
    func trustDomainLimit() throws {
        let name = String(repeating: "a", count: 255)
        #expect(try SPIFFEID(parsing: "spiffe://\(name)/a").trustDomain.name == name)
        #expect(Self.code(of: "spiffe://\(name)a/a") == .trustDomainTooLong)
        #expect(throws: SPIFFEError.self) { try TrustDomain(name + "a") }
    }

    @Test("the whole ID may be 2048 bytes, not 2049")
    func idLimit() throws {
        let head = "spiffe://example.org/"
        let exact = head + String(repeating: "p", count: 2048 - head.utf8.count)
        #expect(try SPIFFEID(parsing: exact).description.utf8.count == 2048)
        #expect(Self.code(of: exact + "p") == .idTooLong)
        let td = try TrustDomain("example.org")
        #expect(throws: SPIFFEError.self) {
            try SPIFFEID(trustDomain: td, path: "/" + String(repeating: "p", count: 2048))
        }
    }

    @Test("scheme and trust domain are case-insensitive, the path is not")
    func normalisation() throws {
        let id = try SPIFFEID(parsing: "SPIFFE://Example.ORG/Model/Llama")
        #expect(id.description == "spiffe://example.org/Model/Llama")
        #expect(id == (try SPIFFEID(parsing: "spiffe://example.org/Model/Llama")))
        #expect(id != (try SPIFFEID(parsing: "spiffe://example.org/model/llama")))
        #expect(try TrustDomain("Example.Org").name == "example.org")
    }

    @Test("an ID without a path is the trust domain's ID")
    func trustDomainID() throws {
        let id = try SPIFFEID(parsing: "spiffe://example.org")
        #expect(id.path.isEmpty)
        #expect(id == (try TrustDomain("example.org")).id)
        #expect(try TrustDomain("spiffe://example.org").name == "example.org")
        #expect(throws: SPIFFEError.self) { try TrustDomain("spiffe://example.org/a") }
    }

    @Test("IDs built from segments are checked the same way")
    func segments() throws {
        let td = try TrustDomain("example.org")
        #expect(try SPIFFEID(trustDomain: td, segments: ["model", "llama"]).description == "spiffe://example.org/model/llama")
        #expect(throws: SPIFFEError.self) { try SPIFFEID(trustDomain: td, segments: ["a b"]) }
        #expect(throws: SPIFFEError.self) { try SPIFFEID(trustDomain: td, segments: [".."]) }
        #expect(throws: SPIFFEError.self) { try SPIFFEID(trustDomain: td, path: "relative") }
    }
}
