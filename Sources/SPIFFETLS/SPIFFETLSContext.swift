// Mutual TLS by the SPIFFE rules for swift-nio-ssl and grpc-swift-2: the local SVID (replaced on
// rotation without a restart) and a peer check against the bundle of the peer's own trust domain,
// then the authorizer. The verified peer's SPIFFE ID is offered to the application.

public import Foundation
public import GRPCNIOTransportHTTP2
public import NIOCore
public import NIOSSL
public import SPIFFE
public import SPIFFEWorkloadAPI
import X509

/// TLS client or server handlers that present an SVID and verify the peer's.
public struct SPIFFETLSContext: Sendable {
    public let reloader: SVIDCertificateReloader
    private let context: NIOSSLContext
    private let verify: SPIFFEPeerVerification.Callback

    /// - Parameters:
    ///   - reloader: the local SVID, updated in place on rotation.
    ///   - bundles: where peers' trust bundles come from (an ``X509Source`` is one).
    ///   - authorizer: which peer IDs are accepted.
    ///   - server: whether this side accepts connections.
    public init(
        reloader: SVIDCertificateReloader, bundles: @escaping @Sendable () -> any X509BundleSource, authorizer: Authorizer, server: Bool,
        onRefusal: @escaping @Sendable (String) -> Void = { _ in }, now: @escaping @Sendable () -> Date = { Date() }
    ) throws {
        var configuration = server
            ? try TLSConfiguration.makeServerConfiguration(certificateReloader: reloader)
            : try TLSConfiguration.makeClientConfiguration(certificateReloader: reloader)
        configuration.minimumTLSVersion = .tlsv12
        // The peer must present a chain; the SPIFFE callback replaces web-PKI verification.
        configuration.certificateVerification = .noHostnameVerification
        self.reloader = reloader
        self.context = try NIOSSLContext(configuration: configuration)
        self.verify = SPIFFEPeerVerification.callback(bundles: bundles, authorizer: authorizer, onRefusal: onRefusal, now: now)
    }

    /// From a started ``X509Source``: its default SVID (followed on rotation) and its bundles.
    public init(source: X509Source, authorizer: Authorizer, server: Bool, onRefusal: @escaping @Sendable (String) -> Void = { _ in }) throws {
        try self.init(reloader: try Self.reloader(following: source), bundles: { source }, authorizer: authorizer, server: server, onRefusal: onRefusal)
    }

    public func serverHandler() -> NIOSSLServerHandler {
        NIOSSLServerHandler(context: context, customVerificationCallbackWithMetadata: verify)
    }

    public func clientHandler() throws -> NIOSSLClientHandler {
        // The server is identified by its SPIFFE ID, not a host name: no SNI.
        try NIOSSLClientHandler(context: context, serverHostname: nil, customVerificationCallbackWithMetadata: verify)
    }

    /// The peer's SPIFFE ID, once the handshake on `channel` has verified it.
    public static func peerID(of channel: any Channel) async throws -> SPIFFEID {
        guard let chain = try await channel.nioSSL_peerValidatedCertificateChain().get(), let leaf = chain.first else {
            throw SPIFFEError(.emptyChain, "spiffetls: the peer presented no verified certificate")
        }
        return try SPIFFEID(x509SVIDLeaf: try Certificate(derEncoded: try leaf.toDERBytes()))
    }

    /// A reloader presenting the source's default SVID now and after every rotation.
    private static func reloader(following source: X509Source) throws -> SVIDCertificateReloader {
        guard let svid = source.svid else { throw SPIFFEError(.emptyChain, "spiffetls: the X509Source has no SVID yet; wait for its first update") }
        let reloader = try SVIDCertificateReloader(svid)
        reloader.follow(source)
        return reloader
    }

    // MARK: grpc-swift-2

    /// Transport security for a gRPC server: mTLS with the source's SVID and SPIFFE peer checks.
    public static func grpcServer(source: X509Source, authorizer: Authorizer) throws -> HTTP2ServerTransport.Posix.TransportSecurity {
        try .mTLS(certificateReloader: try reloader(following: source)) { tls in
            tls.clientCertificateVerification = .noHostnameVerification
            tls.customVerificationCallback = SPIFFEPeerVerification.callback(bundles: { source }, authorizer: authorizer)
        }
    }

    /// Transport security for a gRPC client: mTLS with the source's SVID and SPIFFE checks of the server.
    public static func grpcClient(source: X509Source, authorizer: Authorizer) throws -> HTTP2ClientTransport.Posix.TransportSecurity {
        try .mTLS(certificateReloader: try reloader(following: source)) { tls in
            tls.serverCertificateVerification = .noHostnameVerification
            tls.customVerificationCallback = SPIFFEPeerVerification.callback(bundles: { source }, authorizer: authorizer)
        }
    }
}
