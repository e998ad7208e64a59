// Reaching the server's admin API over its Unix socket, and reporting its answers.

import ArgumentParser
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import HallmarkProto

/// Where the admin socket is: --admin-socket, else HALLMARK_ADMIN_SOCKET, else DATA_DIR/admin.sock.
struct AdminOptions: ParsableArguments {
    @Option(name: .customLong("admin-socket"), help: "The server's admin socket (default: $HALLMARK_ADMIN_SOCKET, else DATA_DIR/admin.sock).")
    var adminSocket: String?

    @Option(name: .customLong("data-dir"), help: "The server's data directory, to find its admin socket.")
    var dataDir: String?

    static let defaultDataDir = "/var/lib/hallmark/server"

    var socketPath: String {
        if let adminSocket { return adminSocket }
        if let env = ProcessInfo.processInfo.environment["HALLMARK_ADMIN_SOCKET"], !env.isEmpty { return env }
        return ((dataDir ?? Self.defaultDataDir) as NSString).appendingPathComponent("admin.sock")
    }

    /// Runs `body` with a client of the admin API; gRPC failures become a one-line error and exit 1.
    func call<Result: Sendable>(
        _ command: String, _ body: @Sendable @escaping (Admin_Admin.Client<HTTP2ClientTransport.Posix>) async throws -> Result
    ) async throws -> Result {
        let path = socketPath
        guard FileManager.default.fileExists(atPath: path) else {
            throw CLIOutput.fail("\(command): no admin socket at \(path); is the server running? (set --admin-socket or --data-dir)")
        }
        do {
            let transport = try HTTP2ClientTransport.Posix(target: .unixDomainSocket(path: path), transportSecurity: .plaintext)
            return try await withGRPCClient(transport: transport) { client in
                try await body(Admin_Admin.Client(wrapping: client))
            }
        } catch let error as RPCError {
            if error.code == .unavailable {
                throw CLIOutput.fail("\(command): cannot reach the admin API at \(path): \(error.message)")
            }
            throw CLIOutput.fail("\(command): \(error.message)")
        }
    }
}
