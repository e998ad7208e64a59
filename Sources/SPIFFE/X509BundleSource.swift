// Where X.509 bundles come from: a bundle, a set, or the live Workload API.

/// Anything that can give the X.509 bundle of a trust domain.
public protocol X509BundleSource: Sendable {
    /// The bundle of `trustDomain`.
    ///
    /// - Throws: ``SPIFFEError`` with code `bundleNotFound` when the source has none.
    func x509Bundle(for trustDomain: TrustDomain) throws -> X509Bundle
}
