// The agent process: its identity (from the data directory, or attestation), the link to the
// server, and the Workload API on its Unix socket, as one service.

import Foundation
import HallmarkSupport
public import Logging
import SPIFFE
public import ServiceLifecycle

public struct HallmarkAgent: Service {
    private let config: AgentConfig
    private let logger: Logger

    public init(config: AgentConfig, logger: Logger) {
        self.config = config
        self.logger = logger
    }

    public func run() async throws {
        do { try PrivateFiles.ensurePrivateDirectory(config.dataDir) } catch let error as PrivateFileError { throw AgentError(.files, "agent: --data-dir: \(error.message)", underlying: error) }
        let cache = AgentCache()
        let link = ServerLink(config: config, cache: cache, logger: logger)

        if let gpu = config.gpu {
            // Said plainly at start: an agent asked to attest GPUs that cannot reach any refuses to run.
            try gpu.check()
        }
        let identity: X509SVID
        if let saved = AgentIdentity.load(config, now: Date()), let bundle = AgentIdentity.loadBundle(config) {
            identity = saved
            cache.update(entries: [], bundle: bundle)
            logger.info("resuming as \(saved.id)", metadata: ["expires": "\(saved.expiresAt)"])
        } else {
            let attested = try await link.attest()
            try AgentIdentity.save(attested.svid, config)
            try AgentIdentity.saveBundle(attested.bundle, config)
            identity = attested.svid
            cache.update(entries: [], bundle: attested.bundle)
        }

        Self.raiseDescriptorLimit(for: config.workloadAPI, logger: logger)
        let socketPath = config.socketPath
        do { try PrivateFiles.prepareSocketDirectory(for: socketPath) } catch let error as PrivateFileError { throw AgentError(.files, "agent: --socket: \(error.message)", underlying: error) }
        let workloadAPI = try await WorkloadAPIServer.bind(
            socketPath: socketPath,
            service: WorkloadAPIService(
                cache: cache, attestor: UnixWorkloadAttestor(), minter: link, logger: logger,
                jwtMints: RateLimiter(config.workloadAPI.jwtMintsPerUID)
            ),
            limits: config.workloadAPI
        )
        // Every local user may connect; the kernel's credentials tell workloads apart.
        try PrivateFiles.setSocketMode(socketPath, 0o777)
        let logger = self.logger
        try await withGracefulShutdownHandler {
            try await withThrowingDiscardingTaskGroup { group in
                group.addTask { try await workloadAPI.run() }
                group.addTask {
                    // The link loops until cancelled; a graceful shutdown cancels it.
                    do {
                        try await cancelWhenGracefulShutdown { try await link.run(identity: identity) }
                    } catch is CancellationError {}
                }
                logger.info("hallmark agent listening", metadata: ["agent": "\(identity.id)", "socket": "\(socketPath)"])
            }
        } onGracefulShutdown: {
            logger.info("hallmark agent shutting down")
            cache.changes.finishAll()
            workloadAPI.beginGracefulShutdown()
        }
    }

    /// Every Workload API connection is a descriptor: the soft limit is raised (up to the hard
    /// one) so that the connection limits, not the descriptor limit, are what a flood meets first.
    static func raiseDescriptorLimit(for limits: WorkloadAPILimits, logger: Logger) {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return }
        // The server link, the database of nothing, logs and the listening socket: a few hundred spare.
        let wanted = rlim_t(limits.connections + WorkloadAPILimits.refusedConnectionsWaiting + 256)
        guard limit.rlim_cur < wanted else { return }
        limit.rlim_cur = min(wanted, limit.rlim_max)
        if setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) != 0 || limit.rlim_cur < wanted {
            logger.warning(
                "the descriptor limit is below what --workload-connections needs; a flood may exhaust descriptors before the connection limit",
                metadata: ["limit": "\(limit.rlim_cur)", "wanted": "\(wanted)"]
            )
        }
    }
}
