// X.509 bundles of several trust domains, one each (never merged across trust domains).

/// X.509 bundles keyed by trust domain.
public struct X509BundleSet: Sendable, X509BundleSource {
    private var bundles: [TrustDomain: X509Bundle]

    public init(_ bundles: [X509Bundle] = []) {
        self.bundles = [:]
        for bundle in bundles { self.bundles[bundle.trustDomain] = bundle }
    }

    /// Adds or replaces the bundle of the bundle's trust domain.
    public mutating func set(_ bundle: X509Bundle) { bundles[bundle.trustDomain] = bundle }

    /// Removes the bundle of a trust domain.
    public mutating func remove(_ trustDomain: TrustDomain) { bundles[trustDomain] = nil }

    public subscript(trustDomain: TrustDomain) -> X509Bundle? { bundles[trustDomain] }

    /// The bundles, sorted by trust domain.
    public var all: [X509Bundle] { bundles.values.sorted { $0.trustDomain < $1.trustDomain } }

    public func x509Bundle(for trustDomain: TrustDomain) throws -> X509Bundle {
        guard let bundle = bundles[trustDomain] else {
            throw SPIFFEError(.bundleNotFound, "x509bundle: no X.509 bundle for trust domain \(trustDomain)")
        }
        return bundle
    }
}
