// The agent's connection to the server: attestation on first start, then an mTLS session that
// follows the entry stream, signs CSRs in batches, renews SVIDs at half-life and reconnects with
// backoff when the server is away, while the cache keeps serving what it has.

import Crypto
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import HallmarkGPU
import HallmarkProto
import HallmarkTPM
import Logging
import SPIFFE
import SPIFFETLS
import Synchronization
import SwiftASN1
import X509

final class ServerLink: Sendable {
    private let config: AgentConfig
    private let cache: AgentCache
    private let logger: Logger
    /// The time rotation is decided by.
    private let clock: @Sendable () -> Date
    /// The client of the current session, for the Workload API's JWT requests.
    private let current = Mutex<AgentAPI_AgentAPI.Client<HTTP2ClientTransport.Posix>?>(nil)
    /// The renewal of the agent SVID begun in this session. Once the server has signed it, the
    /// previous SVID is superseded, so whatever ends the session, the next one uses the renewed
    /// one; the renewal runs on even when the session's tasks are cancelled, and the session
    /// waits for its outcome before deciding what ended it.
    private let renewal = Mutex<Task<X509SVID, any Error>?>(nil)

    init(config: AgentConfig, cache: AgentCache, logger: Logger, clock: @escaping @Sendable () -> Date = { Date() }) {
        self.config = config
        self.cache = cache
        self.logger = logger
        self.clock = clock
    }

    var client: AgentAPI_AgentAPI.Client<HTTP2ClientTransport.Posix>? { current.withLock { $0 } }

    // MARK: Transport

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

    // MARK: Attestation

    /// How the agent answers the server's challenge for its attestation method.
    private struct Method: Sendable {
        let name: String
        let payload: Data
        /// The answer to a challenge, given the CSR's key, and the challenge's nonce.
        let answer: @Sendable ([UInt8], Certificate.PrivateKey) throws -> (answer: [UInt8], nonce: [UInt8])
    }

    private func method() throws -> Method {
        if let tpm = config.tpm {
            let device = try TPMDevice(tcti: tpm.tcti)
            let evidence = try AgentAPI_TPMEvidence.with {
                $0.ekCertificate = Data(try device.ekCertificate(tpm.endorsementKey))
                $0.ekPublic = Data(try device.ekPublic(tpm.endorsementKey))
                $0.akPublic = Data(try device.attestationKeyPublic())
            }
            return Method(name: "tpm", payload: try evidence.serializedData()) { bytes, key in
                let challenge = try AgentAPI_TPMChallenge(serializedBytes: bytes)
                let credential = try device.activateCredential(tpm.endorsementKey, blob: Array(challenge.credentialBlob), secret: Array(challenge.encryptedSecret))
                let answer: [UInt8] = try AgentAPI_TPMChallengeResponse.with {
                    $0.credential = Data(credential)
                    $0.quote = try Self.quote(device, challenge)
                    $0.csrSignature = Data(try key.signChallenge(Array(challenge.nonce)))
                }.serializedBytes()
                return (answer, Array(challenge.nonce))
            }
        }
        guard let token = config.joinToken, !token.isEmpty else {
            throw AgentError("agent: no usable SVID in \(config.dataDir) and no --join-token to attest with")
        }
        return Method(name: "join-token", payload: Data(token.utf8)) { nonce, key in (try key.signChallenge(nonce), nonce) }
    }

    /// Quotes what a TPM challenge asks for, with its nonce.
    static func quote(_ device: TPMDevice, _ challenge: AgentAPI_TPMChallenge) throws -> AgentAPI_TPMQuote {
        var selection: [TPMHash: [Int]] = [:]
        for bank in challenge.pcrs {
            selection[try TPMHash(UInt16(truncatingIfNeeded: bank.hash), field: "challenge.pcrs.hash")] = bank.pcrs.map(Int.init)
        }
        let quoted = try device.quote(selection, nonce: Array(challenge.nonce))
        return AgentAPI_TPMQuote.with { message in
            message.attest = Data(quoted.attest)
            message.signature = Data(quoted.signature)
            message.values = quoted.pcrs.sorted { $0.key.rawValue < $1.key.rawValue }.flatMap { bank, values in
                values.sorted { $0.key < $1.key }.map { index, digest in
                    AgentAPI_TPMPCRValue.with {
                        $0.hash = UInt32(bank.rawValue)
                        $0.index = UInt32(index)
                        $0.digest = Data(digest)
                    }
                }
            }
        }
    }

    /// Attests (join token or TPM) and returns the agent's SVID and the bundle.
    func attest() async throws -> (svid: X509SVID, bundle: SPIFFEBundle) {
        let method = try method()
        let gpu = config.gpu
        let request = try SVIDRequest()
        let (key, csr) = (request.privateKey, request.csr)
        let bootstrap = try AgentIdentity.bootstrapCertificate(key, now: Date())
        let verify: SPIFFEPeerVerification.Callback
        if config.insecureBootstrap {
            logger.warning("--insecure-bootstrap: the server's identity is NOT verified for attestation; use --trust-bundle outside development")
            verify = SPIFFEPeerVerification.possessionOnly
        } else if let saved = AgentIdentity.loadBundle(config) {
            // The newest bundle the server sent: after a rotation and revoke, the bootstrap file
            // names only keys the server no longer uses. --trust-bundle bootstraps the first start.
            let bundle = saved.x509Bundle
            verify = verifyServer { bundle }
        } else {
            guard let path = config.trustBundlePath, let pem = FileManager.default.contents(atPath: path) else {
                throw AgentError("agent: cannot read the --trust-bundle file \(config.trustBundlePath ?? "(none)")")
            }
            let anchors = try X509SVID.certificates(pem: String(decoding: pem, as: UTF8.self))
            guard let domain = config.trustDomain ?? anchors.lazy.compactMap(Self.trustDomain).first else {
                throw AgentError("agent: the trust bundle's certificates name no trust domain; pass --trust-domain")
            }
            let bundle = X509Bundle(trustDomain: domain, authorities: anchors)
            verify = verifyServer { bundle }
        }
        let transport = try transport(certificate: bootstrap.derBytes, key: try key.derBytes(), verifyServer: verify)
        let result = try await withGRPCClient(transport: transport) { grpc in
            let api = AgentAPI_AgentAPI.Client(wrapping: grpc)
            let (challenges, challenge) = AsyncStream<[UInt8]>.makeStream()
            return try await api.attestAgent(
                requestProducer: { writer in
                    try await writer.write(AgentAPI_AttestRequest.with {
                        $0.params = AgentAPI_AttestParams.with {
                            $0.method = method.name
                            $0.payload = method.payload
                            $0.csr = Data(csr)
                        }
                    })
                    for await challenge in challenges {
                        let (answer, nonce) = try method.answer(challenge, key)
                        // The gpu attestor answers the same challenge: each GPU's evidence carries its nonce.
                        let gpus = try gpu.map { try $0.evidence(nonce: nonce) } ?? []
                        try await writer.write(AgentAPI_AttestRequest.with {
                            $0.challengeResponse = Data(answer)
                            $0.gpus = gpus.map(AgentAPI_GPUEvidence.init)
                        })
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
                    throw AgentError("agent: the server ended attestation without a result")
                }
            )
        }
        let chain = try result.svidChain.map { try Certificate(derEncoded: Array($0)) }
        let svid = try X509SVID(certificates: chain, privateKey: key)
        let bundle = try SPIFFEBundle(trustDomain: svid.id.trustDomain, json: result.bundleJwks)
        logger.info("attested to the server", metadata: ["agent": "\(svid.id)", "expires": "\(svid.expiresAt)"])
        return (svid, bundle)
    }

    private static func trustDomain(_ certificate: Certificate) -> TrustDomain? {
        guard let names = try? certificate.extensions.subjectAlternativeNames else { return nil }
        for case .uniformResourceIdentifier(let uri) in names {
            if let id = try? SPIFFEID(parsing: uri) { return id.trustDomain }
        }
        return nil
    }

    // MARK: Sessions

    /// Runs sessions until cancelled, reconnecting with backoff. Returns only by throwing.
    ///
    /// When the server refuses the agent itself (evicted, banned, or an SVID it no longer
    /// accepts), the agent forgets its identity and every workload SVID at once, and tries to
    /// attest again; a join-token agent cannot, as its token is spent.
    func run(identity initial: X509SVID) async throws {
        var identity: X509SVID? = initial
        var backoff: Duration = .milliseconds(500)
        func pause() async throws {
            try await Task.sleep(for: backoff)
            backoff = min(backoff * 2, .seconds(30))
        }
        while true {
            try Task.checkCancellation()
            guard let svid = identity else {
                do {
                    let attested = try await attest()
                    try AgentIdentity.save(attested.svid, config)
                    try AgentIdentity.saveBundle(attested.bundle, config)
                    cache.update(entries: [], bundle: attested.bundle)
                    identity = attested.svid
                    backoff = .milliseconds(500)
                } catch is CancellationError {
                    throw CancellationError()
                } catch {
                    logger.error("could not attest again; no SVIDs are served", metadata: ["reason": "\(Self.reason(error))", "retry_in": "\(backoff)"])
                    try await pause()
                }
                continue
            }
            do {
                identity = try await session(svid)
                backoff = .milliseconds(500)
            } catch is CancellationError {
                throw CancellationError()
            } catch let error as RPCError where error.code == .permissionDenied || error.code == .unauthenticated {
                current.withLock { $0 = nil }
                logger.error(
                    "the server no longer accepts this agent; dropping every SVID and attesting again",
                    metadata: ["agent": "\(svid.id)", "reason": "\(error.message)"]
                )
                cache.clear()
                AgentIdentity.forget(config)
                identity = nil
            } catch {
                current.withLock { $0 = nil }
                logger.warning("lost the server; serving cached SVIDs and retrying", metadata: ["error": "\(error)", "retry_in": "\(backoff)"])
                try await pause()
            }
        }
    }

    private static func reason(_ error: any Error) -> String {
        (error as? RPCError)?.message ?? "\(error)"
    }

    private struct Renewed: Error { let svid: X509SVID }

    /// One mTLS session. Returns the agent SVID to use next (renewed or the same).
    private func session(_ identity: X509SVID) async throws -> X509SVID {
        renewal.withLock { $0 = nil }
        do {
            return try await run(session: identity)
        } catch {
            // The server re-issued the agent's SVID and then something else ended the session —
            // typically the entry stream, whose next check finds the old SVID superseded, and
            // whose refusal can arrive before the renewal's answer. That is not the server
            // refusing the agent: go on with the renewed SVID.
            if let renewing = renewal.withLock({ $0 }), let renewed = try? await renewing.value {
                logger.info("the session ended after the agent SVID was renewed; continuing with the renewed one", metadata: ["reason": "\(Self.reason(error))"])
                return renewed
            }
            throw error
        }
    }

    private func run(session identity: X509SVID) async throws -> X509SVID {
        let cache = self.cache
        let transport = try transport(
            certificate: identity.leaf.derBytes, key: try identity.privateKeyDER(),
            verifyServer: verifyServer { cache.bundle?.x509Bundle }
        )
        do {
            try await withGRPCClient(transport: transport) { grpc in
                let api = AgentAPI_AgentAPI.Client(wrapping: grpc)
                self.current.withLock { $0 = api }
                defer { self.current.withLock { $0 = nil } }
                try await withThrowingTaskGroup(of: Void.self) { group in
                    group.addTask { try await self.follow(api, identity: identity) }
                    group.addTask { try await self.rotate(api, identity: identity) }
                    group.addTask { try await self.reportHeld(api) }
                    if self.config.tpm != nil || self.config.gpu != nil {
                        group.addTask { try await self.reattest(api) }
                    }
                    defer { group.cancelAll() }
                    try await group.next()
                }
            }
        } catch let renewed as Renewed {
            return renewed.svid
        }
        return identity
    }

    /// Follows the server's entry stream: every message is the full state.
    private func follow(_ api: AgentAPI_AgentAPI.Client<HTTP2ClientTransport.Posix>, identity: X509SVID) async throws {
        try await api.syncEntries(AgentAPI_SyncRequest()) { response in
            for try await message in response.messages {
                var bundle: SPIFFEBundle?
                if let domain = self.cache.bundle?.trustDomain ?? self.config.trustDomain {
                    bundle = try? SPIFFEBundle(trustDomain: domain, json: message.bundleJwks)
                }
                if let bundle, bundle.sequenceNumber != self.cache.bundle?.sequenceNumber {
                    try? AgentIdentity.saveBundle(bundle, self.config)
                }
                let needed = self.cache.update(entries: message.entries, bundle: bundle, tainted: Set(message.taintedAuthorityIds))
                // The agent's own SVID first: the rotation loop, woken by this update, renews it and
                // restarts the session, which signs these then. Renewed only there: two renewals at
                // once supersede each other, and the loser's refusal would read as an eviction.
                if self.cache.isTainted(identity) { continue }
                self.logger.debug("entries from the server", metadata: ["entries": "\(message.entries.count)", "to_sign": "\(needed.count)"])
                try await self.sign(needed, api)
            }
        }
        throw AgentError("agent: the server closed the entry stream")
    }

    /// Gets SVIDs for entries, 500 CSRs a call; entries another task is signing are left to it.
    private func sign(_ wanted: [AgentAPI_Entry], _ api: AgentAPI_AgentAPI.Client<HTTP2ClientTransport.Posix>) async throws {
        let entries = cache.claim(wanted)
        defer { cache.release(entries) }
        var start = 0
        while start < entries.count {
            let batch = Array(entries[start..<min(start + 500, entries.count)])
            start += batch.count
            var keys: [String: (Certificate.PrivateKey, Int64)] = [:]
            let request = AgentAPI_BatchNewX509SVIDRequest.with { request in
                request.params = batch.compactMap { entry in
                    guard let request = try? SVIDRequest() else { return nil }
                    let (key, csr) = (request.privateKey, request.csr)
                    keys[entry.id] = (key, entry.revisionNumber)
                    return AgentAPI_X509SVIDParams.with {
                        $0.entryID = entry.id
                        $0.csr = Data(csr)
                    }
                }
            }
            let response = try await api.batchNewX509SVID(request)
            var signed: [(entryID: String, revision: Int64, svid: HeldSVID)] = []
            var limited: [String] = []
            for result in response.results {
                if result.statusCode == Int32(RPCError.Code.resourceExhausted.rawValue) {
                    // The server's rate limit: the renewal loop asks again for SVIDs still missing.
                    limited.append(result.statusMessage)
                    continue
                }
                guard result.statusCode == 0, let (key, revision) = keys[result.entryID] else {
                    logger.warning("the server refused a CSR", metadata: ["entry": "\(result.entryID)", "reason": "\(result.statusMessage)"])
                    continue
                }
                do {
                    let chain = try result.chain.map { try Certificate(derEncoded: Array($0)) }
                    let svid = try X509SVID(certificates: chain, privateKey: key, hint: "")
                    signed.append((result.entryID, revision, try HeldSVID(svid, chainDER: result.chain.flatMap { Array($0) }, receivedAt: clock())))
                } catch {
                    logger.error("the server returned an unusable SVID", metadata: ["entry": "\(result.entryID)", "error": "\(error)"])
                }
            }
            cache.store(signed)
            if let reason = limited.first {
                logger.notice("the server deferred CSRs; asking again shortly", metadata: ["deferred": "\(limited.count)", "reason": "\(reason)"])
            }
            logger.info("SVIDs signed", metadata: ["signed": "\(signed.count)", "cached": "\(cache.svidCount)"])
        }
    }

    /// Presents the node's evidence again on the interval (a TPM quote, each GPU's evidence, with
    /// the server's fresh nonce); evidence the server refuses evicts the agent (the server ends the
    /// session), and evidence not presented in time does too.
    private func reattest(_ api: AgentAPI_AgentAPI.Client<HTTP2ClientTransport.Posix>) async throws {
        let device = try config.tpm.map { try TPMDevice(tcti: $0.tcti) }
        while true {
            try await Task.sleep(for: .seconds(config.tpm?.reattestInterval ?? config.gpuReattestInterval))
            let challenge = try await api.reattestChallenge(AgentAPI_ReattestChallengeRequest())
            let quote = try device.map { try Self.quote($0, challenge) }
            let gpus = try config.gpu.map { try $0.evidence(nonce: Array(challenge.nonce)) } ?? []
            let result = try await api.reattest(AgentAPI_ReattestRequest.with {
                $0.nonce = challenge.nonce
                if let quote { $0.quote = quote }
                $0.gpus = gpus.map(AgentAPI_GPUEvidence.init)
            })
            logger.info(device == nil ? "re-attested with the GPUs" : "re-attested with the TPM", metadata: ["selectors": "\(result.selectors.count)", "gpus": "\(gpus.count)"])
        }
    }

    /// Renews workload SVIDs and the agent's own at half of their life, or at once when their
    /// authority is tainted, as ``RotationPlanner`` decides; between decisions it sleeps until the
    /// time the plan names or until the cache changes (a new SVID, entry or taint).
    private func rotate(_ api: AgentAPI_AgentAPI.Client<HTTP2ClientTransport.Posix>, identity: X509SVID) async throws {
        // Received, for this decision, when this session began with it (at the latest).
        let agent = RotationPlanner.Held(
            notBefore: identity.leaf.notValidBefore, expiresAt: identity.expiresAt, issuerKeyIDs: Array(identity.issuerKeyIDs), receivedAt: clock()
        )
        let planner = RotationPlanner()
        var attempts: [String: Date] = [:]
        guard let changes = cache.changes.waiter() else { return }
        while true {
            try Task.checkCancellation()
            let now = clock()
            let (entries, tainted) = cache.rotationState()
            let plan = planner.plan(entries: entries, agent: agent, tainted: tainted, attempts: attempts, now: now)
            if plan.renewAgent {
                try await renewOwnSVID(api, reason: agent.issuerKeyIDs.contains(where: tainted.contains) ? "its authority is tainted" : "half-life")
            }
            if !plan.renew.isEmpty {
                // Only entries still without a good SVID need their last attempt remembered.
                let unsettled = Set(entries.filter { $0.svid.map { $0.issuerKeyIDs.contains(where: tainted.contains) } ?? true }.map(\.id))
                attempts = attempts.filter { unsettled.contains($0.key) }
                for id in plan.renew { attempts[id] = now }
                let atHalfLife = plan.renew.count - unsettled.intersection(plan.renew).count
                if atHalfLife > 0 { logger.info("renewing SVIDs at half-life", metadata: ["count": "\(atHalfLife)"]) }
                if atHalfLife < plan.renew.count {
                    logger.info("asking for missing or tainted SVIDs", metadata: ["count": "\(plan.renew.count - atHalfLife)"])
                }
                try await sign(cache.entries(withIDs: Set(plan.renew)), api)
                continue
            }
            // Sleep until the next SVID is due, or until the cache changes; whichever is first.
            await changes.wait(timeout: plan.next.map { .seconds(max(0, $0.timeIntervalSince(now))) })
        }
    }

    /// Tells the server which authorities the held workload SVIDs chain to, whenever that changes,
    /// so that it refuses to revoke a key they still depend on (see ``HeldReporter``). A refused
    /// report never ends the session.
    private func reportHeld(_ api: AgentAPI_AgentAPI.Client<HTTP2ClientTransport.Posix>) async throws {
        guard let changes = cache.changes.waiter() else { return }
        let cache = self.cache, logger = self.logger
        let reporter = HeldReporter(held: { cache.heldAuthorityIDs }) { held in
            _ = try await api.reportHeld(AgentAPI_ReportHeldRequest.with { $0.x509AuthorityIds = held.sorted() })
        }
        try await reporter.run(changes: changes) { error, retry in
            logger.warning(
                "could not tell the server which authorities the held SVIDs come from; trying again",
                metadata: ["error": "\(error)", "retry_in": "\(retry)"]
            )
        }
    }

    /// Renews the agent's own SVID and restarts the session with it. Only the rotation loop
    /// calls it, so there is one renewal at a time.
    private func renewOwnSVID(_ api: AgentAPI_AgentAPI.Client<HTTP2ClientTransport.Posix>, reason: String) async throws -> Never {
        let config = self.config
        // Not a child of the session: cancelling the session's tasks must not lose the answer to
        // a renewal the server may already have committed.
        let renewing = Task { () async throws -> X509SVID in
            let request = try SVIDRequest()
            let (key, csr) = (request.privateKey, request.csr)
            let response = try await api.renewAgent(AgentAPI_RenewAgentRequest.with { $0.csr = Data(csr) })
            let chain = try response.svidChain.map { try Certificate(derEncoded: Array($0)) }
            let renewed = try X509SVID(certificates: chain, privateKey: key)
            try AgentIdentity.save(renewed, config)
            return renewed
        }
        renewal.withLock { $0 = renewing }
        let renewed = try await renewing.value
        logger.info("renewed the agent SVID", metadata: ["expires": "\(renewed.expiresAt)", "reason": "\(reason)"])
        throw Renewed(svid: renewed)
    }
}

extension AgentAPI_GPUEvidence {
    init(_ evidence: GPUEvidenceSource.Evidence) {
        self.init()
        report = Data(evidence.report)
        chainPem = evidence.chainPEM
    }
}

extension Certificate.PrivateKey {
    func derBytes() throws -> [UInt8] {
        try PEMDocument(pemString: serializeAsPEM().pemString).derBytes
    }

    /// The attestation challenge, signed ECDSA with SHA-256 (DER), as the server expects.
    func signChallenge(_ nonce: [UInt8]) throws -> [UInt8] {
        let pem = try serializeAsPEM().pemString
        let key = try P256.Signing.PrivateKey(pemRepresentation: pem)
        return Array(try key.signature(for: SHA256.hash(data: nonce)).derRepresentation)
    }
}
