// Validation of admin input. Every refusal names the field and the rule, and nothing is written.

public import Foundation
public import HallmarkAttestation
public import HallmarkStore
public import SPIFFE

/// An admin request that breaks a rule; the message starts with the field's name.
public struct ValidationFailure: Error, Hashable, Sendable, CustomStringConvertible {
    public let field: String
    public let rule: String
    public init(_ field: String, _ rule: String) {
        self.field = field
        self.rule = rule
    }
    public var description: String { "\(field): \(rule)" }
}

/// The raw fields of an entry as an admin sent them.
public struct EntryInput: Sendable {
    public var id: String = ""
    public var spiffeID: String = ""
    public var parentID: String = ""
    public var selectors: [(type: String, value: String)] = []
    public var x509SVIDTTL: Int = 0
    public var jwtSVIDTTL: Int = 0
    public var dnsNames: [String] = []
    public var admin = false
    public var downstream = false
    /// Unix seconds; 0 for none.
    public var expiresAt: Int64 = 0
    public var hint: String = ""
    public var revisionNumber: Int64 = 0

    public init() {}
}

public enum EntryValidation {
    static let maximumSelectors = 64
    static let maximumDNSNames = 32
    static let maximumHint = 1024

    /// Checks an entry against the server's rules and builds it.
    ///
    /// - Throws: ``ValidationFailure`` for the first field that breaks a rule.
    public static func validate(_ input: EntryInput, trustDomain: TrustDomain, now: Date) throws -> RegistrationEntry {
        let spiffeID = try id(input.spiffeID, field: "spiffe_id", trustDomain: trustDomain)
        guard !spiffeID.path.isEmpty else { throw ValidationFailure("spiffe_id", "must have a path (\(spiffeID) names the trust domain itself)") }
        if spiffeID.path.hasPrefix("/hallmark/") {
            throw ValidationFailure("spiffe_id", "the path /hallmark/ is reserved for the server and its agents")
        }
        let parentID = try id(input.parentID, field: "parent_id", trustDomain: trustDomain)
        guard !input.selectors.isEmpty else { throw ValidationFailure("selectors", "at least one selector (TYPE:VALUE) is required") }
        guard input.selectors.count <= maximumSelectors else {
            throw ValidationFailure("selectors", "at most \(maximumSelectors) selectors are allowed, not \(input.selectors.count)")
        }
        var selectors: [Selector] = []
        for (index, raw) in input.selectors.enumerated() {
            do {
                let selector = try Selector(type: raw.type, value: raw.value)
                guard !selectors.contains(selector) else {
                    throw ValidationFailure("selectors[\(index)]", "'\(selector)' is given twice")
                }
                selectors.append(selector)
            } catch let error as SelectorError {
                throw ValidationFailure("selectors[\(index)]", error.message)
            }
        }
        guard (0...ServerConfig.maximumX509SVIDTTL).contains(input.x509SVIDTTL) else {
            throw ValidationFailure("x509_svid_ttl", "must be 0 (the server default) to \(ServerConfig.maximumX509SVIDTTL) seconds, not \(input.x509SVIDTTL)")
        }
        guard (0...ServerConfig.maximumJWTSVIDTTL).contains(input.jwtSVIDTTL) else {
            throw ValidationFailure("jwt_svid_ttl", "must be 0 (the server default) to \(ServerConfig.maximumJWTSVIDTTL) seconds, not \(input.jwtSVIDTTL)")
        }
        guard input.dnsNames.count <= maximumDNSNames else {
            throw ValidationFailure("dns_names", "at most \(maximumDNSNames) DNS names are allowed")
        }
        for (index, name) in input.dnsNames.enumerated() {
            if let problem = dnsNameProblem(name) { throw ValidationFailure("dns_names[\(index)]", problem) }
            if input.dnsNames[..<index].contains(name) { throw ValidationFailure("dns_names[\(index)]", "'\(name)' is given twice") }
        }
        var expiresAt: Date?
        if input.expiresAt != 0 {
            let date = Date(timeIntervalSince1970: TimeInterval(input.expiresAt))
            guard date > now else { throw ValidationFailure("expires_at", "is in the past (\(date))") }
            expiresAt = date
        }
        guard input.hint.utf8.count <= maximumHint else { throw ValidationFailure("hint", "at most \(maximumHint) bytes") }
        guard !input.hint.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) else {
            throw ValidationFailure("hint", "must not contain control characters")
        }
        if !input.id.isEmpty {
            guard input.id.utf8.count <= 255,
                input.id.utf8.allSatisfy({ $0.isASCIIAlphanumeric || $0 == UInt8(ascii: "-") || $0 == UInt8(ascii: "_") || $0 == UInt8(ascii: ".") })
            else {
                throw ValidationFailure("id", "may use only letters, digits, '-', '_' and '.', up to 255 bytes")
            }
        }
        return RegistrationEntry(
            id: input.id.isEmpty ? UUID().uuidString.lowercased() : input.id, spiffeID: spiffeID, parentID: parentID,
            selectors: selectors, x509SVIDTTL: input.x509SVIDTTL, jwtSVIDTTL: input.jwtSVIDTTL, dnsNames: input.dnsNames,
            admin: input.admin, downstream: input.downstream, expiresAt: expiresAt, hint: input.hint,
            revisionNumber: input.revisionNumber, createdAt: now
        )
    }

    /// Parses a SPIFFE ID field that must belong to the server's trust domain.
    /// A workload's ID: in the trust domain, with a path, and outside the reserved `/hallmark/`
    /// (the server's and the agents' own identities).
    public static func workloadID(_ text: String, field: String, trustDomain: TrustDomain) throws -> SPIFFEID {
        let id = try Self.id(text, field: field, trustDomain: trustDomain)
        guard !id.path.isEmpty else { throw ValidationFailure(field, "must have a path") }
        guard id.path != "/hallmark", !id.path.hasPrefix("/hallmark/") else {
            throw ValidationFailure(field, "must have a path outside the reserved /hallmark/ (the server's and agents' own IDs), not \(id)")
        }
        return id
    }

    public static func id(_ text: String, field: String, trustDomain: TrustDomain) throws -> SPIFFEID {
        guard !text.isEmpty else { throw ValidationFailure(field, "is required") }
        let id: SPIFFEID
        do {
            id = try SPIFFEID(parsing: text)
        } catch let error as SPIFFEError {
            throw ValidationFailure(field, error.message)
        }
        guard id.isMember(of: trustDomain) else {
            throw ValidationFailure(field, "\(id) is not in this server's trust domain \(trustDomain)")
        }
        return id
    }

    /// Why a DNS name is not valid for a certificate, or nil: labels of letters, digits and '-',
    /// 1 to 63 bytes, not starting or ending with '-', 253 bytes in all; a leading "*." is allowed.
    static func dnsNameProblem(_ name: String) -> String? {
        guard !name.isEmpty else { return "is empty" }
        guard name.utf8.count <= 253 else { return "'\(name.prefix(32))…' is longer than 253 bytes" }
        var labels = name.split(separator: ".", omittingEmptySubsequences: false)
        if labels.first == "*" { labels.removeFirst() }
        guard !labels.isEmpty else { return "'\(name)' has no labels after the wildcard" }
        for label in labels {
            guard (1...63).contains(label.utf8.count) else { return "'\(name)' has an empty or over-long label" }
            guard label.utf8.allSatisfy({ $0.isASCIIAlphanumeric || $0 == UInt8(ascii: "-") }) else {
                return "'\(name)' may use only letters, digits and '-' in its labels"
            }
            guard label.first != "-", label.last != "-" else { return "'\(name)' has a label that starts or ends with '-'" }
        }
        return nil
    }
}

extension UInt8 {
    var isASCIIAlphanumeric: Bool {
        (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(self) || (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(self)
            || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(self)
    }
}
