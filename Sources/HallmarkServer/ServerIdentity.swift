// The server's own SVID, spiffe://TD/hallmark/server, presented to agents. It is renewed at half of
// its life, and at once when its authority is tainted or leaves the bundle: the admin's taint
// renews it before answering, so that a revoke right after never finds the server still
// presenting an SVID from the key (every agent would turn it away).

import Foundation
import HallmarkCA
import Logging
import ServiceLifecycle
import SPIFFE
import SPIFFETLS

final class ServerIdentity: Service {
    let reloader: SVIDCertificateReloader
    private let ca: CAManager
    private let config: ServerConfig
    private let logger: Logger
    private let clock: @Sendable () -> Date

    init(ca: CAManager, config: ServerConfig, logger: Logger, clock: @escaping @Sendable () -> Date = { Date() }) async throws {
        self.ca = ca
        self.config = config
        self.logger = logger
        self.clock = clock
        reloader = try SVIDCertificateReloader(try await Self.issue(ca: ca, trustDomain: config.trustDomain, ttl: config.agentSVIDTTL, now: clock()))
    }

    static func issue(ca: CAManager, trustDomain: TrustDomain, ttl: TimeInterval, now: Date) async throws -> X509SVID {
        let request = try SVIDRequest()
        let chain = try await ca.activeX509().issueVerifiedX509SVID(
            X509SVIDParams(csr: request.csr, spiffeID: AgentAuthorization.serverID(trustDomain), ttl: ttl, now: now)
        )
        return try X509SVID(certificates: chain, privateKey: request.privateKey)
    }

    /// The authorities the current SVID chains to.
    var issuers: Set<String> { reloader.current.issuerKeyIDs }

    /// Renews the SVID when it is past half of its life, its authority is tainted, or its authority
    /// is no longer in the bundle; returns whether it did.
    @discardableResult
    func renewIfDue(at now: Date) async throws -> Bool {
        let current = reloader.current
        let half = current.leaf.notValidBefore.addingTimeInterval(current.expiresAt.timeIntervalSince(current.leaf.notValidBefore) / 2)
        let tainted = !current.issuerKeyIDs.isDisjoint(with: await ca.taintedAuthorityIDs())
        let unpublished = current.issuerKeyIDs.isDisjoint(with: await ca.publishedAuthorityIDs())
        guard now >= half || tainted || unpublished else { return false }
        try reloader.update(try await Self.issue(ca: ca, trustDomain: config.trustDomain, ttl: config.agentSVIDTTL, now: now))
        let reason = tainted ? "authority tainted" : unpublished ? "authority no longer in the bundle" : "half-life"
        logger.info("renewed the server SVID", metadata: ["reason": "\(reason)"])
        return true
    }

    /// Checks once a second until graceful shutdown.
    func run() async throws {
        do {
            try await cancelWhenGracefulShutdown {
                while true {
                    try await Task.sleep(for: .seconds(1))
                    do {
                        try await self.renewIfDue(at: self.clock())
                    } catch {
                        self.logger.error("could not renew the server SVID; retrying", metadata: ["error": "\(error)"])
                        try await Task.sleep(for: .seconds(5))
                    }
                }
            }
        } catch is CancellationError {}
    }
}
