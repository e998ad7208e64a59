// The agent's connection to the server's agent API: the mTLS transport (the server verified by
// its SPIFFE ID against the bundle the agent holds), attestation over its challenge stream, and
// sessions with the agent's SVID. Which server it dials lives here alone: the first of the list
// that answers, and the next one when a connection to it fails.

import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import HallmarkProto
import Logging
import Synchronization
import SPIFFE
import SPIFFETLS
import X509

struct AgentAPIClient: Sendable {
    typealias API = AgentAPI_AgentAPI.Client<HTTP2ClientTransport.Posix>

    let config: AgentConfig
    let logger: Logger
    let servers: ServerRotation

    init(config: AgentConfig, logger: Logger) {
        self.config = config
        self.logger = logger
        servers = ServerRotation(config.servers)
    }

    /// Runs `body` with a client authenticated by `identity`, the server checked against `bundle`.
    func withSession<T: Sendable>(
        _ identity: X509SVID, bundle: @escaping @Sendable () -> X509Bundle?, _ body: @Sendable (API) async throws -> T
    ) async throws -> T {
        let server = servers.current
        let transport = try transport(server, certificate: identity.leaf.derBytes, key: try identity.privateKeyDER(), verifyServer: verifyServer(bundle: bundle))
        return try await failingOver(server) {
            try await withGRPCClient(transport: transport) { grpc in try await body(API(wrapping: grpc)) }
        }
    }

    /// Runs `body` against `server`; when the server cannot be reached (UNAVAILABLE: no connection,
    /// or its certificate refused), the next call goes to the next server of the list.
    private func failingOver<T>(_ server: ServerRotation.Position, _ body: () async throws -> T) async throws -> T {
        do {
            return try await body()
        } catch let error as RPCError where error.code == .unavailable {
            if let next = servers.advance(from: server) {
                logger.warning("server unavailable; trying the next", metadata: ["server": "\(server.address)", "next": "\(next)", "error": "\(error.message)"])
            }
            throw error
        }
    }

    /// Attests with `attestor` (and the contributors' evidence beside it) and returns the agent's
    /// SVID and the bundle.
    func attest(_ attestor: any NodeAttestor, contributors: [any EvidenceContributor]) async throws -> (svid: X509SVID, bundle: SPIFFEBundle) {
        let payload = try attestor.payload()
        let request = try SVIDRequest()
        let (key, csr) = (request.privateKey, request.csr)
        let bootstrap = try AgentIdentity.bootstrapCertificate(key, now: Date())
        let verification = try bootstrapVerification()
        // Each server once, from the current one, until one answers.
        var attempts = config.servers.count
        let result: AgentAPI_AttestResult
        while true {
            attempts -= 1
            let server = servers.current
            let transport = try transport(server, certificate: bootstrap.derBytes, key: try key.derBytes(), verifyServer: verification)
            do {
                result = try await failingOver(server) { try await attestOnce(transport, attestor, contributors, payload: payload, csr: csr, key: key) }
                break
            } catch let error as RPCError where error.code == .unavailable && attempts > 0 {
                continue
            }
        }
        let chain = try result.svidChain.map { try Certificate(derEncoded: Array($0)) }
        let svid = try X509SVID(certificates: chain, privateKey: key)
        let bundle = try SPIFFEBundle(trustDomain: svid.id.trustDomain, json: result.bundleJwks)
        logger.info("attested to the server", metadata: ["agent": "\(svid.id)", "expires": "\(svid.expiresAt)"])
        return (svid, bundle)
    }

    /// One attestation over the challenge stream of one server.
    private func attestOnce(
        _ transport: HTTP2ClientTransport.Posix, _ attestor: any NodeAttestor, _ contributors: [any EvidenceContributor],
        payload: Data, csr: [UInt8], key: Certificate.PrivateKey
    ) async throws -> AgentAPI_AttestResult {
        try await withGRPCClient(transport: transport) { grpc in
            let api = API(wrapping: grpc)
            let (challenges, challenge) = AsyncStream<[UInt8]>.makeStream()
            return try await api.attestAgent(
                requestProducer: { writer in
                    try await writer.write(AgentAPI_AttestRequest.with {
                        $0.params = AgentAPI_AttestParams.with {
                            $0.method = attestor.name
                            $0.payload = payload
                            $0.csr = Data(csr)
                        }
                    })
                    for await challenge in challenges {
                        let (answer, nonce) = try attestor.answer(challenge: challenge, key: key)
                        var response = AgentAPI_AttestRequest.with { $0.challengeResponse = Data(answer) }
                        // The contributors answer the same challenge: each GPU's evidence carries its nonce.
                        for contributor in contributors { try contributor.contribute(nonce: nonce, into: &response) }
                        try await writer.write(response)
                        break
                    }
                },
                onResponse: { response in
                    defer { challenge.finish() }
                    for try await message in response.messages {
                        switch message.step {
                        case .challenge(let nonce): challenge.yield(Array(nonce))
                        case .result(let result): return result
                        case nil: break
                        }
                    }
                    throw AgentError(.serverClosed, "agent: the server ended attestation without a result")
                }
            )
        }
    }

    /// How the server is checked on first contact: the newest saved bundle, else --trust-bundle,
    /// or not at all with --insecure-bootstrap.
    private func bootstrapVerification() throws -> SPIFFEPeerVerification.Callback {
        if config.insecureBootstrap {
            logger.warning("--insecure-bootstrap: the server's identity is NOT verified for attestation; use --trust-bundle outside development")
            return SPIFFEPeerVerification.possessionOnly
        }
        if let saved = AgentIdentity.loadBundle(config) {
            // The newest bundle the server sent: after a rotation and revoke, the bootstrap file
            // names only keys the server no longer uses. --trust-bundle bootstraps the first start.
            let bundle = saved.x509Bundle
            return verifyServer { bundle }
        }
        guard let path = config.trustBundlePath, let pem = FileManager.default.contents(atPath: path) else {
            throw AgentError(.configuration, "agent: cannot read the --trust-bundle file \(config.trustBundlePath ?? "(none)")")
        }
        let anchors = try X509SVID.certificates(pem: String(decoding: pem, as: UTF8.self))
        guard let domain = config.trustDomain ?? anchors.lazy.compactMap(Self.trustDomain).first else {
            throw AgentError(.configuration, "agent: the trust bundle's certificates name no trust domain; pass --trust-domain")
        }
        let bundle = X509Bundle(trustDomain: domain, authorities: anchors)
        return verifyServer { bundle }
    }

    private static func trustDomain(_ certificate: Certificate) -> TrustDomain? {
        guard let names = try? certificate.extensions.subjectAlternativeNames else { return nil }
        for case .uniformResourceIdentifier(let uri) in names {
            if let id = try? SPIFFEID(parsing: uri) { return id.trustDomain }
        }
        return nil
    }

    private func transport(
        _ server: ServerRotation.Position, certificate: [UInt8], key: [UInt8], verifyServer: @escaping SPIFFEPeerVerification.Callback
    ) throws -> HTTP2ClientTransport.Posix {
        try HTTP2ClientTransport.Posix(
            target: .dns(host: server.address.host, port: server.address.port),
            transportSecurity: .mTLS(
                certificateChain: [.bytes(certificate, format: .der)], privateKey: .bytes(key, format: .der)
            ) { tls in
                tls.serverCertificateVerification = .noHostnameVerification
                tls.customVerificationCallback = verifyServer
            },
            config: .defaults {
                $0.backoff = .init(initial: .milliseconds(200), max: .seconds(5), multiplier: 1.6, jitter: 0.2)
                // The server is identified by its SPIFFE ID, not a host name; SNI cannot carry an IP address.
                $0.http2.authority = "hallmark-server"
            }
        )
    }

    private func verifyServer(bundle: @escaping @Sendable () -> X509Bundle?) -> SPIFFEPeerVerification.Callback {
        let logger = self.logger
        return SPIFFEPeerVerification.callback(
            bundles: { bundle() ?? X509Bundle(trustDomain: try! TrustDomain("unknown.invalid")) },
            authorizer: .matching("the server's SVID (spiffe://TD/hallmark/server)") { $0.path == "/hallmark/server" },
            onRefusal: { logger.error("refused the server's certificate", metadata: ["reason": "\($0)"]) }
        )
    }
}

/// The servers an agent may use, and which it uses now. A failure moves every caller on to the
/// next server once, not once per caller: only a failure of the server still current advances it.
final class ServerRotation: Sendable {
    struct Position: Sendable {
        let index: Int
        let address: AgentConfig.ServerAddress
    }

    private let addresses: [AgentConfig.ServerAddress]
    private let index = Mutex(0)

    init(_ addresses: [AgentConfig.ServerAddress]) {
        precondition(!addresses.isEmpty)
        self.addresses = addresses
    }

    var current: Position {
        let index = index.withLock { $0 }
        return Position(index: index, address: addresses[index])
    }

    /// Moves on from `failed`, if it is still the current server; returns the next one, or nil
    /// when another caller already moved on or there is no other server.
    func advance(from failed: Position) -> AgentConfig.ServerAddress? {
        guard addresses.count > 1 else { return nil }
        return index.withLock { index in
            guard index == failed.index else { return nil }
            index = (index + 1) % addresses.count
            return addresses[index]
        }
    }
}
