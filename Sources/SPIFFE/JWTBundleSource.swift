// Where JWT bundles come from: a bundle, a set, or the live Workload API.

/// Anything that can give the JWT bundle of a trust domain.
public protocol JWTBundleSource: Sendable {
    /// - Throws: ``SPIFFEError`` with code `bundleNotFound` when the source has none.
    func jwtBundle(for trustDomain: TrustDomain) throws -> JWTBundle
}
