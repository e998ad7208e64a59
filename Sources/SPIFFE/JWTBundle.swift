// The JWT authorities of one trust domain, keyed by key ID.

/// The JWT-SVID signing keys of a trust domain.
public struct JWTBundle: Sendable, JWTBundleSource {
    /// The trust domain these authorities speak for.
    public let trustDomain: TrustDomain
    /// The authorities by key ID.
    public private(set) var authorities: [String: JWTAuthority]

    public init(trustDomain: TrustDomain, authorities: [JWTAuthority] = []) throws {
        self.trustDomain = trustDomain
        self.authorities = [:]
        for authority in authorities { try add(authority) }
    }

    /// Adds an authority.
    ///
    /// - Throws: ``SPIFFEError`` with `duplicateBundleKey` when the key ID is taken, `missingKeyID` when it is empty.
    public mutating func add(_ authority: JWTAuthority) throws {
        guard !authority.keyID.isEmpty else {
            throw SPIFFEError(.missingKeyID, "jwtbundle: a JWT authority needs a key ID")
        }
        guard authorities[authority.keyID] == nil else {
            throw SPIFFEError(.duplicateBundleKey, "jwtbundle: key ID '\(authority.keyID)' appears twice in the bundle of \(trustDomain)")
        }
        authorities[authority.keyID] = authority
    }

    /// Removes the authority with a key ID, if present.
    public mutating func remove(keyID: String) { authorities[keyID] = nil }

    /// The authority with a key ID.
    ///
    /// - Throws: ``SPIFFEError`` with `unknownKeyID`.
    public func authority(keyID: String) throws -> JWTAuthority {
        guard let authority = authorities[keyID] else {
            throw SPIFFEError(.unknownKeyID, "jwtbundle: no JWT authority with key ID '\(keyID)' in the bundle of \(trustDomain)")
        }
        return authority
    }

    public func jwtBundle(for trustDomain: TrustDomain) throws -> JWTBundle {
        guard trustDomain == self.trustDomain else {
            throw SPIFFEError(.bundleNotFound, "jwtbundle: no JWT bundle for trust domain \(trustDomain) (this one is \(self.trustDomain)'s)")
        }
        return self
    }
}
