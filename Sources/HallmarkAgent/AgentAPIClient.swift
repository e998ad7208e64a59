// The agent's connection to the server's agent API: the mTLS transport (the server verified by
// its SPIFFE ID against the bundle the agent holds), attestation over its challenge stream, and
// sessions with the agent's SVID. Which server it dials lives here alone.

import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import HallmarkProto
import Logging
import SPIFFE
import SPIFFETLS
import X509

struct AgentAPIClient: Sendable {
    typealias API = AgentAPI_AgentAPI.Client<HTTP2ClientTransport.Posix>

    let config: AgentConfig
    let logger: Logger

    /// Runs `body` with a client authenticated by `identity`, the server checked against `bundle`.
    func withSession<T: Sendable>(
        _ identity: X509SVID, bundle: @escaping @Sendable () -> X509Bundle?, _ body: @Sendable (API) async throws -> T
    ) async throws -> T {
        let transport = try transport(certificate: identity.leaf.derBytes, key: try identity.privateKeyDER(), verifyServer: verifyServer(bundle: bundle))
        return try await withGRPCClient(transport: transport) { grpc in try await body(API(wrapping: grpc)) }
    }

    /// Attests with `attestor` (and the contributors' evidence beside it) and returns the agent's
    /// SVID and the bundle.
    func attest(_ attestor: any NodeAttestor, contributors: [any EvidenceContributor]) async throws -> (svid: X509SVID, bundle: SPIFFEBundle) {
        let payload = try attestor.payload()
        let request = try SVIDRequest()
        let (key, csr) = (request.privateKey, request.csr)
        let bootstrap = try AgentIdentity.bootstrapCertificate(key, now: Date())
        let transport = try transport(certificate: bootstrap.derBytes, key: try key.derBytes(), verifyServer: try bootstrapVerification())
        let result = try await withGRPCClient(transport: transport) { grpc in
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
        let chain = try result.svidChain.map { try Certificate(derEncoded: Array($0)) }
        let svid = try X509SVID(certificates: chain, privateKey: key)
        let bundle = try SPIFFEBundle(trustDomain: svid.id.trustDomain, json: result.bundleJwks)
        logger.info("attested to the server", metadata: ["agent": "\(svid.id)", "expires": "\(svid.expiresAt)"])
        return (svid, bundle)
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

    private func transport(certificate: [UInt8], key: [UInt8], verifyServer: @escaping SPIFFEPeerVerification.Callback) throws -> HTTP2ClientTransport.Posix {
        try HTTP2ClientTransport.Posix(
            target: .dns(host: config.serverHost, port: config.serverPort),
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
