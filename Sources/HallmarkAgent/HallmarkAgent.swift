// The agent process: its identity (from the data directory, or attestation), the link to the
// server, and the Workload API on its Unix socket, as one service.

import Foundation
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
        try FileManager.default.createDirectory(atPath: config.dataDir, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
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

        let socketPath = config.socketPath
        try Self.prepareSocket(socketPath)
        let workloadAPI = try await WorkloadAPIServer.bind(
            socketPath: socketPath,
            service: WorkloadAPIService(cache: cache, attestor: UnixWorkloadAttestor(), link: link, logger: logger)
        )
        // Every local user may connect; the kernel's credentials tell workloads apart.
        chmod(socketPath, 0o777)
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

    private static func prepareSocket(_ path: String) throws {
        let directory = (path as NSString).deletingLastPathComponent
        // Only the agent may write the socket's directory, so no one can swap the socket.
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o755])
        var info = stat()
        guard stat(directory, &info) == 0 else { throw AgentError("agent: cannot read the socket directory \(directory)") }
        guard info.st_mode & 0o022 == 0, info.st_uid == geteuid() else {
            throw AgentError(
                "agent: the socket directory \(directory) (mode \(String(info.st_mode & 0o7777, radix: 8)), owner uid \(info.st_uid)) must be "
                    + "owned by the agent's user and writable by no one else, or another user could replace the socket; use chmod 755"
            )
        }
        if lstat(path, &info) == 0 {
            guard (info.st_mode & S_IFMT) == S_IFSOCK else { throw AgentError("agent: \(path) exists and is not a socket") }
            unlink(path)
        }
    }
}
