// The agent's life with the server: attestation on first start, then mTLS sessions that follow
// the entry stream (EntrySync), renew SVIDs as the RotationPlanner decides, report what the
// workloads hold (HeldReporter) and present fresh evidence (the NodeAttestor's), reconnecting with
// backoff when the server is away while the cache keeps serving what it has.

import Foundation
import GRPCCore
import HallmarkProto
import Logging
import SPIFFE
import Synchronization
import X509

final class ServerLink: Sendable {
    private let config: AgentConfig
    private let cache: AgentCache
    private let logger: Logger
    private let client: AgentAPIClient
    private let sync: EntrySync
    /// The time rotation is decided by.
    private let clock: @Sendable () -> Date
    /// The client of the current session, for the Workload API's JWT requests.
    private let current = Mutex<AgentAPIClient.API?>(nil)
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
        client = AgentAPIClient(config: config, logger: logger)
        sync = EntrySync(config: config, cache: cache, logger: logger, clock: clock)
    }

    /// Attests with the configured host attestor and evidence contributors.
    func attest() async throws -> (svid: X509SVID, bundle: SPIFFEBundle) {
        try await client.attest(try config.nodeAttestor(), contributors: config.evidenceContributors)
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

    /// Runs the session's loops until one fails (the session ends with its error) or the renewal
    /// loop renews the agent's SVID, which the next session uses.
    private func run(session identity: X509SVID) async throws -> X509SVID {
        let cache = self.cache
        return try await client.withSession(identity, bundle: { cache.bundle?.x509Bundle }) { api in
            self.current.withLock { $0 = api }
            defer { self.current.withLock { $0 = nil } }
            // Opened for each session, as at attestation: a TPM's handle does not outlive it.
            let attestor: (any NodeAttestor)? = self.config.tpm == nil ? nil : try self.config.nodeAttestor()
            let contributors = self.config.evidenceContributors
            return try await withThrowingTaskGroup(of: X509SVID?.self) { group in
                group.addTask { try await self.rotate(api, identity: identity) }
                group.addTask { try await self.sync.follow(api, identity: identity); return nil }
                group.addTask { try await self.reportHeld(api); return nil }
                if let interval = attestor?.reattestInterval ?? contributors.map(\.reattestInterval).min() {
                    group.addTask { try await self.reattest(api, attestor, contributors, every: interval); return nil }
                }
                defer { group.cancelAll() }
                return try await group.next().flatMap { $0 } ?? identity
            }
        }
    }

    /// Presents the node's evidence again on the interval (a TPM quote, each GPU's evidence, with
    /// the server's fresh nonce); evidence the server refuses evicts the agent (the server ends the
    /// session), and evidence not presented in time does too.
    private func reattest(
        _ api: AgentAPIClient.API, _ attestor: (any NodeAttestor)?, _ contributors: [any EvidenceContributor], every interval: TimeInterval
    ) async throws {
        while true {
            try await Task.sleep(for: .seconds(interval))
            let challenge = try await api.reattestChallenge(AgentAPI_ReattestChallengeRequest())
            var request = AgentAPI_ReattestRequest.with { $0.nonce = challenge.nonce }
            try attestor?.reattest(challenge, into: &request)
            for contributor in contributors { try contributor.contribute(nonce: Array(challenge.nonce), into: &request) }
            let result = try await api.reattest(request)
            logger.info(
                attestor == nil ? "re-attested with the GPUs" : "re-attested with the \(attestor?.name.uppercased() ?? "")",
                metadata: ["selectors": "\(result.selectors.count)", "gpus": "\(request.gpus.count)"]
            )
        }
    }

    /// Renews workload SVIDs and the agent's own at half of their life, or at once when their
    /// authority is tainted, as ``RotationPlanner`` decides; between decisions it sleeps until the
    /// time the plan names or until the cache changes (a new SVID, entry or taint).
    /// - Returns: the agent's renewed SVID, which ends the session (nil only at shutdown).
    private func rotate(_ api: AgentAPIClient.API, identity: X509SVID) async throws -> X509SVID? {
        // Received, for this decision, when this session began with it (at the latest).
        let agent = RotationPlanner.Held(
            notBefore: identity.leaf.notValidBefore, expiresAt: identity.expiresAt, issuerKeyIDs: Array(identity.issuerKeyIDs), receivedAt: clock()
        )
        let planner = RotationPlanner()
        var attempts: [String: Date] = [:]
        guard let changes = cache.changes.waiter() else { return nil }
        while true {
            try Task.checkCancellation()
            let now = clock()
            let (plan, unsettled, tainted) = cache.planRotation(planner, agent: agent, attempts: attempts, now: now)
            if plan.renewAgent {
                return try await renewOwnSVID(api, reason: agent.issuerKeyIDs.contains(where: tainted.contains) ? "its authority is tainted" : "half-life")
            }
            if !plan.renew.isEmpty {
                // Only entries still without a good SVID need their last attempt remembered.
                attempts = attempts.filter { unsettled.contains($0.key) }
                for id in plan.renew { attempts[id] = now }
                let atHalfLife = plan.renew.count - unsettled.intersection(plan.renew).count
                if atHalfLife > 0 { logger.info("renewing SVIDs at half-life", metadata: ["count": "\(atHalfLife)"]) }
                if atHalfLife < plan.renew.count {
                    logger.info("asking for missing or tainted SVIDs", metadata: ["count": "\(plan.renew.count - atHalfLife)"])
                }
                try await sync.sign(cache.entries(withIDs: Set(plan.renew)), api)
                continue
            }
            // Sleep until the next SVID is due, or until the cache changes; whichever is first.
            await changes.wait(timeout: plan.next.map { .seconds(max(0, $0.timeIntervalSince(now))) })
        }
    }

    /// Tells the server which authorities the held workload SVIDs chain to, whenever that changes,
    /// so that it refuses to revoke a key they still depend on (see ``HeldReporter``). A refused
    /// report never ends the session.
    private func reportHeld(_ api: AgentAPIClient.API) async throws {
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

    /// Renews the agent's own SVID, for the next session. Only the rotation loop
    /// calls it, so there is one renewal at a time.
    private func renewOwnSVID(_ api: AgentAPIClient.API, reason: String) async throws -> X509SVID {
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
        return renewed
    }
}

extension ServerLink: JWTMinter {
    func mintJWTSVID(entryID: String, audience: [String]) async throws -> (token: String, expiresAt: Date) {
        guard let api = current.withLock({ $0 }) else {
            throw RPCError(code: .unavailable, message: "the agent cannot reach the server to sign a JWT-SVID; retry")
        }
        let response = try await api.newJWTSVID(AgentAPI_NewJWTSVIDRequest.with {
            $0.entryID = entryID
            $0.audience = audience
        })
        return (response.token, Date(timeIntervalSince1970: TimeInterval(response.expiresAt)))
    }
}
