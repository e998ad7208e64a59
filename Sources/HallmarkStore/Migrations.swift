// Numbered SQL migrations (Schemas/sql/NNNN_name.sql), applied in order and recorded in
// schema_migrations; a database newer than this binary knows is refused.

struct Migration: Sendable {
    let version: Int
    let name: String
    let sql: String
}

enum Migrations {
    /// The newest schema this binary knows.
    static var latestVersion: Int { embedded.map(\.version).max() ?? 0 }
}
