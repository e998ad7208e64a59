// The server process: data directory, store, CA, the admin API on its Unix socket and the agent
// API on TCP with mTLS, run as one service that shuts down gracefully on SIGTERM and SIGINT.

import Foundation
import Crypto
import GRPCCore
import GRPCNIOTransportHTTP2
import HallmarkCA
import HallmarkPeerCredentials
import HallmarkStore
import HallmarkSupport
public import Logging
import SPIFFE
import SPIFFETLS
public import ServiceLifecycle
import SwiftASN1
import X509

public struct HallmarkServer: Service {
    private let config: ServerConfig
    private let logger: Logger

    public init(config: ServerConfig, logger: Logger) {
        self.config = config
        self.logger = logger
    }

    public func run() async throws {
        do { try PrivateFiles.ensurePrivateDirectory(config.dataDir) } catch let error as PrivateFileError { throw CAError(.configuration, "server: --data-dir: \(error.message)", underlying: error) }
        let store = try SQLiteStore(
            path: config.databasePath, checkpointer: try AuditCheckpointer(dataDir: config.dataDir, interval: config.auditCheckpointInterval)
        )
        let ca = CAManager(config: config, store: store, logger: logger)
        try await ca.start()
        let events = Broadcast()
        let index = EntryIndex(store: store)

        let serverIdentity = try await ServerIdentity(ca: ca, config: config, logger: logger)
        let reloader = serverIdentity.reloader
        let socketPath = config.adminSocketPath
        do { try PrivateFiles.prepareSocketDirectory(for: socketPath) } catch let error as PrivateFileError { throw CAError(.configuration, "server: --admin-socket: \(error.message)", underlying: error) }
        let adminUIDs = config.adminUIDs
        let logger = self.logger
        let admin = GRPCServer(
            transport: .http2NIOPosix(
                address: .unixDomainSocket(path: socketPath), transportSecurity: .plaintext,
                config: PeerCredentials.serverTransportConfig()
            ),
            services: [
                AdminService(config: config, store: store, index: index, ca: ca, events: events, logger: logger, now: { Date() }, serverIdentity: serverIdentity)
            ],
            interceptors: [
                PeerCredentialsInterceptor { credentials, method in
                    guard credentials.uid == 0 || adminUIDs.contains(credentials.uid) else {
                        logger.warning("admin call refused", metadata: ["caller": "\(credentials)", "method": "\(method)"])
                        throw RPCError(
                            code: .permissionDenied,
                            message: "uid \(credentials.uid) is not an admin of this server (allowed: root and --admin-uid)"
                        )
                    }
                }
            ]
        )

        let agentAPI = GRPCServer(
            transport: .http2NIOPosix(
                address: .ipv4(host: config.listenHost, port: config.listenPort),
                transportSecurity: try .mTLS(certificateReloader: reloader) { tls in
                    // Agents without an SVID yet present a self-signed certificate to attest; every
                    // other call verifies the presented chain itself (AgentService.callingAgent).
                    tls.clientCertificateVerification = .noHostnameVerification
                    tls.customVerificationCallback = SPIFFEPeerVerification.possessionOnly
                }
            ),
            services: [
                AgentService(
                    config: config, store: store, index: index, ca: ca, events: events, logger: logger, now: { Date() },
                    nonces: NonceStore(ttl: config.nonceTTL, clock: { Date() }), limiter: AttestationLimiter(clock: { Date() }),
                    signing: AgentService.SigningLimits(config)
                )
            ]
        )

        try await withGracefulShutdownHandler {
            try await withThrowingDiscardingTaskGroup { group in
                group.addTask { try await admin.serve() }
                group.addTask { try await agentAPI.serve() }
                group.addTask {
                    do {
                        try await cancelWhenGracefulShutdown { try await serverIdentity.run() }
                    } catch is CancellationError {}
                }
                group.addTask {
                    // Until the entries are in memory, authorisation reads them from the store.
                    let start = Date()
                    do {
                        let count = try await index.load()
                        let seconds = String(format: "%.2f", Date().timeIntervalSince(start))
                        logger.info("entry index loaded", metadata: ["entries": "\(count)", "seconds": "\(seconds)"])
                    } catch {
                        logger.error("entry index not loaded; authorisation keeps reading the store", metadata: ["error": "\(error)"])
                    }
                }
                group.addTask {
                    do {
                        try await cancelWhenGracefulShutdown {
                            try await Self.maintain(store: store, ca: ca, evidence: EvidenceAge(config), events: events, logger: logger)
                        }
                    } catch is CancellationError {}
                }
                if let address = try await admin.listeningAddress, address.unixDomainSocket != nil {
                    // Connecting needs write permission: owner and group only, never others.
                    try PrivateFiles.setSocketMode(socketPath, 0o660)
                }
                let agentAddress = try await agentAPI.listeningAddress?.ipv4.map { "\($0.host):\($0.port)" } ?? "?"
                logger.info(
                    "hallmark server listening",
                    metadata: [
                        "trust_domain": "\(config.trustDomain)", "agent_api": "\(agentAddress)", "admin_socket": "\(socketPath)",
                        "data_dir": "\(config.dataDir)",
                    ]
                )
            }
            // The last records are covered by a checkpoint before the server stops.
            if let checkpoint = try await store.checkpointAudit(at: Date()) {
                logger.info("audit checkpoint at shutdown", metadata: ["sequence": "\(checkpoint.sequence)"])
            }
        } onGracefulShutdown: {
            logger.info("hallmark server shutting down")
            // Long-lived entry streams end, so that the servers can finish.
            events.finishAll()
            admin.beginGracefulShutdown()
            agentAPI.beginGracefulShutdown()
        }
    }

    /// Once a second: moves the CA keys along their life, removes entries past their `expires_at`
    /// and evicts nodes whose evidence is too old; agents' streams hear of each at once.
    static func maintain(store: any Store, ca: CAManager, evidence: EvidenceAge, events: Broadcast, logger: Logger) async throws {
        while true {
            try await Task.sleep(for: .seconds(1))
            do {
                if try await ca.tick() { events.notify() }
            } catch {
                logger.error("could not advance the CA keys; retrying", metadata: ["error": "\(error)"])
            }
            do {
                let pruned = try await store.pruneExpiredEntries(at: Date())
                if !pruned.isEmpty {
                    events.notify()
                    logger.info("removed expired entries", metadata: ["entries": "\(pruned.map(\.id).joined(separator: ","))"])
                }
            } catch {
                logger.error("could not remove expired entries; retrying", metadata: ["error": "\(error)"])
            }
            do {
                let evicted = try await evidence.evictStale(store: store, at: Date())
                if !evicted.isEmpty {
                    events.notify()
                    logger.error("evicted agents whose evidence is too old", metadata: ["agents": "\(evicted.map(\.spiffeID.description).joined(separator: ","))"])
                }
            } catch {
                logger.error("could not evict agents with stale evidence; retrying", metadata: ["error": "\(error)"])
            }
        }
    }
}
