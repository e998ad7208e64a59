// JWT bundles of several trust domains, one each.

/// JWT bundles keyed by trust domain.
public struct JWTBundleSet: Sendable, JWTBundleSource {
    private var bundles: [TrustDomain: JWTBundle]

    public init(_ bundles: [JWTBundle] = []) {
        self.bundles = [:]
        for bundle in bundles { self.bundles[bundle.trustDomain] = bundle }
    }

    public mutating func set(_ bundle: JWTBundle) { bundles[bundle.trustDomain] = bundle }
    public mutating func remove(_ trustDomain: TrustDomain) { bundles[trustDomain] = nil }
    public subscript(trustDomain: TrustDomain) -> JWTBundle? { bundles[trustDomain] }
    public var all: [JWTBundle] { bundles.values.sorted { $0.trustDomain < $1.trustDomain } }

    public func jwtBundle(for trustDomain: TrustDomain) throws -> JWTBundle {
        guard let bundle = bundles[trustDomain] else {
            throw SPIFFEError(.bundleNotFound, "jwtbundle: no JWT bundle for trust domain \(trustDomain)")
        }
        return bundle
    }
}
