// The local certificate of a TLS endpoint, replaced on rotation without a restart: every new
// handshake presents the SVID most recently given to `update`.

public import NIOCertificateReloading
public import NIOSSL
public import SPIFFE
public import SPIFFEWorkloadAPI
import Synchronization

public final class SVIDCertificateReloader: CertificateReloader, Sendable {
    private struct Loaded: Sendable {
        let svid: X509SVID
        let chain: [NIOSSLCertificate]
        let key: NIOSSLPrivateKey
    }

    private let state: Mutex<Loaded>
    private let following = Mutex<Task<Void, Never>?>(nil)

    /// - Throws: when the SVID's certificates or key cannot be handed to BoringSSL.
    public init(_ svid: X509SVID) throws {
        state = Mutex(try Self.load(svid))
    }

    /// Presents `svid` on every handshake from now on.
    public func update(_ svid: X509SVID) throws {
        let loaded = try Self.load(svid)
        state.withLock { $0 = loaded }
    }

    /// Follows a source: each new default SVID is presented from the next handshake on.
    public func follow(_ source: X509Source) {
        let task = Task { [weak self] in
            for await context in source.updates() {
                guard let self, let svid = context.defaultSVID else { continue }
                if svid.leaf != self.current.leaf { try? self.update(svid) }
            }
        }
        following.withLock { $0?.cancel(); $0 = task }
    }

    deinit { following.withLock { $0?.cancel() } }

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
