// `hallmark entry create|show|update|delete`: registration entries over the admin API.

import ArgumentParser
import Foundation
import HallmarkAttestation
import HallmarkProto

struct EntryCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "entry", abstract: "Manage registration entries.",
        subcommands: [Create.self, Show.self, Update.self, Delete.self]
    )

    /// The fields of an entry; on update, only the ones given change.
    struct Fields: ParsableArguments {
        @Option(name: .customLong("spiffe-id"), help: "The SPIFFE ID the entry issues.")
        var spiffeID: String?

        @Option(name: .customLong("parent-id"), help: "The agent (or node alias) that may hold it.")
        var parentID: String?

        @Option(name: .customLong("selector"), help: "TYPE:VALUE a workload must have (repeatable; all must match).")
        var selectors: [String] = []

        @Option(name: .customLong("x509-ttl"), help: "X509-SVID TTL in seconds (0: the server default).")
        var x509TTL: Int?

        @Option(name: .customLong("jwt-ttl"), help: "JWT-SVID TTL in seconds (0: the server default).")
        var jwtTTL: Int?

        @Option(name: .customLong("dns-name"), help: "A DNS SAN for the SVID (repeatable).")
        var dnsNames: [String] = []

        @Flag(inversion: .prefixedNo, help: "Whether the SVID may use the admin API.")
        var admin: Bool?

        @Flag(inversion: .prefixedNo, help: "Whether the SVID may sign downstream.")
        var downstream: Bool?

        @Option(name: .customLong("expires-at"), help: "When the entry is removed, RFC 3339.")
        var expiresAt: String?

        @Option(help: "A label that tells a workload's SVIDs apart.")
        var hint: String?

        func apply(to entry: inout Admin_Entry) throws {
            if let spiffeID { entry.spiffeID = spiffeID }
            if let parentID { entry.parentID = parentID }
            if !selectors.isEmpty {
                entry.selectors = try selectors.map { text in
                    do {
                        let selector = try Selector(parsing: text)
                        return Admin_Selector.with {
                            $0.type = selector.type
                            $0.value = selector.value
                        }
                    } catch let error as SelectorError {
                        throw ValidationError("--selector: \(error.message)")
                    }
                }
            }
            if let x509TTL { entry.x509SvidTtl = try int32(x509TTL, "--x509-ttl") }
            if let jwtTTL { entry.jwtSvidTtl = try int32(jwtTTL, "--jwt-ttl") }
            if !dnsNames.isEmpty { entry.dnsNames = dnsNames }
            if let admin { entry.admin = admin }
            if let downstream { entry.downstream = downstream }
            if let expiresAt { entry.expiresAt = Int64(try Date(rfc3339: expiresAt, flag: "--expires-at").timeIntervalSince1970) }
            if let hint { entry.hint = hint }
        }

        private func int32(_ value: Int, _ flag: String) throws -> Int32 {
            guard let narrowed = Int32(exactly: value) else { throw ValidationError("\(flag): \(value) is out of range") }
            return narrowed
        }
    }

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Register a workload or node entry.")
        @OptionGroup var server: AdminOptions
        @OptionGroup var fields: Fields
        @Option(help: "Choose the entry's ID (default: a random UUID).")
        var id: String?
        @Option var output: OutputFormat = .text

        func run() async throws {
            var entry = Admin_Entry()
            if let id { entry.id = id }
            try fields.apply(to: &entry)
            let request = Admin_CreateEntryRequest.with { $0.entry = entry }
            let created = try await server.call("entry create") { try await $0.createEntry(request) }
            print(output == .json ? try CLIOutput.json(EntryView(created)) : EntryView(created).text)
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List entries, optionally filtered.")
        @OptionGroup var server: AdminOptions
        @Option var id: String?
        @Option(name: .customLong("spiffe-id")) var spiffeID: String?
        @Option(name: .customLong("parent-id")) var parentID: String?
        @Option(name: .customLong("selector"), help: "Only entries with this TYPE:VALUE (repeatable).") var selectors: [String] = []
        @Option var output: OutputFormat = .text

        func run() async throws {
            var request = Admin_ListEntriesRequest()
            if let id { request.id = id }
            if let spiffeID { request.spiffeID = spiffeID }
            if let parentID { request.parentID = parentID }
            request.selectors = try selectors.map { text in
                let selector: Selector
                do { selector = try Selector(parsing: text) } catch let error as SelectorError { throw ValidationError("--selector: \(error.message)") }
                return Admin_Selector.with {
                    $0.type = selector.type
                    $0.value = selector.value
                }
            }
            let request2 = request
            let response = try await server.call("entry show") { try await $0.listEntries(request2) }
            let views = response.entries.map(EntryView.init)
            if output == .json {
                print(try CLIOutput.json(views))
            } else {
                print("Found \(views.count) \(views.count == 1 ? "entry" : "entries")")
                for view in views { print("\n" + view.text) }
            }
        }
    }

    struct Update: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Change an entry; fields not given keep their values.")
        @OptionGroup var server: AdminOptions
        @Option var id: String
        @OptionGroup var fields: Fields
        @Option var output: OutputFormat = .text

        func run() async throws {
            let id = self.id
            let current = try await server.call("entry update") {
                try await $0.listEntries(Admin_ListEntriesRequest.with { $0.id = id })
            }
            guard var entry = current.entries.first else { throw CLIOutput.fail("entry update: no entry with ID \(id)") }
            try fields.apply(to: &entry)
            let request = Admin_UpdateEntryRequest.with { $0.entry = entry }
            let updated = try await server.call("entry update") { try await $0.updateEntry(request) }
            print(output == .json ? try CLIOutput.json(EntryView(updated)) : EntryView(updated).text)
        }
    }

    struct Delete: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Delete an entry.")
        @OptionGroup var server: AdminOptions
        @Option var id: String
        @Option var output: OutputFormat = .text

        func run() async throws {
            let request = Admin_DeleteEntryRequest.with { $0.id = id }
            let response = try await server.call("entry delete") { try await $0.deleteEntry(request) }
            print(output == .json ? try CLIOutput.json(EntryView(response.entry)) : "Deleted entry \(response.entry.id)")
        }
    }
}

/// An entry as the CLI shows it.
struct EntryView: Encodable {
    let id: String
    let spiffe_id: String
    let parent_id: String
    let selectors: [String]
    let x509_svid_ttl: Int32
    let jwt_svid_ttl: Int32
    let dns_names: [String]
    let admin: Bool
    let downstream: Bool
    let expires_at: Int64
    let hint: String
    let revision_number: Int64
    let created_at: Int64

    init(_ entry: Admin_Entry) {
        id = entry.id
        spiffe_id = entry.spiffeID
        parent_id = entry.parentID
        selectors = entry.selectors.map { "\($0.type):\($0.value)" }
        x509_svid_ttl = entry.x509SvidTtl
        jwt_svid_ttl = entry.jwtSvidTtl
        dns_names = entry.dnsNames
        admin = entry.admin
        downstream = entry.downstream
        expires_at = entry.expiresAt
        hint = entry.hint
        revision_number = entry.revisionNumber
        created_at = entry.createdAt
    }

    var text: String {
        var lines = [
            "Entry ID         : \(id)",
            "SPIFFE ID        : \(spiffe_id)",
            "Parent ID        : \(parent_id)",
            "Revision         : \(revision_number)",
            "X509-SVID TTL    : \(x509_svid_ttl == 0 ? "default" : "\(x509_svid_ttl)")",
            "JWT-SVID TTL     : \(jwt_svid_ttl == 0 ? "default" : "\(jwt_svid_ttl)")",
        ]
        lines += selectors.map { "Selector         : \($0)" }
        lines += dns_names.map { "DNS name         : \($0)" }
        if expires_at != 0 { lines.append("Expires at       : \(Date(timeIntervalSince1970: TimeInterval(expires_at)).rfc3339)") }
        if admin { lines.append("Admin            : true") }
        if downstream { lines.append("Downstream       : true") }
        if !hint.isEmpty { lines.append("Hint             : \(hint)") }
        return lines.joined(separator: "\n")
    }
}

extension Date {
    var rfc3339: String { formatted(Date.ISO8601FormatStyle(includingFractionalSeconds: false, timeZone: .gmt)) }
}
