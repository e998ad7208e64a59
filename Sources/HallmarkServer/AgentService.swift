// The agent API: node attestation, agent SVID renewal, the pushed entry stream, batched CSR
// signing and JWT-SVIDs. Agents are identified by their SVID from the mTLS handshake, verified
// here against the current bundle and checked against the attested-node record on every call.

import Crypto
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import HallmarkAttestation
import HallmarkCA
import HallmarkProto
import HallmarkStore
import HallmarkSupport
import HallmarkTPM
import Logging
import SPIFFE
import SwiftASN1
import X509

struct AgentService: AgentAPI_AgentAPI.ServiceProtocol {
    let config: ServerConfig
    let store: any Store
    /// The entries in memory, for authorisation.
    let index: EntryIndex
    let ca: CAManager
    let events: Broadcast
    let logger: Logger
    let now: @Sendable () -> Date
    let nonces: NonceStore
    let limiter: AttestationLimiter
    let signing: SigningLimits

    static let maximumBatch = 500

    /// Signatures each agent may ask for, by its SPIFFE ID.
    struct SigningLimits: Sendable {
        let x509: RateLimiter<String>
        let jwt: RateLimiter<String>
        /// Changes of what an agent reports holding: each is a database write. A rotation changes
        /// it once or twice; this many is far beyond any honest agent.
        let reports: RateLimiter<String>
        /// Refusals audited: the first for each agent and limit, then one a minute, so that an
        /// agent held at its limit cannot make the audit log grow as fast as it asks.
        let audited: RateLimiter<String>

        init(_ config: ServerConfig, clock: @escaping @Sendable () -> Date = { Date() }) {
            x509 = RateLimiter(config.agentX509Limit, clock: clock)
            jwt = RateLimiter(config.agentJWTLimit, clock: clock)
            reports = RateLimiter(.init(rate: 1, burst: 20), clock: clock)
            audited = RateLimiter(.init(rate: 1.0 / 60, burst: 1), clock: clock)
        }

        /// The audit record of a refusal by `limit`, unless one for this agent and limit was written in the last minute.
        func auditRecord(_ agent: SPIFFEID, _ action: String, _ target: String, _ message: String, at time: Date) -> AuditEvent? {
            guard audited.take("\(agent) \(action)") == nil else { return nil }
            return AuditEvent(
                time: time, actor: .agent(agent), action: action, target: target, result: "refused",
                detail: "\(message) (further refusals of \(agent) by this limit within a minute are not audited)"
            )
        }

        static func refusal(_ agent: SPIFFEID, _ what: String, _ limiter: RateLimiter<String>, _ flags: String, retryIn wait: TimeInterval) -> String {
            "\(what) signed for \(agent) are limited to \(limiter.limit) (\(flags)); retry in \(RateLimiter<String>.describe(wait: wait))"
        }
    }

    // MARK: Attestation

    func attestAgent(
        request: StreamingServerRequest<AgentAPI_AttestRequest>, context: ServerContext
    ) async throws -> StreamingServerResponse<AgentAPI_AttestResponse> {
        let peer = context.remotePeer
        if let wait = await limiter.retryAfter(peer) {
            logger.warning("attestation refused: too many failures", metadata: ["peer": "\(peer)"])
            throw RPCError(
                code: .resourceExhausted,
                message: "attestation: too many failed attempts from \(AttestationLimiter.host(of: peer)); retry in \(Int(wait.rounded(.up))) s"
            )
        }
        return StreamingServerResponse { writer in
            var messages = request.messages.makeAsyncIterator()
            do {
                guard let first = try await messages.next(), case .params(let params)? = first.step else {
                    throw RPCError(code: .invalidArgument, message: "attestation: the first message must carry the attestation parameters")
                }
                let csrKey: Certificate.PublicKey
                do { csrKey = try X509CA.checkedCSRKey(Array(params.csr)) } catch let error as CAError {
                    throw RPCError(code: RPCErrors.code(for: error), message: "attestation: \(error.message)")
                }
                let gpus = GPUEvidenceBox()
                let exchange = AttestationExchange(
                    send: { bytes in try await writer.write(AgentAPI_AttestResponse.with { $0.challenge = Data(bytes) }) },
                    receive: {
                        guard let next = try await messages.next(), case .challengeResponse(let answer)? = next.step else {
                            throw RPCError(code: .invalidArgument, message: "attestation: expected the answer to the challenge")
                        }
                        gpus.evidence = next.gpus
                        return Array(answer)
                    }
                )
                let attested: AttestedIdentity
                switch params.method {
                case JoinToken.method: attested = try await attestJoinToken(params, csrKey: csrKey, exchange)
                case TPMAttestation.method: attested = try await attestTPM(params, csrKey: csrKey, exchange)
                default:
                    throw RPCError(
                        code: .invalidArgument,
                        message: "attestation: unknown method '\(params.method)'; this server accepts: \(acceptedMethods.joined(separator: ", "))"
                    )
                }
                let gpu: (selectors: [Selector], detail: String)
                do { gpu = try await attestGPUs(gpus.evidence, nonce: attested.nonce) } catch let refusal as EvidenceRefusal {
                    throw RPCError(code: .permissionDenied, message: "attestation: \(refusal.reason)")
                }
                let (node, svid) = try await admit(attested, method: params.method, csr: Array(params.csr), gpu: gpu)
                logger.info("agent attested", metadata: ["agent": "\(attested.id)", "method": "\(params.method)", "peer": "\(context.remotePeer)"])
                let bundle = try await ca.bundle()
                try await writer.write(AgentAPI_AttestResponse.with {
                    $0.result = AgentAPI_AttestResult.with {
                        $0.spiffeID = attested.id.description
                        $0.svidChain = svid.chain.map { Data($0) }
                        $0.bundleJwks = Data((try? bundle.json()) ?? [])
                        $0.selectors = node.selectors.map { selector in AgentAPI_Selector.with { $0.type = selector.type; $0.value = selector.value } }
                    }
                })
                return [:]
            } catch let error as RPCError {
                await limiter.recordFailure(peer)
                logger.warning("attestation refused", metadata: ["code": "\(error.code)", "reason": "\(error.message)", "peer": "\(peer)"])
                throw error
            }
        }
    }

    /// Signs the agent's SVID and writes its node record. The store refuses, inside the writing
    /// transaction, a node banned while its attestation was under way and a GPU that another live
    /// node holds; either refusal is audited.
    func admit(
        _ attested: AttestedIdentity, method: String, csr: [UInt8], gpu: (selectors: [Selector], detail: String)
    ) async throws -> (node: AttestedNode, svid: IssuedX509SVID) {
        let time = now()
        let svid = try await sign(csr: csr, id: attested.id, ttl: config.agentSVIDTTL, at: time)
        let node = AttestedNode(
            spiffeID: attested.id, attestationType: method, serialNumber: Hex.encode(svid.serial),
            expiresAt: svid.notAfter, attestedAt: time, selectors: attested.selectors + gpu.selectors, attestationData: attested.data,
            svidAuthorityID: Self.authorityID(of: svid)
        )
        let detail = gpu.detail.isEmpty ? attested.detail : "\(attested.detail); \(gpu.detail)"
        do {
            try await store.admitAttestedNode(
                node, exclusive: gpu.selectors.filter { $0.type == "gpu" && $0.value.hasPrefix("ueid:") },
                audit: AuditEvent(time: time, actor: .agent(attested.id), action: "agent.attest", target: attested.id.description, detail: detail)
            )
        } catch let error as StoreError where error.code == .banned || error.code == .conflict {
            let reason = error.code == .banned ? "agent \(attested.id) is banned" : error.message
            try await store.appendAudit([
                AuditEvent(time: time, actor: .agent(attested.id), action: "agent.attest", target: attested.id.description, result: "refused", detail: reason)
            ])
            throw RPCError(code: .permissionDenied, message: "attestation: \(reason)")
        }
        events.notify()
        return (node, svid)
    }

    // MARK: Calls from attested agents

    /// The calling agent, from its mTLS certificate and the attested-node record.
    func callingAgent(_ context: ServerContext) async throws -> AttestedNode {
        guard let tls = context.transportSpecific as? HTTP2ServerTransport.Posix.Context, let presented = tls.peerCertificateChain else {
            throw RPCError(code: .unauthenticated, message: "agent: no client certificate; attest first")
        }
        let bundle = try await ca.bundle()
        let verified: VerifiedX509SVID
        do {
            verified = try await X509SVIDVerifier(bundles: bundle.x509Bundle).verify(Array(presented), at: now())
        } catch let error as SPIFFEError {
            throw RPCError(code: .unauthenticated, message: "agent: the client certificate is not a valid agent SVID: \(error.message)")
        }
        guard verified.id.path.hasPrefix("/hallmark/agent/") else {
            throw RPCError(code: .permissionDenied, message: "agent: \(verified.id) is not an agent")
        }
        guard let node = try await store.attestedNode(verified.id) else {
            throw RPCError(code: .permissionDenied, message: "agent: \(verified.id) is not attested (evicted?); attest again")
        }
        guard !node.banned else { throw RPCError(code: .permissionDenied, message: "agent: \(verified.id) is banned") }
        guard node.serialNumber == Self.serial(verified.chain[0]) else {
            throw RPCError(code: .permissionDenied, message: "agent: \(verified.id) presented a superseded SVID")
        }
        if let stale = EvidenceAge(config).staleness(of: node, at: now()) {
            throw RPCError(code: .permissionDenied, message: "agent: \(verified.id) is no longer trusted: \(stale)")
        }
        return node
    }

    func guarded<T>(_ action: String, _ context: ServerContext, _ body: () async throws -> T) async throws -> T {
        do {
            return try await body()
        } catch {
            let rpc = RPCErrors.rpcError(error)
            logger.warning("agent call refused", metadata: ["action": "\(action)", "code": "\(rpc.code)", "reason": "\(rpc.message)", "peer": "\(context.remotePeer)"])
            throw rpc
        }
    }

    func renewAgent(request: ServerRequest<AgentAPI_RenewAgentRequest>, context: ServerContext) async throws -> ServerResponse<AgentAPI_RenewAgentResponse> {
        try await guarded("agent.renew", context) {
            let svid = try await renew(try await callingAgent(context), csr: Array(request.message.csr))
            return ServerResponse(message: AgentAPI_RenewAgentResponse.with { $0.svidChain = svid.chain.map { Data($0) } })
        }
    }

    /// Signs a new SVID for an attested node; the store writes it only while the node is still the
    /// one read (not evicted, banned or renewed meanwhile), so a renewal never undoes a withdrawal.
    func renew(_ read: AttestedNode, csr: [UInt8]) async throws -> IssuedX509SVID {
        var node = read
        let time = now()
        let svid = try await sign(csr: csr, id: node.spiffeID, ttl: config.agentSVIDTTL, at: time)
        node.serialNumber = Hex.encode(svid.serial)
        node.expiresAt = svid.notAfter
        node.svidAuthorityID = Self.authorityID(of: svid)
        try await updateNode(node, read: read, audit: AuditEvent(time: time, actor: .agent(node.spiffeID), action: "agent.renew", target: node.spiffeID.description))
        return svid
    }

    /// Writes a node changed from `read`; a node withdrawn since it was read is refused as no longer attested.
    func updateNode(_ node: AttestedNode, read: AttestedNode, audit: AuditEvent) async throws {
        try await asRead(node.spiffeID) { try await store.updateAttestedNode(node, expectedSerial: read.serialNumber, audit: audit) }
    }

    /// Runs a compare-and-swap write of a node; the store's refusal (evicted, banned or renewed since
    /// it was read) becomes the agent's PERMISSION_DENIED.
    func asRead(_ id: SPIFFEID, _ write: () async throws -> Void) async throws {
        do {
            try await write()
        } catch let error as StoreError where error.code == .notFound || error.code == .conflict {
            throw RPCError(code: .permissionDenied, message: "agent: \(id) is no longer attested as it was (evicted, banned or renewed meanwhile)")
        }
    }

    func syncEntries(request: ServerRequest<AgentAPI_SyncRequest>, context: ServerContext) async throws -> StreamingServerResponse<AgentAPI_SyncResponse> {
        let node = try await guarded("agent.sync", context) { try await callingAgent(context) }
        return StreamingServerResponse { writer in
            var last: AgentAPI_SyncResponse?
            try await events.forEachChange {
                // Re-checked on every change: an evicted or banned agent's stream ends at once.
                guard let current = try await store.attestedNode(node.spiffeID), !current.banned, current.serialNumber == node.serialNumber else {
                    logger.notice("entry stream closed: agent no longer attested", metadata: ["agent": "\(node.spiffeID)"])
                    throw RPCError(code: .permissionDenied, message: "agent: \(node.spiffeID) is no longer attested")
                }
                let entries = try await AgentAuthorization.entries(for: current, index: index, trustDomain: config.trustDomain)
                let bundle = try await ca.bundle()
                let tainted = await ca.taintedAuthorityIDs()
                let message = AgentAPI_SyncResponse.with {
                    $0.entries = entries.map(AgentAPI_Entry.init)
                    $0.bundleJwks = Data((try? bundle.json()) ?? [])
                    $0.bundleSequence = bundle.sequenceNumber ?? 0
                    $0.taintedAuthorityIds = tainted
                }
                if message != last {
                    try await writer.write(message)
                    last = message
                }
            }
            return [:]
        }
    }

    func batchNewX509SVID(request: ServerRequest<AgentAPI_BatchNewX509SVIDRequest>, context: ServerContext) async throws -> ServerResponse<AgentAPI_BatchNewX509SVIDResponse> {
        try await guarded("x509.batch", context) {
            let node = try await callingAgent(context)
            let params = request.message.params
            guard params.count <= Self.maximumBatch else {
                throw RPCError(code: .invalidArgument, message: "batch: at most \(Self.maximumBatch) CSRs a call, not \(params.count)")
            }
            let authorised = Dictionary(
                uniqueKeysWithValues: try await AgentAuthorization.entries(for: node, index: index, trustDomain: config.trustDomain).map { ($0.id, $0) }
            )
            let time = now()
            let signer = try await ca.activeX509()
            var audit: [AuditEvent] = []
            var results: [AgentAPI_X509SVIDResult] = []
            var limited = 0
            for param in params {
                var result = AgentAPI_X509SVIDResult()
                result.entryID = param.entryID
                guard let entry = authorised[param.entryID] else {
                    result.statusCode = Int32(RPCError.Code.permissionDenied.rawValue)
                    result.statusMessage = "entry \(param.entryID) is not authorised for \(node.spiffeID)"
                    logger.warning("CSR refused", metadata: ["agent": "\(node.spiffeID)", "entry": "\(param.entryID)", "reason": "not authorised"])
                    audit.append(AuditEvent(time: time, actor: .agent(node.spiffeID), action: "x509.issue", target: param.entryID, result: "refused", detail: "not authorised for \(node.spiffeID)"))
                    results.append(result)
                    continue
                }
                if let wait = signing.x509.take(node.spiffeID.description) {
                    // Audited at most once a minute per agent: a refusal signs nothing, and the agent asks again.
                    result.statusCode = Int32(RPCError.Code.resourceExhausted.rawValue)
                    result.statusMessage = SigningLimits.refusal(node.spiffeID, "X509-SVIDs", signing.x509, "--agent-x509-rate, --agent-x509-burst", retryIn: wait)
                    if let record = signing.auditRecord(node.spiffeID, "x509.issue", entry.spiffeID.description, result.statusMessage, at: time) {
                        audit.append(record)
                    }
                    limited += 1
                    results.append(result)
                    continue
                }
                do {
                    let ttl = entry.x509SVIDTTL == 0 ? config.defaultX509SVIDTTL : TimeInterval(entry.x509SVIDTTL)
                    let svid = try signer.issueX509SVID(X509SVIDParams(csr: Array(param.csr), spiffeID: entry.spiffeID, dnsNames: entry.dnsNames, ttl: ttl, now: time))
                    result.chain = svid.chain.map { Data($0) }
                    result.expiresAt = Int64(svid.notAfter.timeIntervalSince1970)
                    audit.append(AuditEvent(time: time, actor: .agent(node.spiffeID), action: "x509.issue", target: entry.spiffeID.description, detail: "entry \(entry.id) serial \(Hex.encode(svid.serial)) to \(node.spiffeID)"))
                } catch let error as CAError {
                    result.statusCode = Int32(RPCErrors.code(for: error).rawValue)
                    result.statusMessage = error.message
                    logger.warning("CSR refused", metadata: ["agent": "\(node.spiffeID)", "entry": "\(param.entryID)", "reason": "\(error.message)"])
                }
                results.append(result)
            }
            if limited > 0 {
                logger.notice("CSRs refused: rate limit", metadata: ["agent": "\(node.spiffeID)", "refused": "\(limited)", "limit": "\(signing.x509.limit)"])
            }
            try await store.appendAudit(audit)
            return ServerResponse(message: AgentAPI_BatchNewX509SVIDResponse.with { $0.results = results })
        }
    }

    func newJWTSVID(request: ServerRequest<AgentAPI_NewJWTSVIDRequest>, context: ServerContext) async throws -> ServerResponse<AgentAPI_NewJWTSVIDResponse> {
        try await guarded("jwt.issue", context) {
            let node = try await callingAgent(context)
            let entries = try await AgentAuthorization.entries(for: node, index: index, trustDomain: config.trustDomain)
            guard let entry = entries.first(where: { $0.id == request.message.entryID }) else {
                throw RPCError(code: .permissionDenied, message: "entry \(request.message.entryID) is not authorised for \(node.spiffeID)")
            }
            if let wait = signing.jwt.take(node.spiffeID.description) {
                let message = SigningLimits.refusal(node.spiffeID, "JWT-SVIDs", signing.jwt, "--agent-jwt-rate, --agent-jwt-burst", retryIn: wait)
                if let record = signing.auditRecord(node.spiffeID, "jwt.issue", entry.spiffeID.description, message, at: now()) {
                    try await store.appendAudit([record])
                }
                throw RPCError(code: .resourceExhausted, message: message)
            }
            let ttl = entry.jwtSVIDTTL == 0 ? config.defaultJWTSVIDTTL : TimeInterval(entry.jwtSVIDTTL)
            let time = now()
            let signed: (token: String, expiresAt: Date)
            let key: JWTSigningKey
            do {
                key = try await ca.activeJWT()
                signed = try key.sign(spiffeID: entry.spiffeID, audience: request.message.audience, ttl: ttl, now: time)
            } catch let error as CAError {
                throw RPCErrors.rpcError(error)
            }
            await ca.recordJWTIssued(keyID: key.keyID, to: node.spiffeID, expiresAt: signed.expiresAt, now: time)
            try await store.appendAudit([
                AuditEvent(time: time, actor: .agent(node.spiffeID), action: "jwt.issue", target: entry.spiffeID.description, detail: "aud \(request.message.audience.joined(separator: ",")) to \(node.spiffeID)")
            ])
            return ServerResponse(message: AgentAPI_NewJWTSVIDResponse.with {
                $0.token = signed.token
                $0.expiresAt = Int64(signed.expiresAt.timeIntervalSince1970)
            })
        }
    }

    /// Authorities an agent may report holding workload SVIDs from, at most (a node holds SVIDs
    /// from one or two keys; more than this is not a report but noise).
    static let maximumHeldAuthorities = 64

    func reportHeld(request: ServerRequest<AgentAPI_ReportHeldRequest>, context: ServerContext) async throws -> ServerResponse<AgentAPI_ReportHeldResponse> {
        try await guarded("agent.report-held", context) {
            let node = try await callingAgent(context)
            let ids = request.message.x509AuthorityIds
            guard ids.count <= Self.maximumHeldAuthorities else {
                throw RPCError(code: .invalidArgument, message: "x509_authority_ids: at most \(Self.maximumHeldAuthorities), not \(ids.count)")
            }
            for (index, id) in ids.enumerated() where id.isEmpty || id.count > 128 || !id.allSatisfy(\.isHexDigit) {
                throw RPCError(code: .invalidArgument, message: "x509_authority_ids[\(index)]: must be an authority's hex key identifier, 1 to 128 digits")
            }
            let held = Array(Set(ids.map { $0.lowercased() })).sorted()
            guard held != node.heldAuthorityIDs else { return ServerResponse(message: AgentAPI_ReportHeldResponse()) }
            // Each change is a database write: an agent that keeps changing its report is slowed down.
            if let wait = signing.reports.take(node.spiffeID.description) {
                throw RPCError(
                    code: .resourceExhausted,
                    message: "changes of what \(node.spiffeID) holds are limited to \(signing.reports.limit); retry in \(RateLimiter<String>.describe(wait: wait))"
                )
            }
            try await asRead(node.spiffeID) { try await store.setHeldAuthorities(node.spiffeID, held, expectedSerial: node.serialNumber) }
            return ServerResponse(message: AgentAPI_ReportHeldResponse())
        }
    }

    // MARK: Helpers

    func sign(csr: [UInt8], id: SPIFFEID, ttl: TimeInterval, at time: Date) async throws -> IssuedX509SVID {
        do {
            return try await ca.activeX509().issueX509SVID(X509SVIDParams(csr: csr, spiffeID: id, ttl: ttl, now: time))
        } catch let error as CAError {
            throw RPCErrors.rpcError(error)
        }
    }

    static func serial(_ certificate: Certificate) -> String { Hex.encode(certificate.serialNumber.bytes) }

    /// The X.509 authority that signed an SVID: its leaf's authority key identifier, hex.
    static func authorityID(of svid: IssuedX509SVID) -> String {
        guard let leaf = svid.chain.first, let certificate = try? Certificate(derEncoded: leaf),
            let identifier = try? certificate.extensions.authorityKeyIdentifier?.keyIdentifier
        else { return "" }
        return Hex.encode(identifier)
    }
}

extension AgentAPI_Entry {
    init(_ entry: RegistrationEntry) {
        self.init()
        id = entry.id
        spiffeID = entry.spiffeID.description
        parentID = entry.parentID.description
        selectors = entry.selectors.map { selector in AgentAPI_Selector.with { $0.type = selector.type; $0.value = selector.value } }
        x509SvidTtl = Int32(entry.x509SVIDTTL)
        jwtSvidTtl = Int32(entry.jwtSVIDTTL)
        dnsNames = entry.dnsNames
        hint = entry.hint
        revisionNumber = entry.revisionNumber
        expiresAt = entry.expiresAt.map { Int64($0.timeIntervalSince1970) } ?? 0
        downstream = entry.downstream
    }
}
