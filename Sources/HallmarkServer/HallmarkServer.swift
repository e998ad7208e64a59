// The server process: data directory, store, CA, the admin API on its Unix socket and the agent
// API on TCP with mTLS. Each long-running part is a service of one ServiceGroup, which shuts them
// down gracefully in reverse order; every part reads time from the one injected clock.

public import Foundation
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
    private let clock: @Sendable () -> Date

    /// - Parameter clock: the time every part of the server reads (tests move it; the system's by default).
    public init(config: ServerConfig, logger: Logger, clock: @escaping @Sendable () -> Date = { Date() }) {
        self.config = config
        self.logger = logger
        self.clock = clock
    }

    public func run() async throws {
        do { try PrivateFiles.ensurePrivateDirectory(config.dataDir) } catch let error as PrivateFileError { throw CAError(.configuration, "server: --data-dir: \(error.message)", underlying: error) }
        let store = try SQLiteStore(
            path: config.databasePath, checkpointer: try AuditCheckpointer(dataDir: config.dataDir, interval: config.auditCheckpointInterval)
        )
        let ca = CAManager(config: config, store: store, logger: logger, clock: clock)
        try await ca.start()
        let events = Broadcast()
        let index = EntryIndex(store: store)

        let serverIdentity = try await ServerIdentity(ca: ca, config: config, logger: logger, clock: clock)
        let reloader = serverIdentity.reloader
        let socketPath = config.adminSocketPath
        do { try PrivateFiles.prepareSocketDirectory(for: socketPath) } catch let error as PrivateFileError { throw CAError(.configuration, "server: --admin-socket: \(error.message)", underlying: error) }
        let adminUIDs = config.adminUIDs
        let logger = self.logger
        let clock = self.clock
        let admin = GRPCServer(
            transport: .http2NIOPosix(
                address: .unixDomainSocket(path: socketPath), transportSecurity: .plaintext,
                config: PeerCredentials.serverTransportConfig()
            ),
            services: [
                AdminService(config: config, store: store, index: index, ca: ca, events: events, logger: logger, now: clock, serverIdentity: serverIdentity)
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
                    config: config, store: store, index: index, ca: ca, events: events, logger: logger, now: clock,
                    nonces: NonceStore(ttl: config.nonceTTL, clock: clock), limiter: AttestationLimiter(clock: clock),
                    signing: AgentService.SigningLimits(config, clock: clock)
                )
            ]
        )

        let services: [ServiceGroupConfiguration.ServiceConfiguration] = [
            .init(service: GRPCServerService(server: admin), serviceName: "admin API"),
            .init(service: GRPCServerService(server: agentAPI), serviceName: "agent API"),
            .init(service: serverIdentity, serviceName: "server SVID renewal"),
            .init(service: Maintenance(store: store, ca: ca, evidence: EvidenceAge(config), events: events, logger: logger, clock: clock), serviceName: "maintenance"),
            .init(service: EntryIndexLoader(index: index, logger: logger), successTerminationBehavior: .ignore, serviceName: "entry index"),
            .init(
                service: Announcement(admin: admin, agentAPI: agentAPI, config: config, logger: logger),
                successTerminationBehavior: .ignore, serviceName: "announcement"
            ),
            // Shut down first (services stop in reverse order): the long-lived entry streams end,
            // so that the agent API can finish its calls.
            .init(service: EntryStreams(events: events, logger: logger), serviceName: "entry streams"),
        ]
        try await ServiceGroup(configuration: .init(services: services, logger: logger)).run()
        // The last records are covered by a checkpoint before the server stops.
        if let checkpoint = try await store.checkpointAudit(at: clock()) {
            logger.info("audit checkpoint at shutdown", metadata: ["sequence": "\(checkpoint.sequence)"])
        }
    }
}

/// A gRPC server as a service: it serves until graceful shutdown, then finishes the calls it has.
struct GRPCServerService<Transport: ServerTransport>: Service {
    let server: GRPCServer<Transport>

    func run() async throws {
        try await withGracefulShutdownHandler {
            try await server.serve()
        } onGracefulShutdown: {
            server.beginGracefulShutdown()
        }
    }
}

/// Says where the server listens once both APIs are bound, and narrows the admin socket's mode.
struct Announcement<Admin: ServerTransport, Agent: ServerTransport>: Service {
    let admin: GRPCServer<Admin>
    let agentAPI: GRPCServer<Agent>
    let config: ServerConfig
    let logger: Logger

    func run() async throws {
        if let address = try await admin.listeningAddress, address.unixDomainSocket != nil {
            // Connecting needs write permission: owner and group only, never others.
            try PrivateFiles.setSocketMode(config.adminSocketPath, 0o660)
        }
        let agentAddress = try await agentAPI.listeningAddress?.ipv4.map { "\($0.host):\($0.port)" } ?? "?"
        logger.info(
            "hallmark server listening",
            metadata: [
                "trust_domain": "\(config.trustDomain)", "agent_api": "\(agentAddress)", "admin_socket": "\(config.adminSocketPath)",
                "data_dir": "\(config.dataDir)",
            ]
        )
    }
}

/// Loads the entries into memory once; until it has, authorisation reads them from the store.
struct EntryIndexLoader: Service {
    let index: EntryIndex
    let logger: Logger

    func run() async throws {
        let start = ContinuousClock.now
        do {
            let count = try await index.load()
            let elapsed = (ContinuousClock.now - start).components
            let seconds = String(format: "%.2f", Double(elapsed.seconds) + Double(elapsed.attoseconds) / 1e18)
            logger.info("entry index loaded", metadata: ["entries": "\(count)", "seconds": "\(seconds)"])
        } catch {
            logger.error("entry index not loaded; authorisation keeps reading the store", metadata: ["error": "\(error)"])
        }
    }
}

/// The agents' entry streams: at graceful shutdown they end, so that the agent API can finish.
struct EntryStreams: Service {
    let events: Broadcast
    let logger: Logger

    func run() async throws {
        // Cancelled (another service failed) or shut down: either way the streams end.
        try? await gracefulShutdown()
        logger.info("hallmark server shutting down")
        events.finishAll()
    }
}

/// Once a second: moves the CA keys along their life, removes entries past their `expires_at`
/// and evicts nodes whose evidence is too old; agents' streams hear of each at once. Time comes
/// from the server's clock; the second is only the pace.
struct Maintenance: Service {
    let store: any Store
    let ca: CAManager
    let evidence: EvidenceAge
    let events: Broadcast
    let logger: Logger
    let clock: @Sendable () -> Date

    func run() async throws {
        do {
            try await cancelWhenGracefulShutdown {
                while true {
                    try await Task.sleep(for: .seconds(1))
                    await tick()
                }
            }
        } catch is CancellationError {}
    }

    func tick() async {
        do {
            if try await ca.tick() { events.notify() }
        } catch {
            logger.error("could not advance the CA keys; retrying", metadata: ["error": "\(error)"])
        }
        do {
            let pruned = try await store.pruneExpiredEntries(at: clock())
            if !pruned.isEmpty {
                events.notify()
                logger.info("removed expired entries", metadata: ["entries": "\(pruned.map(\.id).joined(separator: ","))"])
            }
        } catch {
            logger.error("could not remove expired entries; retrying", metadata: ["error": "\(error)"])
        }
        do {
            let evicted = try await evidence.evictStale(store: store, at: clock())
            if !evicted.isEmpty {
                events.notify()
                logger.error("evicted agents whose evidence is too old", metadata: ["agents": "\(evicted.map(\.spiffeID.description).joined(separator: ","))"])
            }
        } catch {
            logger.error("could not evict agents with stale evidence; retrying", metadata: ["error": "\(error)"])
        }
    }
}
