// The admin API: entries, join tokens, agents, bundle, authorities, minting and the audit log.
// The caller's uid comes from the kernel (see HallmarkPeerCredentials); input is validated before
// anything is written, and every mutation is audited in the same transaction.

import Foundation
import GRPCCore
import HallmarkAttestation
import HallmarkCA
import HallmarkPeerCredentials
import HallmarkProto
import HallmarkStore
import HallmarkSupport
import Logging
import SPIFFE
import SwiftASN1
import SwiftProtobuf
import X509

struct AdminService: Admin_Admin.ServiceProtocol {
    let config: ServerConfig
    let store: any Store
    /// The entries in memory, for authorisation.
    let index: EntryIndex
    let ca: CAManager
    let events: Broadcast
    let logger: Logger
    let now: @Sendable () -> Date
    /// The server's own SVID, renewed at a taint before the answer (nil where no agent API runs).
    var serverIdentity: ServerIdentity? = nil

    private func caller(_ metadata: Metadata) throws -> Int64 {
        Int64(try PeerCredentials(metadata: metadata).uid)
    }

    /// Runs a request's handler, refusing first a request with fields this server does not know
    /// (an admin who sets a field an older server would ignore must hear that it was not applied).
    private func respond<T>(_ action: String, _ message: some SwiftProtobuf.Message, _ body: () async throws -> T) async throws -> ServerResponse<T> {
        do {
            try UnknownFields.refuse(message)
            return ServerResponse(message: try await body())
        } catch {
            let rpc = RPCErrors.rpcError(error)
            logger.notice("admin request refused", metadata: ["action": "\(action)", "code": "\(rpc.code)", "reason": "\(rpc.message)"])
            throw rpc
        }
    }

    // MARK: Entries

    func createEntry(request: ServerRequest<Admin_CreateEntryRequest>, context: ServerContext) async throws -> ServerResponse<Admin_Entry> {
        try await respond("entry.create", request.message) {
            let uid = try caller(request.metadata)
            let entry = try EntryValidation.validate(EntryInput(request.message.entry), trustDomain: config.trustDomain, now: now())
            let created = try await store.createEntry(
                entry, audit: AuditEvent(time: now(), actor: .admin(uid: uid), action: "entry.create", target: entry.id, detail: entry.spiffeID.description)
            )
            events.notify()
            return Admin_Entry(created)
        }
    }

    func updateEntry(request: ServerRequest<Admin_UpdateEntryRequest>, context: ServerContext) async throws -> ServerResponse<Admin_Entry> {
        try await respond("entry.update", request.message) {
            let uid = try caller(request.metadata)
            guard !request.message.entry.id.isEmpty else { throw ValidationFailure("id", "is required to name the entry to update") }
            guard let current = try await store.entries(matching: EntryFilter(id: request.message.entry.id)).first else {
                throw StoreError(.notFound, "entry: no entry with ID \(request.message.entry.id)")
            }
            var entry = try EntryValidation.validate(EntryInput(request.message.entry), trustDomain: config.trustDomain, now: now())
            entry.createdAt = current.createdAt
            let updated = try await store.updateEntry(
                entry, audit: AuditEvent(time: now(), actor: .admin(uid: uid), action: "entry.update", target: entry.id, detail: entry.spiffeID.description)
            )
            events.notify()
            return Admin_Entry(updated)
        }
    }

    func deleteEntry(request: ServerRequest<Admin_DeleteEntryRequest>, context: ServerContext) async throws -> ServerResponse<Admin_DeleteEntryResponse> {
        try await respond("entry.delete", request.message) {
            let uid = try caller(request.metadata)
            guard !request.message.id.isEmpty else { throw ValidationFailure("id", "is required") }
            // What the deletion affects, for the audit record: the identity and the agent that served it.
            let affected = try await store.entries(matching: EntryFilter(id: request.message.id)).first.map { "\($0.spiffeID) under \($0.parentID)" } ?? ""
            let deleted = try await store.deleteEntry(
                id: request.message.id,
                audit: AuditEvent(time: now(), actor: .admin(uid: uid), action: "entry.delete", target: request.message.id, detail: affected)
            )
            events.notify()
            return Admin_DeleteEntryResponse.with { $0.entry = Admin_Entry(deleted) }
        }
    }

    func listEntries(request: ServerRequest<Admin_ListEntriesRequest>, context: ServerContext) async throws -> ServerResponse<Admin_ListEntriesResponse> {
        try await respond("entry.list", request.message) {
            _ = try caller(request.metadata)
            let message = request.message
            var filter = EntryFilter()
            if !message.id.isEmpty { filter.id = message.id }
            if !message.spiffeID.isEmpty { filter.spiffeID = try EntryValidation.id(message.spiffeID, field: "spiffe_id", trustDomain: config.trustDomain) }
            if !message.parentID.isEmpty { filter.parentID = try EntryValidation.id(message.parentID, field: "parent_id", trustDomain: config.trustDomain) }
            filter.selectors = try message.selectors.enumerated().map { index, selector in
                do { return try Selector(type: selector.type, value: selector.value) } catch let error as SelectorError {
                    throw ValidationFailure("selectors[\(index)]", error.message)
                }
            }
            let entries = try await store.entries(matching: filter)
            return Admin_ListEntriesResponse.with { $0.entries = entries.map(Admin_Entry.init) }
        }
    }

    // MARK: Join tokens and agents

    func createJoinToken(request: ServerRequest<Admin_CreateJoinTokenRequest>, context: ServerContext) async throws -> ServerResponse<Admin_JoinToken> {
        try await respond("token.create", request.message) {
            let uid = try caller(request.metadata)
            let ttl = request.message.ttlSeconds == 0 ? Int(config.joinTokenTTL) : Int(request.message.ttlSeconds)
            guard (1...(7 * 86400)).contains(ttl) else { throw ValidationFailure("ttl", "must be 1 to 604800 seconds, not \(ttl)") }
            var alias: SPIFFEID?
            if !request.message.spiffeID.isEmpty {
                alias = try EntryValidation.workloadID(request.message.spiffeID, field: "spiffe_id", trustDomain: config.trustDomain)
            }
            let token = JoinToken.generate()
            let tokenID = JoinToken.id(of: token)
            let time = now()
            let expiresAt = time.addingTimeInterval(TimeInterval(ttl))
            if let alias {
                // The agent that redeems the token is also known as the alias: a node entry under the agent's own ID.
                let agentID = try JoinToken.agentID(trustDomain: config.trustDomain, tokenID: tokenID)
                let entry = RegistrationEntry(
                    spiffeID: alias, parentID: agentID, selectors: [try Selector(type: "spiffe_id", value: agentID.description)], createdAt: time
                )
                _ = try await store.createEntry(
                    entry, audit: AuditEvent(time: time, actor: .admin(uid: uid), action: "entry.create", target: entry.id, detail: "node alias \(alias)")
                )
            }
            try await store.createJoinToken(
                JoinTokenRecord(id: tokenID, tokenHash: JoinToken.hash(token), spiffeID: alias, expiresAt: expiresAt, createdAt: time),
                audit: AuditEvent(time: time, actor: .admin(uid: uid), action: "token.create", target: tokenID, detail: alias?.description ?? "")
            )
            if alias != nil { events.notify() }
            return Admin_JoinToken.with {
                $0.token = token
                $0.id = tokenID
                $0.expiresAt = Int64(expiresAt.timeIntervalSince1970)
                $0.spiffeID = alias?.description ?? ""
            }
        }
    }

    func listAgents(request: ServerRequest<Admin_ListAgentsRequest>, context: ServerContext) async throws -> ServerResponse<Admin_ListAgentsResponse> {
        try await respond("agent.list", request.message) {
            _ = try caller(request.metadata)
            let nodes = try await store.attestedNodes()
            return Admin_ListAgentsResponse.with { $0.agents = nodes.map(Admin_Agent.init) }
        }
    }

    func getAgent(request: ServerRequest<Admin_GetAgentRequest>, context: ServerContext) async throws -> ServerResponse<Admin_Agent> {
        try await respond("agent.show", request.message) {
            _ = try caller(request.metadata)
            let id = try EntryValidation.id(request.message.spiffeID, field: "spiffe_id", trustDomain: config.trustDomain)
            guard let node = try await store.attestedNode(id) else { throw StoreError(.notFound, "agent: no attested agent \(id)") }
            return Admin_Agent(node)
        }
    }

    func evictAgent(request: ServerRequest<Admin_EvictAgentRequest>, context: ServerContext) async throws -> ServerResponse<Admin_Agent> {
        try await respond("agent.evict", request.message) {
            let uid = try caller(request.metadata)
            let id = try agentID(request.message.spiffeID)
            let affected = try await affectedEntries(id)
            let node = try await store.deleteAttestedNode(
                id, audit: AuditEvent(time: now(), actor: .admin(uid: uid), action: "agent.evict", target: id.description, detail: affected)
            )
            events.notify()
            logger.notice("agent evicted", metadata: ["agent": "\(id)", "caller_uid": "\(uid)"])
            return Admin_Agent(node)
        }
    }

    func banAgent(request: ServerRequest<Admin_BanAgentRequest>, context: ServerContext) async throws -> ServerResponse<Admin_Agent> {
        try await respond("agent.ban", request.message) {
            try await setBanned(true, request.message.spiffeID, request.metadata)
        }
    }

    func unbanAgent(request: ServerRequest<Admin_UnbanAgentRequest>, context: ServerContext) async throws -> ServerResponse<Admin_Agent> {
        try await respond("agent.unban", request.message) {
            try await setBanned(false, request.message.spiffeID, request.metadata)
        }
    }

    private func agentID(_ text: String) throws -> SPIFFEID {
        let id = try EntryValidation.id(text, field: "spiffe_id", trustDomain: config.trustDomain)
        guard id.path.hasPrefix("/hallmark/agent/") else {
            throw ValidationFailure("spiffe_id", "must be an agent's ID (spiffe://\(config.trustDomain.name)/hallmark/agent/...), not \(id)")
        }
        return id
    }

    /// What an agent's removal affects, for the audit record.
    private func affectedEntries(_ id: SPIFFEID) async throws -> String {
        guard let node = try await store.attestedNode(id) else { throw StoreError(.notFound, "agent: no attested agent \(id)") }
        let entries = try await AgentAuthorization.entries(for: node, index: index, trustDomain: config.trustDomain)
        return "\(entries.count) entries no longer served: " + entries.prefix(20).map(\.id).joined(separator: ",")
    }

    /// A ban clears the node's SVID serial, so that its current SVID is refused even after an unban.
    private func setBanned(_ banned: Bool, _ text: String, _ metadata: Metadata) async throws -> Admin_Agent {
        let uid = try caller(metadata)
        let id = try agentID(text)
        let detail = banned ? try await affectedEntries(id) : "may attest again"
        let node = try await store.setAttestedNodeBanned(
            id, banned, audit: AuditEvent(time: now(), actor: .admin(uid: uid), action: banned ? "agent.ban" : "agent.unban", target: id.description, detail: detail)
        )
        events.notify()
        logger.notice(banned ? "agent banned" : "agent unbanned", metadata: ["agent": "\(id)", "caller_uid": "\(uid)"])
        return Admin_Agent(node)
    }

    // MARK: Bundle and authorities

    func getBundle(request: ServerRequest<Admin_GetBundleRequest>, context: ServerContext) async throws -> ServerResponse<Admin_Bundle> {
        try await respond("bundle.show", request.message) {
            _ = try caller(request.metadata)
            let bundle = try await ca.bundle()
            var bundleMessage = Admin_Bundle.with {
                $0.trustDomain = config.trustDomain.name
                $0.x509Pem = bundle.x509Bundle.pem
                $0.spiffeJwks = Data((try? bundle.json()) ?? [])
                $0.sequence = bundle.sequenceNumber ?? 0
            }
            bundleMessage.taintedAuthorityIds = await ca.taintedAuthorityIDs()
            return bundleMessage
        }
    }

    func listAuthorities(request: ServerRequest<Admin_ListAuthoritiesRequest>, context: ServerContext) async throws -> ServerResponse<Admin_ListAuthoritiesResponse> {
        try await respond("authority.list", request.message) {
            _ = try caller(request.metadata)
            let kind = request.message.kind
            guard kind.isEmpty || AuthorityRecord.Kind(rawValue: kind) != nil else {
                throw ValidationFailure("kind", "must be 'x509' or 'jwt', not '\(kind)'")
            }
            let records = await ca.authorities().filter { kind.isEmpty || $0.kind.rawValue == kind }
            let dependents = try await dependents()
            return Admin_ListAuthoritiesResponse.with {
                $0.authorities = records.map { record in
                    var authority = Admin_Authority(record)
                    authority.dependentNodes = Int32(dependents[record.authorityID]?.nodes.count ?? 0)
                    return authority
                }
            }
        }
    }

    /// Who still depends on an authority: revoking it now would cut them off.
    struct Dependents {
        /// Nodes whose unexpired agent SVID it signed.
        var agentSVIDs: [SPIFFEID] = []
        /// Nodes whose agent holds workload X509-SVIDs from it (as the agent reports), or that were
        /// given JWT-SVIDs from it that have not expired.
        var workloadSVIDs: [SPIFFEID] = []
        /// When the last JWT-SVID from it expires.
        var jwtUntil: Date?

        var nodes: Set<SPIFFEID> { Set(agentSVIDs + workloadSVIDs) }
    }

    /// Each authority's dependents among the unbanned, unexpired nodes.
    private func dependents() async throws -> [String: Dependents] {
        let time = now()
        var dependents: [String: Dependents] = [:]
        var live: Set<SPIFFEID> = []
        for node in try await store.attestedNodes() where !node.banned && node.expiresAt > time {
            live.insert(node.spiffeID)
            if !node.svidAuthorityID.isEmpty { dependents[node.svidAuthorityID, default: Dependents()].agentSVIDs.append(node.spiffeID) }
            for id in node.heldAuthorityIDs { dependents[id, default: Dependents()].workloadSVIDs.append(node.spiffeID) }
        }
        for (keyID, holders) in await ca.jwtHolders(at: time) {
            let holding = holders.filter { live.contains($0.key) }
            guard !holding.isEmpty else { continue }
            dependents[keyID, default: Dependents()].workloadSVIDs += holding.keys.sorted { $0.description < $1.description }
            dependents[keyID]?.jwtUntil = holding.values.max()
        }
        return dependents
    }

    private func kind(_ text: String) throws -> AuthorityRecord.Kind {
        guard let kind = AuthorityRecord.Kind(rawValue: text) else { throw ValidationFailure("kind", "must be 'x509' or 'jwt', not '\(text)'") }
        return kind
    }

    private func authorityID(_ text: String) throws -> String {
        guard !text.isEmpty else { throw ValidationFailure("authority_id", "is required (see `hallmark authority x509|jwt show`)") }
        guard text.count <= 128, text.allSatisfy(\.isHexDigit) else { throw ValidationFailure("authority_id", "must be the hex ID that `authority show` lists") }
        return text.lowercased()
    }

    /// Runs an authority change and tells the agents.
    private func changeAuthority(_ body: () async throws -> AuthorityRecord) async throws -> Admin_Authority {
        let record = try await body()
        events.notify()
        var authority = Admin_Authority(record)
        authority.dependentNodes = Int32(try await dependents()[record.authorityID]?.nodes.count ?? 0)
        return authority
    }

    func prepareAuthority(request: ServerRequest<Admin_PrepareAuthorityRequest>, context: ServerContext) async throws -> ServerResponse<Admin_Authority> {
        try await respond("authority.prepare", request.message) {
            let uid = try caller(request.metadata)
            let kind = try kind(request.message.kind)
            return try await changeAuthority { try await ca.prepare(kind, actor: .admin(uid: uid)) }
        }
    }

    func activateAuthority(request: ServerRequest<Admin_ActivateAuthorityRequest>, context: ServerContext) async throws -> ServerResponse<Admin_Authority> {
        try await respond("authority.activate", request.message) {
            let uid = try caller(request.metadata)
            let kind = try kind(request.message.kind)
            let id = request.message.authorityID.isEmpty ? nil : try authorityID(request.message.authorityID)
            return try await changeAuthority { try await ca.activate(kind, authorityID: id, actor: .admin(uid: uid)) }
        }
    }

    func taintAuthority(request: ServerRequest<Admin_TaintAuthorityRequest>, context: ServerContext) async throws -> ServerResponse<Admin_Authority> {
        try await respond("authority.taint", request.message) {
            let uid = try caller(request.metadata)
            let kind = try kind(request.message.kind)
            let id = try authorityID(request.message.authorityID)
            let authority = try await changeAuthority { try await ca.taint(kind, authorityID: id, actor: .admin(uid: uid)) }
            if kind == .x509, let serverIdentity {
                do { try await serverIdentity.renewIfDue(at: now()) } catch {
                    logger.error("could not renew the server SVID after a taint; the loop retries", metadata: ["error": "\(error)"])
                }
            }
            return authority
        }
    }

    func revokeAuthority(request: ServerRequest<Admin_RevokeAuthorityRequest>, context: ServerContext) async throws -> ServerResponse<Admin_Authority> {
        try await respond("authority.revoke", request.message) {
            let uid = try caller(request.metadata)
            let kind = try kind(request.message.kind)
            let id = try authorityID(request.message.authorityID)
            // A revoke that beats the agents' renewal would cut them off for good (a join-token agent
            // cannot attest again): refused while any node still holds an agent SVID from the key.
            let tainted = await ca.authorities().contains { $0.kind == kind && $0.authorityID == id && $0.state == .tainted }
            if tainted, !request.message.force, let serverIdentity, serverIdentity.issuers.contains(id) {
                throw CAError(.failedPrecondition, "authority: the server's own SVID is still from \(id); it is replaced within a second of the taint: try again")
            }
            if tainted, let holders = try await dependents()[id], !holders.nodes.isEmpty, !request.message.force {
                func held(_ nodes: [SPIFFEID], _ what: String) -> String {
                    let names = nodes.prefix(10).map(\.description).joined(separator: ", ") + (nodes.count > 10 ? ", …" : "")
                    return "\(nodes.count) attested node\(nodes.count == 1 ? "" : "s") still hold\(nodes.count == 1 ? "s" : "") \(what) from \(id) (\(names))"
                }
                var reasons: [String] = []
                if !holders.agentSVIDs.isEmpty { reasons.append(held(holders.agentSVIDs, "an agent SVID")) }
                if !holders.workloadSVIDs.isEmpty {
                    reasons.append(held(holders.workloadSVIDs, kind == .x509 ? "workload X509-SVIDs" : "workload JWT-SVIDs")
                        + (holders.jwtUntil.map { " until \($0.formatted(.iso8601))" } ?? ""))
                }
                throw CAError(.failedPrecondition,
                    "authority: " + reasons.joined(separator: "; ")
                        + "; wait until they have renewed (`authority \(kind.rawValue) show` counts them) or pass --force to cut them off"
                )
            }
            return try await changeAuthority { try await ca.revoke(kind, authorityID: id, actor: .admin(uid: uid)) }
        }
    }

    // MARK: Minting

    func mintX509SVID(request: ServerRequest<Admin_MintX509SVIDRequest>, context: ServerContext) async throws -> ServerResponse<Admin_MintX509SVIDResponse> {
        try await respond("x509.mint", request.message) {
            let uid = try caller(request.metadata)
            let message = request.message
            // The server's and agents' own IDs are never minted: a non-root admin could otherwise
            // impersonate the server to agents.
            let id = try EntryValidation.workloadID(message.spiffeID, field: "spiffe_id", trustDomain: config.trustDomain)
            let ttl = message.ttlSeconds == 0 ? Int(config.defaultX509SVIDTTL) : Int(message.ttlSeconds)
            guard (1...ServerConfig.maximumX509SVIDTTL).contains(ttl) else {
                throw ValidationFailure("ttl", "must be 1 to \(ServerConfig.maximumX509SVIDTTL) seconds, not \(ttl)")
            }
            for (index, name) in message.dnsNames.enumerated() {
                if let problem = EntryValidation.dnsNameProblem(name) { throw ValidationFailure("dns_names[\(index)]", problem) }
            }
            let signer = try await ca.activeX509()
            let time = now()
            let chain: [Certificate]
            do {
                chain = try await signer.issueVerifiedX509SVID(
                    X509SVIDParams(csr: Array(message.csr), spiffeID: id, dnsNames: message.dnsNames, ttl: TimeInterval(ttl), now: time)
                )
            } catch let error as CAError where error.code == .invalidCSR {
                throw ValidationFailure("csr", error.message)
            }
            try await store.appendAudit([
                AuditEvent(time: time, actor: .admin(uid: uid), action: "x509.mint", target: id.description, detail: "serial \(chain[0].serialNumber)")
            ])
            let bundle = try await ca.bundle()
            return Admin_MintX509SVIDResponse.with {
                $0.chain = chain.map { Data($0.derBytes) }
                $0.bundle = bundle.x509Authorities.map { Data($0.derBytes) }
                $0.expiresAt = Int64(chain[0].notValidAfter.timeIntervalSince1970)
            }
        }
    }

    func mintJWTSVID(request: ServerRequest<Admin_MintJWTSVIDRequest>, context: ServerContext) async throws -> ServerResponse<Admin_MintJWTSVIDResponse> {
        try await respond("jwt.mint", request.message) {
            let uid = try caller(request.metadata)
            let message = request.message
            // The server's and agents' own IDs are never minted: a non-root admin could otherwise
            // impersonate the server to agents.
            let id = try EntryValidation.workloadID(message.spiffeID, field: "spiffe_id", trustDomain: config.trustDomain)
            guard !message.audience.isEmpty, message.audience.allSatisfy({ !$0.isEmpty }) else {
                throw ValidationFailure("audience", "at least one non-empty audience is required")
            }
            let ttl = message.ttlSeconds == 0 ? Int(config.defaultJWTSVIDTTL) : Int(message.ttlSeconds)
            guard (1...ServerConfig.maximumJWTSVIDTTL).contains(ttl) else {
                throw ValidationFailure("ttl", "must be 1 to \(ServerConfig.maximumJWTSVIDTTL) seconds, not \(ttl)")
            }
            let time = now()
            let signed = try await ca.activeJWT().sign(spiffeID: id, audience: message.audience, ttl: TimeInterval(ttl), now: time)
            try await store.appendAudit([
                AuditEvent(time: time, actor: .admin(uid: uid), action: "jwt.mint", target: id.description, detail: "aud \(message.audience.joined(separator: ","))")
            ])
            return Admin_MintJWTSVIDResponse.with {
                $0.token = signed.token
                $0.expiresAt = Int64(signed.expiresAt.timeIntervalSince1970)
            }
        }
    }

    // MARK: Audit

    func listAudit(request: ServerRequest<Admin_ListAuditRequest>, context: ServerContext) async throws -> ServerResponse<Admin_ListAuditResponse> {
        try await respond("audit.show", request.message) {
            _ = try caller(request.metadata)
            let limit = request.message.limit == 0 ? 1000 : Int(request.message.limit)
            guard (1...100_000).contains(limit) else { throw ValidationFailure("limit", "must be 1 to 100000") }
            let records = try await store.auditRecords(after: request.message.afterSequence, limit: limit)
            return Admin_ListAuditResponse.with { $0.records = records.map(Admin_AuditRecord.init) }
        }
    }

    func verifyAudit(request: ServerRequest<Admin_VerifyAuditRequest>, context: ServerContext) async throws -> ServerResponse<Admin_VerifyAuditResponse> {
        try await respond("audit.verify", request.message) {
            _ = try caller(request.metadata)
            let result = try await store.verifyAudit(trust: AuditTrust(dataDir: config.dataDir))
            return Admin_VerifyAuditResponse.with {
                $0.intact = result.intact
                $0.records = result.records
                $0.firstBadSequence = result.firstBadSequence ?? 0
                $0.reason = result.reason ?? ""
            }
        }
    }

    func listAuditCheckpoints(
        request: ServerRequest<Admin_ListAuditCheckpointsRequest>, context: ServerContext
    ) async throws -> ServerResponse<Admin_ListAuditCheckpointsResponse> {
        try await respond("audit.checkpoints", request.message) {
            _ = try caller(request.metadata)
            let checkpoints = try await store.auditCheckpoints()
            return Admin_ListAuditCheckpointsResponse.with {
                $0.checkpoints = checkpoints.map { checkpoint in
                    Admin_AuditCheckpoint.with {
                        $0.sequence = checkpoint.sequence
                        $0.headHash = Data(checkpoint.headHash)
                        $0.timeMs = checkpoint.timeMS
                        $0.signature = Data(checkpoint.signature)
                        $0.keyID = checkpoint.keyID
                    }
                }
                $0.publicKeyPem = AuditTrust(dataDir: config.dataDir).key?.pemRepresentation ?? ""
            }
        }
    }
}
