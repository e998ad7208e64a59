// Authorisation of a peer by its SPIFFE ID, as values that compose.

/// Decides whether a peer's SPIFFE ID is allowed.
///
/// ```swift
/// let authorizer = Authorizer.memberOf(try TrustDomain("ai.example"))
///     .and(.matching("model servers") { $0.path.hasPrefix("/model/") })
/// ```
public struct Authorizer: Sendable {
    private let check: @Sendable (SPIFFEID) throws -> Void

    /// An authorizer from a function that throws to refuse.
    public init(_ check: @escaping @Sendable (SPIFFEID) throws -> Void) {
        self.check = check
    }

    /// Authorises `id`, or throws why not.
    ///
    /// - Throws: ``SPIFFEError`` with code `unauthorized` (or the custom check's own error).
    public func authorize(_ id: SPIFFEID) throws {
        try check(id)
    }

    /// Allows any SPIFFE ID: for when something else authorises.
    public static let any = Authorizer { _ in }

    /// Allows exactly one ID.
    public static func id(_ allowed: SPIFFEID) -> Authorizer {
        Authorizer { id in
            guard id == allowed else { throw unauthorized(id, "expected \(allowed)") }
        }
    }

    /// Allows any of a set of IDs.
    public static func oneOf(_ allowed: Set<SPIFFEID>) -> Authorizer {
        Authorizer { id in
            guard allowed.contains(id) else {
                throw unauthorized(id, "expected one of \(allowed.sorted().map(\.description).joined(separator: ", "))")
            }
        }
    }

    /// Allows every ID of a trust domain.
    public static func memberOf(_ trustDomain: TrustDomain) -> Authorizer {
        Authorizer { id in
            guard id.isMember(of: trustDomain) else { throw unauthorized(id, "expected a member of \(trustDomain)") }
        }
    }

    /// Allows the IDs for which a predicate holds; `description` names the rule in refusals.
    public static func matching(_ description: String, _ predicate: @escaping @Sendable (SPIFFEID) -> Bool) -> Authorizer {
        Authorizer { id in
            guard predicate(id) else { throw unauthorized(id, "expected \(description)") }
        }
    }

    /// Allows an ID that both this and `other` allow.
    public func and(_ other: Authorizer) -> Authorizer {
        Authorizer { id in
            try self.authorize(id)
            try other.authorize(id)
        }
    }

    /// Allows an ID that this or `other` allows.
    public func or(_ other: Authorizer) -> Authorizer {
        Authorizer { id in
            do {
                try self.authorize(id)
            } catch {
                try other.authorize(id)
            }
        }
    }

    private static func unauthorized(_ id: SPIFFEID, _ expectation: String) -> SPIFFEError {
        SPIFFEError(.unauthorized, "authorizer: \(id) is not authorised: \(expectation)")
    }
}
