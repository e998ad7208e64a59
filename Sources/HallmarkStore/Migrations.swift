// Numbered SQL migrations (Schemas/sql/DIALECT/NNNN_name.sql), one directory per database and
// numbered the same in each, applied in order and recorded in schema_migrations; a database newer
// than this binary knows is refused.

struct Migration: Sendable {
    let version: Int
    let name: String
    let sql: String
}

enum Migrations {
    enum Dialect: String, CaseIterable, Sendable {
        case sqlite, postgres
    }

    static func embedded(_ dialect: Dialect) -> [Migration] {
        switch dialect {
        case .sqlite: sqlite
        case .postgres: postgres
        }
    }

    /// The newest schema this binary knows (the same in every dialect).
    static var latestVersion: Int { sqlite.map(\.version).max() ?? 0 }
}
