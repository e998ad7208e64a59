// Where the server's store lives, as `--database` names it: `sqlite:PATH`, or
// `postgres://USER@HOST:PORT/DATABASE?sslmode=MODE` (a Unix socket as libpq writes it: an empty
// host and `?host=/socket/directory`). Every refusal names the part of the URL and the rule. A
// password is never part of the URL (it would show in `ps` and in logs): it comes from
// `--database-password-file` or PGPASSWORD.

import Foundation
public import NIOSSL
public import PostgresNIO

public enum DatabaseURL: Hashable, Sendable, CustomStringConvertible {
    case sqlite(path: String)
    case postgres(Postgres)

    public struct Postgres: Hashable, Sendable {
        public enum Endpoint: Hashable, Sendable {
            case tcp(host: String, port: Int)
            /// The directory holding the server's socket, and the port that names the socket file.
            case unixSocket(directory: String, port: Int)
        }

        /// libpq's sslmode, less the modes that fall back to plaintext without saying so.
        public enum TLSMode: String, Hashable, Sendable, CaseIterable {
            case disable
            /// TLS, the server's certificate not checked.
            case require
            /// TLS, the server's certificate checked against the system's roots and its name against the host.
            case verifyFull = "verify-full"
        }

        public var endpoint: Endpoint
        public var user: String
        public var database: String
        public var tls: TLSMode
    }

    /// Parses `text`, naming `flag` in every refusal.
    public init(parsing text: String, flag: String = "--database") throws(StoreError) {
        func refuse(_ rule: String) -> StoreError { StoreError(.invalidURL, "\(flag): \(rule)") }
        if text.hasPrefix("sqlite:") {
            let path = String(text.dropFirst("sqlite:".count))
            guard !path.isEmpty else { throw refuse("sqlite: needs the database file's path (sqlite:/var/lib/hallmark/hallmark.db)") }
            self = .sqlite(path: path)
            return
        }
        guard let components = URLComponents(string: text), let scheme = components.scheme else {
            throw refuse("'\(text)' is not sqlite:PATH or postgres://USER@HOST:PORT/DATABASE")
        }
        guard scheme == "postgres" || scheme == "postgresql" else {
            throw refuse("the scheme '\(scheme)' is not sqlite or postgres")
        }
        guard components.password == nil else {
            throw refuse("a password does not belong in the URL (it would show in ps and in logs); use --database-password-file or PGPASSWORD")
        }
        guard let user = components.user, !user.isEmpty else {
            throw refuse("the user is missing (postgres://USER@HOST:PORT/DATABASE)")
        }
        let database = String(components.path.drop(while: { $0 == "/" }))
        guard !database.isEmpty, !database.contains("/") else {
            throw refuse("the database name is missing or has a '/' (postgres://USER@HOST:PORT/DATABASE)")
        }
        let port = components.port ?? 5432
        guard (1...65535).contains(port) else { throw refuse("the port \(port) is not 1 to 65535") }
        var socketDirectory: String?
        var tls: Postgres.TLSMode?
        for item in components.queryItems ?? [] {
            switch item.name {
            case "sslmode":
                guard let value = item.value, let mode = Postgres.TLSMode(rawValue: value) else {
                    throw refuse(
                        "sslmode '\(item.value ?? "")' is not one of \(Postgres.TLSMode.allCases.map(\.rawValue).joined(separator: ", ")) (allow and prefer fall back to plaintext unannounced)"
                    )
                }
                tls = mode
            case "host":
                guard let value = item.value, value.hasPrefix("/") else { throw refuse("host= must be the absolute path of the socket's directory") }
                socketDirectory = value
            default:
                throw refuse("the parameter '\(item.name)' is not understood (sslmode, host)")
            }
        }
        let host = components.host ?? ""
        let endpoint: Postgres.Endpoint
        if let socketDirectory {
            guard host.isEmpty else { throw refuse("give a host name or host=/socket/directory, not both") }
            guard tls == nil || tls == .disable else { throw refuse("a Unix socket takes no TLS: sslmode must be disable or absent") }
            endpoint = .unixSocket(directory: socketDirectory, port: port)
        } else {
            guard !host.isEmpty else { throw refuse("the host is missing (postgres://USER@HOST:PORT/DATABASE, or host=/socket/directory)") }
            endpoint = .tcp(host: host, port: port)
        }
        // Over the network, TLS with the certificate checked unless the URL says otherwise.
        self = .postgres(Postgres(endpoint: endpoint, user: user, database: database, tls: tls ?? (socketDirectory == nil ? .verifyFull : .disable)))
    }

    public var description: String {
        switch self {
        case .sqlite(let path): "sqlite:\(path)"
        case .postgres(let postgres):
            switch postgres.endpoint {
            case .tcp(let host, let port): "postgres://\(postgres.user)@\(host):\(port)/\(postgres.database)?sslmode=\(postgres.tls.rawValue)"
            case .unixSocket(let directory, let port): "postgres://\(postgres.user)@:\(port)/\(postgres.database)?host=\(directory)"
            }
        }
    }
}

extension DatabaseURL.Postgres {
    /// The client configuration, with the password read from a file or PGPASSWORD.
    public func clientConfiguration(password: String?) throws -> PostgresClient.Configuration {
        switch endpoint {
        case .unixSocket(let directory, let port):
            return PostgresClient.Configuration(unixSocketPath: "\(directory)/.s.PGSQL.\(port)", username: user, password: password, database: database)
        case .tcp(let host, let port):
            let tls: PostgresClient.Configuration.TLS
            switch self.tls {
            case .disable: tls = .disable
            case .require:
                var configuration = TLSConfiguration.makeClientConfiguration()
                configuration.certificateVerification = .none
                tls = .require(configuration)
            case .verifyFull: tls = .require(TLSConfiguration.makeClientConfiguration())
            }
            return PostgresClient.Configuration(host: host, port: port, username: user, password: password, database: database, tls: tls)
        }
    }
}
