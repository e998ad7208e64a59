// Entries in, CSRs out: follows the server's entry stream (each message the full state, with the
// bundle and the tainted authorities) into the cache, and has the SVIDs it needs signed, 500 CSRs
// a call. The renewal loop signs through it too, so that an entry is never signed twice at once.

import Foundation
import GRPCCore
import HallmarkProto
import Logging
import SPIFFE
import X509

struct EntrySync: Sendable {
    let config: AgentConfig
    let cache: AgentCache
    let logger: Logger
    /// When each signed SVID counts as received.
    let clock: @Sendable () -> Date

    /// Follows the entry stream until it ends (which ends the session).
    func follow(_ api: AgentAPIClient.API, identity: X509SVID) async throws {
        try await api.syncEntries(AgentAPI_SyncRequest()) { response in
            for try await message in response.messages {
                var bundle: SPIFFEBundle?
                if let domain = cache.bundle?.trustDomain ?? config.trustDomain {
                    bundle = try? SPIFFEBundle(trustDomain: domain, json: message.bundleJwks)
                }
                if let bundle, bundle.sequenceNumber != cache.bundle?.sequenceNumber {
                    try? AgentIdentity.saveBundle(bundle, config)
                }
                let needed = cache.update(entries: message.entries, bundle: bundle, tainted: Set(message.taintedAuthorityIds))
                // The agent's own SVID first: the renewal loop, woken by this update, renews it and
                // restarts the session, which signs these then. Renewed only there: two renewals at
                // once supersede each other, and the loser's refusal would read as an eviction.
                if cache.isTainted(identity) { continue }
                logger.debug("entries from the server", metadata: ["entries": "\(message.entries.count)", "to_sign": "\(needed.count)"])
                try await sign(needed, api)
            }
        }
        throw AgentError(.serverClosed, "agent: the server closed the entry stream")
    }

    /// Gets SVIDs for entries, 500 CSRs a call; entries another task is signing are left to it.
    func sign(_ wanted: [AgentAPI_Entry], _ api: AgentAPIClient.API) async throws {
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
}
