// Mutual TLS by the SPIFFE rules for swift-nio-ssl: the local SVID (replaced on rotation without a
// restart) and a peer check against the bundle of the peer's own trust domain, then the
// authorizer. The verified peer's SPIFFE ID is offered to the application. It works with any
// source of SVIDs and bundles (files, or the Workload API's X509Source) and needs no gRPC; the
// grpc-swift helpers live with the Workload API client.

public import Foundation
public import NIOCore
public import NIOSSL
public import SPIFFE
import X509

/// TLS client or server handlers that present an SVID and verify the peer's.
public struct SPIFFETLSContext: Sendable {
    public let reloader: SVIDCertificateReloader
    private let context: NIOSSLContext
    private let verify: SPIFFEPeerVerification.Callback

    /// - Parameters:
    ///   - reloader: the local SVID, updated in place on rotation.
    ///   - bundles: where peers' trust bundles come from.
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

    /// From sources: the SVID `svids` gives (followed on rotation), peers checked against `bundles`.
    public init(
        svids: any X509SVIDSource, bundles: any X509BundleSource, authorizer: Authorizer, server: Bool,
        onRefusal: @escaping @Sendable (String) -> Void = { _ in }, now: @escaping @Sendable () -> Date = { Date() }
    ) throws {
        try self.init(
            reloader: try SVIDCertificateReloader(source: svids), bundles: { bundles }, authorizer: authorizer, server: server, onRefusal: onRefusal, now: now
        )
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
}
