// Brings a PostgreSQL database to the newest schema this binary knows (Schemas/sql/postgres), as
// SQLiteStore does for its file: each migration in its own transaction with its row in
// schema_migrations, a database newer than this binary refused. Several servers start against one
// database, so the whole check-and-apply runs under a session advisory lock: the first migrates,
// the others wait and then find nothing to do.

import Foundation
public import Logging
public import PostgresNIO

public enum PostgresMigrator {
    /// The advisory lock that serialises migrations: "hallmark" in ASCII.
    static let lockKey: Int64 = 0x6861_6c6c_6d61_726b

    /// Migrates the database `client` connects to.
    ///
    /// - Returns: the schema version it is at now.
    /// - Throws: ``StoreError`` with `newerSchema` when a newer Hallmark wrote it, `migrationFailed`
    ///   (naming the migration and the server's reason) when one could not be applied; nothing of
    ///   that migration is kept.
    public static func migrate(_ client: PostgresClient, logger: Logger) async throws -> Int {
        try await migrate(client, Migrations.postgres, logger: logger)
    }

    static func migrate(_ client: PostgresClient, _ migrations: [Migration], logger: Logger) async throws -> Int {
        try await client.withConnection { connection in
            _ = try await connection.query("SELECT pg_advisory_lock(\(lockKey))", logger: logger)
            do {
                let version = try await apply(migrations, connection, logger)
                _ = try await connection.query("SELECT pg_advisory_unlock(\(lockKey))", logger: logger)
                return version
            } catch {
                _ = try? await connection.query("SELECT pg_advisory_unlock(\(lockKey))", logger: logger)
                throw error
            }
        }
    }

    private static func apply(_ migrations: [Migration], _ connection: PostgresConnection, _ logger: Logger) async throws -> Int {
        _ = try await connection.query(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)",
            logger: logger
        )
        var current = 0
        for try await version in try await connection.query("SELECT COALESCE(MAX(version), 0) FROM schema_migrations", logger: logger).decode(Int.self) {
            current = version
        }
        let latest = migrations.map(\.version).max() ?? 0
        guard current <= latest else {
            throw StoreError(
                .newerSchema,
                "store: the database is at schema version \(current), newer than the \(latest) this Hallmark knows; run a newer Hallmark"
            )
        }
        for migration in migrations.sorted(by: { $0.version < $1.version }) where migration.version > current {
            do {
                try await connection.withTransaction(logger: logger) { transaction in
                    for statement in SQLStatements.split(migration.sql) {
                        _ = try await transaction.query(PostgresQuery(unsafeSQL: statement), logger: logger)
                    }
                    let now = Int64(Date().timeIntervalSince1970)
                    _ = try await transaction.query(
                        "INSERT INTO schema_migrations (version, name, applied_at) VALUES (\(migration.version), \(migration.name), \(now))",
                        logger: logger
                    )
                }
            } catch {
                throw StoreError(.migrationFailed, "store: migration \(migration.name) failed: \(Self.reason(error))", underlying: error)
            }
            logger.info("applied database migration", metadata: ["migration": "\(migration.name)"])
            current = migration.version
        }
        return current
    }

    /// The server's own words for a failure, when it gave any.
    static func reason(_ error: any Error) -> String {
        let psql = (error as? PostgresTransactionError).flatMap { $0.closureError ?? $0.commitError } ?? error
        if let psql = psql as? PSQLError, let message = psql.serverInfo?[.message] {
            return message
        }
        return "\(psql)"
    }
}

/// Splitting a migration file into the statements it holds: the extended query protocol takes one
/// statement at a time.
enum SQLStatements {
    /// The statements of `sql`, split at the semicolons outside comments, quoted strings, quoted
    /// identifiers and dollar-quoted bodies (`$$ … $$`, `$tag$ … $tag$`); empty ones dropped.
    static func split(_ sql: String) -> [String] {
        let text = Array(sql.unicodeScalars)
        var statements: [String] = []
        var current = String.UnicodeScalarView()
        var index = 0
        func finish() {
            let statement = String(current).trimmingCharacters(in: .whitespacesAndNewlines)
            if !statement.isEmpty && !Self.onlyComments(statement) { statements.append(statement) }
            current = String.UnicodeScalarView()
        }
        /// Copies text up to and including `closing`, from `index`.
        func copy(through closing: [Unicode.Scalar]) {
            while index < text.count {
                if text[index...].starts(with: closing) {
                    current.append(contentsOf: closing)
                    index += closing.count
                    return
                }
                current.append(text[index])
                index += 1
            }
        }
        while index < text.count {
            let scalar = text[index]
            if scalar == "-", index + 1 < text.count, text[index + 1] == "-" {
                copy(through: ["\n"])
            } else if scalar == "/", index + 1 < text.count, text[index + 1] == "*" {
                current.append(contentsOf: ["/", "*"])
                index += 2
                copy(through: ["*", "/"])
            } else if scalar == "'" || scalar == "\"" {
                // A doubled quote inside is two quoted runs back to back: the same text.
                current.append(scalar)
                index += 1
                copy(through: [scalar])
            } else if scalar == "$", let tag = Self.dollarTag(text, at: index) {
                current.append(contentsOf: tag)
                index += tag.count
                copy(through: tag)
            } else if scalar == ";" {
                index += 1
                finish()
            } else {
                current.append(scalar)
                index += 1
            }
        }
        finish()
        return statements
    }

    /// The dollar-quote tag that starts at `index` (`$$` or `$name$`), if one does.
    private static func dollarTag(_ text: [Unicode.Scalar], at index: Int) -> [Unicode.Scalar]? {
        var end = index + 1
        while end < text.count, text[end] == "_" || text[end].properties.isAlphabetic || (end > index + 1 && ("0"..."9").contains(text[end])) {
            end += 1
        }
        guard end < text.count, text[end] == "$" else { return nil }
        return Array(text[index...end])
    }

    private static func onlyComments(_ statement: String) -> Bool {
        statement.split(separator: "\n").allSatisfy { $0.trimmingCharacters(in: .whitespaces).hasPrefix("--") || $0.trimmingCharacters(in: .whitespaces).isEmpty }
    }
}
