// The X.509 authorities of one trust domain.

public import X509

/// The X.509 trust anchors of a trust domain.
public struct X509Bundle: Hashable, Sendable, X509BundleSource {
    /// The trust domain these authorities speak for.
    public let trustDomain: TrustDomain
    /// The CA certificates, in the order given.
    public private(set) var authorities: [Certificate]

    public init(trustDomain: TrustDomain, authorities: [Certificate] = []) {
        self.trustDomain = trustDomain
        self.authorities = []
        for authority in authorities { add(authority) }
    }

    /// Parses the concatenated DER certificates of a bundle (the Workload API's encoding).
    public init(trustDomain: TrustDomain, der: [UInt8]) throws {
        self.init(trustDomain: trustDomain, authorities: try DERCertificates.parse(concatenated: der, area: "x509bundle"))
    }

    /// Parses a PEM file of CA certificates.
    public init(trustDomain: TrustDomain, pem: String) throws {
        self.init(trustDomain: trustDomain, authorities: try DERCertificates.parse(pem: pem, area: "x509bundle"))
    }

    /// Adds an authority unless it is already present.
    public mutating func add(_ authority: Certificate) {
        if !authorities.contains(authority) { authorities.append(authority) }
    }

    /// Removes an authority, if present.
    public mutating func remove(_ authority: Certificate) {
        authorities.removeAll { $0 == authority }
    }

    /// The authorities as concatenated DER.
    public var der: [UInt8] { DERCertificates.concatenatedDER(authorities) }

    /// The authorities as PEM.
    public var pem: String { DERCertificates.pem(authorities) }

    public func x509Bundle(for trustDomain: TrustDomain) throws -> X509Bundle {
        guard trustDomain == self.trustDomain else {
            throw SPIFFEError(.bundleNotFound, "x509bundle: no X.509 bundle for trust domain \(trustDomain) (this one is \(self.trustDomain)'s)")
        }
        return self
    }
}
