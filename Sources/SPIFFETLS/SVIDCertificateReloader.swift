// The local certificate of a TLS endpoint, replaced on rotation without a restart: every new
// handshake presents the source's SVID as it is then (or the one most recently given to `update`).

public import NIOCertificateReloading
public import NIOSSL
public import SPIFFE
import Synchronization

public final class SVIDCertificateReloader: CertificateReloader, Sendable {
    private struct Loaded: Sendable {
        let svid: X509SVID
        let chain: [NIOSSLCertificate]
        let key: NIOSSLPrivateKey
    }

    private let state: Mutex<Loaded>
    private let source: (any X509SVIDSource)?

    /// Presents `svid` until ``update(_:)`` gives another.
    /// - Throws: when the SVID's certificates or key cannot be handed to BoringSSL.
    public init(_ svid: X509SVID) throws {
        state = Mutex(try Self.load(svid))
        source = nil
    }

    /// Presents the source's SVID, and a new one from the first handshake after the source has it.
    /// - Throws: when the source has no SVID yet, or it cannot be handed to BoringSSL.
    public init(source: any X509SVIDSource) throws {
        state = Mutex(try Self.load(try source.x509SVID()))
        self.source = source
    }

    /// Presents `svid` on every handshake from now on.
    public func update(_ svid: X509SVID) throws {
        let loaded = try Self.load(svid)
        state.withLock { $0 = loaded }
    }

    /// The SVID presented now.
    public var current: X509SVID { state.withLock { $0.svid } }

    public var sslContextConfigurationOverride: NIOSSLContextConfigurationOverride {
        // Asked at every handshake: a rotated SVID is loaded once, by the first handshake after it.
        if let source, let svid = try? source.x509SVID(), svid.leaf != current.leaf { try? update(svid) }
        return state.withLock { loaded in
            var override = NIOSSLContextConfigurationOverride()
            override.certificateChain = loaded.chain.map { .certificate($0) }
            override.privateKey = .privateKey(loaded.key)
            return override
        }
    }

    private static func load(_ svid: X509SVID) throws -> Loaded {
        let chain = try svid.certificates.map { try NIOSSLCertificate(bytes: $0.derBytes, format: .der) }
        let key = try NIOSSLPrivateKey(bytes: try svid.privateKeyDER(), format: .der)
        return Loaded(svid: svid, chain: chain, key: key)
    }
}
