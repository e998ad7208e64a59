// The workload's commands, over the Workload API: svid fetch and watch, jwt fetch and validate, healthcheck.

import ArgumentParser
import Foundation
import GRPCCore
import SPIFFE
import SPIFFEWorkloadAPI

/// --socket PATH, else SPIFFE_ENDPOINT_SOCKET.
struct WorkloadOptions: ParsableArguments {
    @Option(help: "The Workload API socket (default: $SPIFFE_ENDPOINT_SOCKET).")
    var socket: String?

    func client() throws -> WorkloadAPIClient {
        do {
            return try socket.map { try WorkloadAPIClient(endpoint: $0) } ?? WorkloadAPIClient.fromEnvironment()
        } catch let error as WorkloadAPIClientError {
            throw ValidationError("--socket: \(error.message)")
        }
    }

    /// Runs `body`; Workload API failures become one line on stderr and exit 1.
    func call<T>(_ command: String, _ body: (WorkloadAPIClient) async throws -> T) async throws -> T {
        let client = try client()
        do {
            return try await body(client)
        } catch let error as RPCError {
            let hint = error.code == .permissionDenied ? " (no registration entry matches this process)" : ""
            throw CLIOutput.fail("\(command): \(error.code): \(error.message)\(hint)")
        } catch let error as WorkloadAPIClientError {
            throw CLIOutput.fail("\(command): \(error.message)")
        } catch let error as SPIFFEError {
            throw CLIOutput.fail("\(command): \(error.message)")
        }
    }
}

struct SVIDFetch: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "fetch", abstract: "Fetch this process's X509-SVIDs from the agent.")
    @OptionGroup var workload: WorkloadOptions
    @Option(help: "Write the default SVID as svid.pem, svid.key (0600) and bundle.pem here.") var write: String?
    @Option var output: OutputFormat = .text

    func run() async throws {
        let context = try await workload.call("svid fetch") { try await $0.fetchX509Context() }
        guard let svid = context.defaultSVID else { throw CLIOutput.fail("svid fetch: the agent returned no SVID") }
        let bundle = try context.bundles.x509Bundle(for: svid.id.trustDomain)
        if let write {
            try CLIOutput.writeFiles([("svid.pem", svid.chainPEM, 0o644), ("svid.key", try svid.privateKeyPEM(), 0o600), ("bundle.pem", bundle.pem, 0o644)], to: write, flag: "--write")
        }
        let verified = try? await X509SVIDVerifier(bundles: context.bundles).verify(svid.certificates)
        if output == .json {
            struct View: Encodable { let spiffe_id: String; let hint: String; let expires_at: String; let verified: Bool }
            print(try CLIOutput.json(context.svids.map { View(spiffe_id: $0.id.description, hint: $0.hint, expires_at: $0.expiresAt.rfc3339, verified: verified != nil || $0.id != svid.id) }))
        } else {
            for item in context.svids {
                print("SPIFFE ID: \(item.id)\(item.hint.isEmpty ? "" : " (hint \(item.hint))")")
                print("Expires:   \(item.expiresAt.rfc3339)")
            }
            print("Verified against the bundle: \(verified != nil ? "yes" : "NO")")
            if let write { print("Wrote svid.pem, svid.key and bundle.pem to \(write)") }
        }
    }
}

struct SVIDWatch: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "watch", abstract: "Print every X509-SVID update the agent sends.")
    @OptionGroup var workload: WorkloadOptions
    @Option(help: "Stop after this many updates (default: run until interrupted).") var count: Int?

    func run() async throws {
        let limit = count
        let seen = Counter()
        try await workload.call("svid watch") { client in
            try await client.watchX509Contexts { context in
                let line = context.svids.map { "\($0.id) expires \($0.expiresAt.rfc3339) serial \($0.leaf.serialNumber)" }.joined(separator: "; ")
                // Unbuffered, so that a reader of a pipe sees each update as it comes.
                FileHandle.standardOutput.write(Data("\(Date().rfc3339) \(line)\n".utf8))
                return limit.map { seen.increment() < $0 } ?? true
            }
        }
    }
}

final class Counter: @unchecked Sendable {
    private let lock = NSLock()
    private var value = 0
    func increment() -> Int { lock.withLock { value += 1; return value } }
}

struct JWTFetch: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "fetch", abstract: "Fetch JWT-SVIDs for an audience from the agent.")
    @OptionGroup var workload: WorkloadOptions
    @Option(help: "The audience (repeatable).") var audience: [String] = []
    @Option(name: .customLong("spiffe-id"), help: "Only this identity's.") var spiffeID: String?
    @Option var output: OutputFormat = .text

    func run() async throws {
        guard !audience.isEmpty else { throw ValidationError("--audience is required") }
        let id = try spiffeID.map { text -> SPIFFEID in
            do { return try SPIFFEID(parsing: text) } catch let error as SPIFFEError { throw ValidationError("--spiffe-id: \(error.message)") }
        }
        let audience = self.audience
        let svids = try await workload.call("jwt fetch") { try await $0.fetchJWTSVIDs(audience: audience, spiffeID: id) }
        if output == .json {
            print(try CLIOutput.json(svids.map { ["spiffe_id": $0.spiffeID.description, "token": $0.token, "hint": $0.hint] }))
        } else {
            for svid in svids { print(svid.token) }
        }
    }
}

struct JWTValidate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "validate", abstract: "Have the agent validate a JWT-SVID.")
    @OptionGroup var workload: WorkloadOptions
    @Option var audience: String
    @Option var token: String

    func run() async throws {
        let (audience, token) = (self.audience, self.token)
        let id = try await workload.call("jwt validate") { try await $0.validateJWTSVID(token, audience: audience) }
        print("valid: \(id)")
    }
}

struct Healthcheck: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "healthcheck", abstract: "Exit 0 if the agent's Workload API answers.")
    @OptionGroup var workload: WorkloadOptions

    func run() async throws {
        let client = try workload.client()
        do {
            _ = try await client.fetchX509Context()
            print("agent is healthy")
        } catch let error as RPCError where error.code == .permissionDenied {
            // The agent answered; this process simply has no identity.
            print("agent is healthy")
        } catch {
            throw CLIOutput.fail("healthcheck: the agent at \(client.socketPath) does not answer: \(error)")
        }
    }
}
