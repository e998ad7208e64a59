// --database as users write it: SQLite paths and PostgreSQL URLs over TCP or a Unix socket, each
// malformed one refused naming the part and the rule, a password in the URL refused; and a
// parsed socket URL reaching the real test cluster.

import Foundation
import HallmarkStore
import HallmarkTestSupport
import Logging
import PostgresNIO
import Testing

@Suite("database URLs")
struct DatabaseURLTests {
    @Test("accepted forms, with TLS checked by default over the network", arguments: [
        ("sqlite:/var/lib/hallmark/hallmark.db", "sqlite:/var/lib/hallmark/hallmark.db"),
        ("postgres://hallmark@db.example:6432/authority?sslmode=require", "postgres://hallmark@db.example:6432/authority?sslmode=require"),
        ("postgresql://hallmark@db.example/authority", "postgres://hallmark@db.example:5432/authority?sslmode=verify-full"),
        ("postgres://hallmark@10.0.0.7/authority?sslmode=disable", "postgres://hallmark@10.0.0.7:5432/authority?sslmode=disable"),
        ("postgres://hallmark@/authority?host=/run/postgresql", "postgres://hallmark@:5432/authority?host=/run/postgresql"),
    ])
    func accepted(text: String, normalised: String) throws {
        #expect(try DatabaseURL(parsing: text).description == normalised)
    }

    @Test("refusals name the part and the rule", arguments: [
        ("mysql://u@h/d", "--database: the scheme 'mysql' is not sqlite or postgres"),
        ("postgres://u:secret@h/d", "--database: a password does not belong in the URL"),
        ("postgres://h/d", "--database: the user is missing"),
        ("postgres://u@h/", "--database: the database name is missing"),
        ("postgres://u@h/d/e", "--database: the database name is missing or has a '/'"),
        ("postgres://u@h/d?sslmode=prefer", "--database: sslmode 'prefer' is not one of disable, require, verify-full"),
        ("postgres://u@h/d?connect_timeout=5", "--database: the parameter 'connect_timeout' is not understood"),
        ("postgres://u@/d", "--database: the host is missing"),
        ("postgres://u@h/d?host=/run/postgresql", "--database: give a host name or host=/socket/directory, not both"),
        ("postgres://u@/d?host=run", "--database: host= must be the absolute path"),
        ("postgres://u@/d?host=/run&sslmode=require", "--database: a Unix socket takes no TLS"),
        ("sqlite:", "--database: sqlite: needs the database file's path"),
        ("hallmark.db", "--database: 'hallmark.db' is not sqlite:PATH or postgres://"),
    ])
    func refused(text: String, message: String) {
        let error = #expect(throws: StoreError.self) { try DatabaseURL(parsing: text) }
        #expect(error?.code == .invalidURL)
        #expect(error?.message.hasPrefix(message) == true, "\(text): \(error?.message ?? "")")
        #expect(error?.message.contains("secret") == false, "the refusal repeats a password")
    }

    @Test("a parsed socket URL reaches the real server")
    func connects() async throws {
        let postgres = try TestPostgres.shared()
        let database = try postgres.createDatabase("url")
        guard case .postgres(let settings) = try DatabaseURL(parsing: "postgres://\(postgres.user)@/\(database)?host=\(postgres.socketDirectory)") else {
            Issue.record("not a PostgreSQL URL")
            return
        }
        let client = PostgresClient(configuration: try settings.clientConfiguration(password: nil), backgroundLogger: Logger(label: "test"))
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { await client.run() }
            defer { group.cancelAll() }
            var answers: [String] = []
            for try await name in try await client.query("SELECT current_database()").decode(String.self) { answers.append(name) }
            #expect(answers == [database])
        }
    }
}
