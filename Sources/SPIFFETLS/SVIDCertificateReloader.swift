// The local certificate of a TLS endpoint, replaced on rotation without a restart: every new
// handshake presents the SVID most recently given to `update`.

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

    /// - Throws: when the SVID's certificates or key cannot be handed to BoringSSL.
    public init(_ svid: X509SVID) throws {
        state = Mutex(try Self.load(svid))
    }

    /// Presents `svid` on every handshake from now on.
    public func update(_ svid: X509SVID) throws {
        let loaded = try Self.load(svid)
        state.withLock { $0 = loaded }
    }

    /// The SVID presented now.
    public var current: X509SVID { state.withLock { $0.svid } }

    public var sslContextConfigurationOverride: NIOSSLContextConfigurationOverride {
        state.withLock { loaded in
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
