// SPIFFE mutual TLS from a live X509Source: for swift-nio-ssl handlers, and as grpc-swift-2
// transport security (the source's SVID presented and followed on rotation, peers checked against
// its bundles). SPIFFETLS itself knows no gRPC and no Workload API.

public import GRPCNIOTransportHTTP2
public import SPIFFE
public import SPIFFETLS

extension X509Source: X509SVIDSource {
    /// The default SVID now.
    /// - Throws: ``SPIFFEError`` before the source's first update.
    public func x509SVID() throws -> X509SVID {
        guard let svid else { throw SPIFFEError(.emptyChain, "spiffetls: the X509Source has no SVID yet; wait for its first update") }
        return svid
    }
}

extension SPIFFETLSContext {
    /// From a started ``X509Source``: its default SVID (followed on rotation) and its bundles.
    public init(source: X509Source, authorizer: Authorizer, server: Bool, onRefusal: @escaping @Sendable (String) -> Void = { _ in }) throws {
        try self.init(svids: source, bundles: source, authorizer: authorizer, server: server, onRefusal: onRefusal)
    }

    /// Transport security for a gRPC server: mTLS with the source's SVID and SPIFFE peer checks.
    public static func grpcServer(source: some X509SVIDSource & X509BundleSource, authorizer: Authorizer) throws -> HTTP2ServerTransport.Posix.TransportSecurity {
        try .mTLS(certificateReloader: try SVIDCertificateReloader(source: source)) { tls in
            tls.clientCertificateVerification = .noHostnameVerification
            tls.customVerificationCallback = SPIFFEPeerVerification.callback(bundles: { source }, authorizer: authorizer)
        }
    }

    /// Transport security for a gRPC client: mTLS with the source's SVID and SPIFFE checks of the server.
    public static func grpcClient(source: some X509SVIDSource & X509BundleSource, authorizer: Authorizer) throws -> HTTP2ClientTransport.Posix.TransportSecurity {
        try .mTLS(certificateReloader: try SVIDCertificateReloader(source: source)) { tls in
            tls.serverCertificateVerification = .noHostnameVerification
            tls.customVerificationCallback = SPIFFEPeerVerification.callback(bundles: { source }, authorizer: authorizer)
        }
    }
}
