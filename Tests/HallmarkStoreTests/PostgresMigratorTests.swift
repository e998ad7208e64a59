// Migrating a PostgreSQL database with the PostgreSQL client the store uses (postgres-nio), on a
// real server: a new database reaches the newest schema, a second run applies nothing, servers
// starting together migrate once, a newer schema is refused, and a migration the server refuses
// leaves nothing of itself. And the splitting of migration files into statements.

import Foundation
@testable import HallmarkStore
import HallmarkTestSupport
import Logging
import PostgresNIO
import Testing

@Suite("PostgreSQL migrator", .serialized)
struct PostgresMigratorTests {
    static let logger = Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() })

    /// Runs `body` with `count` clients (as many servers) of a new database of the test cluster.
    static func withDatabase(
        clients count: Int = 1, _ body: (TestPostgres, String, [PostgresClient]) async throws -> Void
    ) async throws {
        let postgres = try TestPostgres.shared()
        let database = try postgres.createDatabase("migrator")
        let configuration = PostgresClient.Configuration(
            unixSocketPath: "\(postgres.socketDirectory)/.s.PGSQL.5432", username: postgres.user, password: nil, database: database
        )
        let clients = (0..<count).map { _ in PostgresClient(configuration: configuration, backgroundLogger: logger) }
        try await withThrowingTaskGroup(of: Void.self) { group in
            for client in clients { group.addTask { await client.run() } }
            defer { group.cancelAll() }
            try await body(postgres, database, clients)
        }
    }

    static func rows(_ postgres: TestPostgres, _ database: String, _ sql: String) throws -> [String] {
        let result = try postgres.psql(database, sql: sql)
        #expect(result.status == 0, "\(result.stderr)")
        return result.stdout.split(separator: "\n").map(String.init)
    }

    @Test("statements split at semicolons outside comments, strings, identifiers and dollar-quoted bodies", arguments: [
        ("SELECT 1; SELECT 2;", ["SELECT 1", "SELECT 2"]),
        ("SELECT 'a;b'; SELECT 'it''s; fine'", ["SELECT 'a;b'", "SELECT 'it''s; fine'"]),
        ("-- a comment; with a semicolon\nSELECT 1;\n-- trailing comment\n", ["-- a comment; with a semicolon\nSELECT 1"]),
        ("SELECT \"odd;name\" FROM t; /* block; comment */ SELECT 2", ["SELECT \"odd;name\" FROM t", "/* block; comment */ SELECT 2"]),
        ("CREATE FUNCTION f() RETURNS int AS $$ BEGIN; RETURN 1; END; $$ LANGUAGE plpgsql; SELECT f()", ["CREATE FUNCTION f() RETURNS int AS $$ BEGIN; RETURN 1; END; $$ LANGUAGE plpgsql", "SELECT f()"]),
        ("DO $body$ BEGIN PERFORM 1; END $body$; SELECT $1", ["DO $body$ BEGIN PERFORM 1; END $body$", "SELECT $1"]),
    ])
    func split(sql: String, statements: [String]) {
        #expect(SQLStatements.split(sql) == statements)
    }

    @Test("the shipped migrations split into the statements they hold")
    func shippedSplit() {
        let counts = Migrations.postgres.map { SQLStatements.split($0.sql).count }
        // 0001: 11 tables, 4 indexes and the bundle row; 0003: a function and a trigger; 0006: a table, a function, four triggers.
        #expect(counts == [16, 1, 2, 1, 2, 6, 1, 1, 1], "\(counts)")
    }

    @Test("a new database reaches the newest schema; a second run applies nothing")
    func migrates() async throws {
        try await Self.withDatabase { postgres, database, clients in
            let pool = clients[0]
            let first = try await PostgresMigrator.migrate(pool, logger: Self.logger)
            let second = try await PostgresMigrator.migrate(pool, logger: Self.logger)
            #expect(first == Migrations.latestVersion && second == Migrations.latestVersion)
            let applied = try Self.rows(postgres, database, "SELECT count(*) FROM schema_migrations")
            #expect(applied == ["\(Migrations.latestVersion)"])
            let seeded = try Self.rows(postgres, database, "SELECT sequence FROM bundle_state")
            #expect(seeded == ["0"], "the seed row was inserted once")
        }
    }

    @Test("servers starting together migrate once: each migration applied by one, the others wait and find it done")
    func concurrent() async throws {
        try await Self.withDatabase(clients: 3) { postgres, database, clients in
            let versions = try await withThrowingTaskGroup(of: Int.self) { group in
                for pool in clients {
                    group.addTask { try await PostgresMigrator.migrate(pool, logger: Self.logger) }
                }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            #expect(versions == Array(repeating: Migrations.latestVersion, count: 3))
            let applied = try Self.rows(postgres, database, "SELECT count(*) FROM schema_migrations")
            #expect(applied == ["\(Migrations.latestVersion)"])
        }
    }

    @Test("a database written by a newer Hallmark is refused, naming both versions")
    func newerSchema() async throws {
        try await Self.withDatabase { postgres, database, clients in
            let pool = clients[0]
            _ = try await PostgresMigrator.migrate(pool, logger: Self.logger)
            _ = try Self.rows(postgres, database, "INSERT INTO schema_migrations VALUES (999, 'future', 0)")
            let refused = await #expect(throws: StoreError.self) { try await PostgresMigrator.migrate(pool, logger: Self.logger) }
            #expect(refused?.code == .newerSchema)
            #expect(refused?.message.contains("999") == true && refused?.message.contains("\(Migrations.latestVersion)") == true)
        }
    }

    @Test("a migration the server refuses is named with the server's reason, and nothing of it is kept")
    func failedMigration() async throws {
        try await Self.withDatabase { postgres, database, clients in
            let migrations = [
                Migration(version: 1, name: "0001_first.sql", sql: "CREATE TABLE first (x INTEGER);"),
                Migration(version: 2, name: "0002_broken.sql", sql: "CREATE TABLE second (x INTEGER);\nCREATE TABLE first (x INTEGER);"),
            ]
            let refused = await #expect(throws: StoreError.self) { try await PostgresMigrator.migrate(clients[0], migrations, logger: Self.logger) }
            #expect(refused?.code == .migrationFailed)
            #expect(refused?.message == #"store: migration 0002_broken.sql failed: relation "first" already exists"#, "\(refused?.message ?? "")")
            #expect(refused?.underlying != nil, "the client's error is kept as the cause")
            let versions = try Self.rows(postgres, database, "SELECT version FROM schema_migrations")
            #expect(versions == ["1"])
            let second = try Self.rows(postgres, database, "SELECT to_regclass('second') IS NULL")
            #expect(second == ["t"], "the failed migration's first table was kept")
        }
    }
}
