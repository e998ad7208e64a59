// The server process: data directory, store, CA, and the admin API on its Unix socket, run as one
// service that shuts down gracefully on SIGTERM and SIGINT.

public import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import HallmarkCA
import HallmarkPeerCredentials
import HallmarkStore
public import Logging
public import ServiceLifecycle

public struct HallmarkServer: Service {
    private let config: ServerConfig
    private let logger: Logger

    public init(config: ServerConfig, logger: Logger) {
        self.config = config
        self.logger = logger
    }

    public func run() async throws {
        try prepareDataDirectory()
        let store = try SQLiteStore(path: config.databasePath)
        let ca = CAManager(config: config, store: store, logger: logger)
        try await ca.start(now: Date())

        let socketPath = config.adminSocketPath
        try prepareSocketPath(socketPath)
        let adminUIDs = config.adminUIDs
        let logger = self.logger
        let admin = GRPCServer(
            transport: .http2NIOPosix(
                address: .unixDomainSocket(path: socketPath), transportSecurity: .plaintext,
                config: PeerCredentials.serverTransportConfig()
            ),
            services: [AdminService(config: config, store: store, ca: ca, logger: logger, now: { Date() })],
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

        try await withGracefulShutdownHandler {
            try await withThrowingDiscardingTaskGroup { group in
                group.addTask { try await admin.serve() }
                if let address = try await admin.listeningAddress, address.unixDomainSocket != nil {
                    // Connecting needs write permission: owner and group only, never others.
                    chmod(socketPath, 0o660)
                }
                logger.info(
                    "hallmark server listening",
                    metadata: ["trust_domain": "\(config.trustDomain)", "admin_socket": "\(socketPath)", "data_dir": "\(config.dataDir)"]
                )
            }
        } onGracefulShutdown: {
            logger.info("hallmark server shutting down")
            admin.beginGracefulShutdown()
        }
    }

    private func prepareDataDirectory() throws {
        try FileManager.default.createDirectory(atPath: config.dataDir, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
    }

    private func prepareSocketPath(_ path: String) throws {
        let directory = (path as NSString).deletingLastPathComponent
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o755])
        // A socket file left by a previous run would make bind fail.
        var info = stat()
        if lstat(path, &info) == 0 {
            guard (info.st_mode & S_IFMT) == S_IFSOCK else {
                throw CAError("server: \(path) exists and is not a socket; refusing to replace it")
            }
            unlink(path)
        }
    }
}
