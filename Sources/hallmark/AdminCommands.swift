// The smaller admin commands: token, agent list/show/evict/ban/unban, bundle, authority, x509 and jwt mint, audit.

import ArgumentParser
import Crypto
import Foundation
import GRPCNIOTransportHTTP2
import HallmarkAttestation
import HallmarkProto
import HallmarkStore
import SPIFFE
import SwiftASN1
import X509

struct TokenCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "token", abstract: "Join tokens.", subcommands: [Generate.self])

    struct Generate: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Make a single-use join token for an agent.")
        @OptionGroup var server: AdminOptions
        @Option(name: .customLong("spiffe-id"), help: "An ID the agent that redeems the token is also known as.")
        var spiffeID: String?
        @Option(help: "Seconds the token is valid (default 600).")
        var ttl: Int32?
        @Option var output: OutputFormat = .text

        func run() async throws {
            let request = Admin_CreateJoinTokenRequest.with {
                $0.spiffeID = spiffeID ?? ""
                $0.ttlSeconds = ttl ?? 0
            }
            let token = try await server.call("token generate") { try await $0.createJoinToken(request) }
            if output == .json {
                print(try CLIOutput.json([
                    "token": token.token, "id": token.id, "spiffe_id": token.spiffeID,
                    "expires_at": Date(timeIntervalSince1970: TimeInterval(token.expiresAt)).rfc3339,
                ]))
            } else {
                print("Token: \(token.token)")
            }
        }
    }
}

struct AgentAdmin {
    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List attested agents.")
        @OptionGroup var server: AdminOptions
        @Option var output: OutputFormat = .text

        func run() async throws {
            let response = try await server.call("agent list") { try await $0.listAgents(Admin_ListAgentsRequest()) }
            let views = response.agents.map(AgentView.init)
            if output == .json {
                print(try CLIOutput.json(views))
            } else {
                print("Found \(views.count) attested \(views.count == 1 ? "agent" : "agents")")
                for view in views { print("\n" + view.text) }
            }
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show one attested agent.")
        @OptionGroup var server: AdminOptions
        @Option(name: .customLong("spiffe-id")) var spiffeID: String
        @Option var output: OutputFormat = .text

        func run() async throws {
            let request = Admin_GetAgentRequest.with { $0.spiffeID = spiffeID }
            let agent = try await server.call("agent show") { try await $0.getAgent(request) }
            print(output == .json ? try CLIOutput.json(AgentView(agent)) : AgentView(agent).text)
        }
    }

    struct Evict: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Remove an attested agent: its calls fail at once, its workloads lose their SVIDs, and it must attest again."
        )
        @OptionGroup var server: AdminOptions
        @Option(name: .customLong("spiffe-id")) var spiffeID: String

        func run() async throws {
            let request = Admin_EvictAgentRequest.with { $0.spiffeID = spiffeID }
            let agent = try await server.call("agent evict") { try await $0.evictAgent(request) }
            print("Agent evicted: \(agent.spiffeID)")
        }
    }

    struct Ban: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Ban an agent: as evict, and re-attestation is refused until it is unbanned."
        )
        @OptionGroup var server: AdminOptions
        @Option(name: .customLong("spiffe-id")) var spiffeID: String

        func run() async throws {
            let request = Admin_BanAgentRequest.with { $0.spiffeID = spiffeID }
            let agent = try await server.call("agent ban") { try await $0.banAgent(request) }
            print("Agent banned: \(agent.spiffeID)")
        }
    }

    struct Unban: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Lift a ban; the agent must still attest again.")
        @OptionGroup var server: AdminOptions
        @Option(name: .customLong("spiffe-id")) var spiffeID: String

        func run() async throws {
            let request = Admin_UnbanAgentRequest.with { $0.spiffeID = spiffeID }
            let agent = try await server.call("agent unban") { try await $0.unbanAgent(request) }
            print("Agent unbanned: \(agent.spiffeID)")
        }
    }
}

struct AgentView: Encodable {
    let spiffe_id: String
    let attestation_type: String
    let selectors: [String]
    let serial_number: String
    let expires_at: Int64
    let attested_at: Int64
    let evidence_at: Int64
    let banned: Bool

    init(_ agent: Admin_Agent) {
        spiffe_id = agent.spiffeID
        attestation_type = agent.attestationType
        selectors = agent.selectors.map { "\($0.type):\($0.value)" }
        serial_number = agent.serialNumber
        expires_at = agent.expiresAt
        attested_at = agent.attestedAt
        evidence_at = agent.evidenceAt
        banned = agent.banned
    }

    var text: String {
        ([
            "SPIFFE ID        : \(spiffe_id)",
            "Attestation type : \(attestation_type)",
            "Expires at       : \(Date(timeIntervalSince1970: TimeInterval(expires_at)).rfc3339)",
            "Evidence at      : \(Date(timeIntervalSince1970: TimeInterval(evidence_at)).rfc3339)",
            "Banned           : \(banned)",
        ] + selectors.map { "Selector         : \($0)" }).joined(separator: "\n")
    }
}

struct BundleCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "bundle", abstract: "The trust bundle.", subcommands: [Show.self])

    enum Format: String, ExpressibleByArgument, CaseIterable { case pem, spiffe }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Print the trust domain's bundle.")
        @OptionGroup var server: AdminOptions
        @Option(help: "pem (CA certificates) or spiffe (the SPIFFE bundle, a JWK Set).")
        var format: Format = .pem

        func run() async throws {
            let bundle = try await server.call("bundle show") { try await $0.getBundle(Admin_GetBundleRequest()) }
            switch format {
            case .pem: print(bundle.x509Pem, terminator: "")
            case .spiffe: print(String(decoding: bundle.spiffeJwks, as: UTF8.self))
            }
        }
    }
}

struct AuthorityCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "authority", abstract: "The CA keys: show them, rotate them early, taint and revoke them.",
        subcommands: [X509.self, JWT.self]
    )

    struct X509: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "x509", abstract: "X.509 authorities.",
            subcommands: [Show.self, Prepare.self, Activate.self, Taint.self, Revoke.self]
        )
        struct Show: AuthorityShow { static let kind = "x509"; @OptionGroup var options: AuthorityOptions }
        struct Prepare: AuthorityPrepare { static let kind = "x509"; @OptionGroup var options: AuthorityOptions }
        struct Activate: AuthorityActivate { static let kind = "x509"; @OptionGroup var options: AuthorityOptions }
        struct Taint: AuthorityTaint { static let kind = "x509"; @OptionGroup var options: AuthorityOptions }
        struct Revoke: AuthorityRevoke {
            static let kind = "x509"
            @OptionGroup var options: AuthorityOptions
            @Flag(help: "Revoke even while attested nodes still hold an agent SVID from the key: they are cut off.") var force = false
        }
    }

    struct JWT: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "jwt", abstract: "JWT authorities.",
            subcommands: [Show.self, Prepare.self, Activate.self, Taint.self, Revoke.self]
        )
        struct Show: AuthorityShow { static let kind = "jwt"; @OptionGroup var options: AuthorityOptions }
        struct Prepare: AuthorityPrepare { static let kind = "jwt"; @OptionGroup var options: AuthorityOptions }
        struct Activate: AuthorityActivate { static let kind = "jwt"; @OptionGroup var options: AuthorityOptions }
        struct Taint: AuthorityTaint { static let kind = "jwt"; @OptionGroup var options: AuthorityOptions }
        struct Revoke: AuthorityRevoke {
            static let kind = "jwt"
            @OptionGroup var options: AuthorityOptions
            @Flag(help: "Revoke even while attested nodes still depend on the key.") var force = false
        }
    }
}

/// What every `authority KIND …` command takes; `--authority-id` is required by taint and revoke.
struct AuthorityOptions: ParsableArguments {
    @OptionGroup var server: AdminOptions
    @Option(name: .customLong("authority-id"), help: "The authority, as `show` lists it (activate: defaults to the prepared one).")
    var authorityID: String?
    @Option var output: OutputFormat = .text

    func requiredID(_ command: String) throws -> String {
        guard let authorityID, !authorityID.isEmpty else { throw ValidationError("\(command): --authority-id is required") }
        return authorityID
    }
}

typealias AdminClient = Admin_Admin.Client<HTTP2ClientTransport.Posix>

/// One `authority KIND …` command; the kind comes from the concrete type.
protocol AuthorityStep: AsyncParsableCommand, Sendable {
    static var kind: String { get }
    static var step: String { get }
    static var summary: String { get }
    var options: AuthorityOptions { get }
    func call(_ client: AdminClient) async throws -> Admin_Authority
}

extension AuthorityStep {
    static var configuration: CommandConfiguration { CommandConfiguration(commandName: step, abstract: summary) }

    func run() async throws {
        let authority = try await options.server.call("authority \(Self.kind) \(Self.step)") { try await call($0) }
        try AuthorityView(authority).print(options.output)
    }
}

protocol AuthorityShow: AsyncParsableCommand {
    static var kind: String { get }
    var options: AuthorityOptions { get }
}

extension AuthorityShow {
    static var configuration: CommandConfiguration { CommandConfiguration(commandName: "show", abstract: "List the authorities and their states.") }

    func run() async throws {
        let request = Admin_ListAuthoritiesRequest.with { $0.kind = Self.kind }
        let response = try await options.server.call("authority \(Self.kind) show") { try await $0.listAuthorities(request) }
        let views = response.authorities.map(AuthorityView.init)
        if options.output == .json {
            print(try CLIOutput.json(views))
        } else {
            for view in views { print(view.text) }
        }
    }
}

protocol AuthorityPrepare: AuthorityStep {}
extension AuthorityPrepare {
    static var step: String { "prepare" }
    static var summary: String { "Make the next key now; it is published in the bundle and signs nothing until activated." }
    func call(_ client: AdminClient) async throws -> Admin_Authority {
        try await client.prepareAuthority(Admin_PrepareAuthorityRequest.with { $0.kind = Self.kind })
    }
}

protocol AuthorityActivate: AuthorityStep {}
extension AuthorityActivate {
    static var step: String { "activate" }
    static var summary: String { "Make the prepared key the one that signs; the active one becomes old." }
    func call(_ client: AdminClient) async throws -> Admin_Authority {
        let id = options.authorityID ?? ""
        return try await client.activateAuthority(Admin_ActivateAuthorityRequest.with {
            $0.kind = Self.kind
            $0.authorityID = id
        })
    }
}

protocol AuthorityTaint: AuthorityStep {}
extension AuthorityTaint {
    static var step: String { "taint" }
    static var summary: String { "Mark an old key tainted: agents replace every SVID that chains to it." }
    func call(_ client: AdminClient) async throws -> Admin_Authority {
        let id = try options.requiredID("authority \(Self.kind) taint")
        return try await client.taintAuthority(Admin_TaintAuthorityRequest.with {
            $0.kind = Self.kind
            $0.authorityID = id
        })
    }
}

protocol AuthorityRevoke: AuthorityStep {
    var force: Bool { get }
}
extension AuthorityRevoke {
    static var step: String { "revoke" }
    static var summary: String {
        "Remove a tainted key from the bundle: nothing it signed validates any more. Refused while nodes still depend on it, unless --force."
    }
    func call(_ client: AdminClient) async throws -> Admin_Authority {
        let id = try options.requiredID("authority \(Self.kind) revoke")
        return try await client.revokeAuthority(Admin_RevokeAuthorityRequest.with {
            $0.kind = Self.kind
            $0.authorityID = id
            $0.force = force
        })
    }
}

struct AuthorityView: Encodable {
    let authority_id: String
    let kind: String
    let state: String
    let not_before: String
    let not_after: String
    let upstream_signed: Bool
    /// Attested nodes that still depend on this key (their agent SVID, their workloads' X509-SVIDs,
    /// or unexpired JWT-SVIDs): revoking it now would cut them off.
    let dependent_nodes: Int

    init(_ authority: Admin_Authority) {
        authority_id = authority.authorityID
        kind = authority.kind
        state = authority.state
        not_before = Date(timeIntervalSince1970: TimeInterval(authority.notBefore)).rfc3339
        not_after = Date(timeIntervalSince1970: TimeInterval(authority.notAfter)).rfc3339
        upstream_signed = authority.upstreamSigned
        dependent_nodes = Int(authority.dependentNodes)
    }

    var text: String {
        "\(state.padding(toLength: 9, withPad: " ", startingAt: 0)) \(authority_id)  expires \(not_after)"
            + "  nodes \(dependent_nodes)"
    }

    func print(_ output: OutputFormat) throws {
        Swift.print(output == .json ? try CLIOutput.json(self) : text)
    }
}

struct X509Command: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "x509", abstract: "X509-SVIDs minted by the server.", subcommands: [Mint.self])

    struct Mint: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Mint an X509-SVID (the key is made here and never leaves this process unasked).")
        @OptionGroup var server: AdminOptions
        @Option(name: .customLong("spiffe-id")) var spiffeID: String
        @Option(help: "TTL in seconds (default: the server's X509-SVID default).") var ttl: Int32?
        @Option(name: .customLong("dns-name"), help: "A DNS SAN (repeatable).") var dnsNames: [String] = []
        @Option(help: "Write svid.pem, svid.key and bundle.pem into this directory.") var write: String?
        @Option var output: OutputFormat = .text

        func run() async throws {
            let svidRequest = try SVIDRequest()
            let key = svidRequest.privateKey
            let request = Admin_MintX509SVIDRequest.with {
                $0.spiffeID = spiffeID
                $0.csr = Data(svidRequest.csr)
                $0.ttlSeconds = ttl ?? 0
                $0.dnsNames = dnsNames
            }
            let response = try await server.call("x509 mint") { try await $0.mintX509SVID(request) }
            let chain = try response.chain.map { try Certificate(derEncoded: Array($0)) }
            let bundle = try response.bundle.map { try Certificate(derEncoded: Array($0)) }
            let svid = try X509SVID(certificates: chain, privateKey: key)
            let files = [
                ("svid.pem", svid.chainPEM, 0o644), ("svid.key", try svid.privateKeyPEM(), 0o600),
                ("bundle.pem", X509Bundle(trustDomain: svid.id.trustDomain, authorities: bundle).pem, 0o644),
            ]
            if let write { try CLIOutput.writeFiles(files, to: write, flag: "--write") }
            if output == .json {
                var report = ["spiffe_id": svid.id.description, "expires_at": svid.expiresAt.rfc3339]
                if let write { report["written_to"] = write } else { report["svid_pem"] = files[0].1; report["key_pem"] = files[1].1; report["bundle_pem"] = files[2].1 }
                print(try CLIOutput.json(report))
            } else if let write {
                print("Wrote svid.pem, svid.key and bundle.pem for \(svid.id) to \(write) (expires \(svid.expiresAt.rfc3339))")
            } else {
                print("X509-SVID:\n\(files[0].1)\nPrivate key:\n\(files[1].1)\nRoot CAs:\n\(files[2].1)")
            }
        }
    }
}

struct JWTCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "jwt", abstract: "JWT-SVIDs.", subcommands: [Mint.self, JWTFetch.self, JWTValidate.self])

    struct Mint: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Mint a JWT-SVID.")
        @OptionGroup var server: AdminOptions
        @Option(name: .customLong("spiffe-id")) var spiffeID: String
        @Option(help: "An audience (repeatable).") var audience: [String] = []
        @Option(help: "TTL in seconds (default: the server's JWT-SVID default).") var ttl: Int32?
        @Option var output: OutputFormat = .text

        func run() async throws {
            let request = Admin_MintJWTSVIDRequest.with {
                $0.spiffeID = spiffeID
                $0.audience = audience
                $0.ttlSeconds = ttl ?? 0
            }
            let response = try await server.call("jwt mint") { try await $0.mintJWTSVID(request) }
            if output == .json {
                print(try CLIOutput.json(["token": response.token, "expires_at": Date(timeIntervalSince1970: TimeInterval(response.expiresAt)).rfc3339]))
            } else {
                print(response.token)
            }
        }
    }
}

struct AuditCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "audit", abstract: "The hash-chained audit log and its signed checkpoints.", subcommands: [Show.self, Verify.self, Export.self]
    )

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Print audit records.")
        @OptionGroup var server: AdminOptions
        @Option(help: "Only records after this sequence number.") var after: Int64 = 0
        @Option(help: "At most this many records.") var limit: Int32 = 1000
        @Option var output: OutputFormat = .text

        func run() async throws {
            let request = Admin_ListAuditRequest.with {
                $0.afterSequence = after
                $0.limit = limit
            }
            let response = try await server.call("audit show") { try await $0.listAudit(request) }
            struct View: Encodable {
                let sequence: Int64, time: String, actor: String, caller_uid: Int64, action: String, target: String, result: String, detail: String
                let hash: String
            }
            let views = response.records.map {
                View(
                    sequence: $0.sequence, time: Date(timeIntervalSince1970: TimeInterval($0.time) / 1000).rfc3339,
                    actor: AuditActor(stored: $0.actor.isEmpty ? nil : $0.actor, callerUID: $0.callerUid).description, caller_uid: $0.callerUid,
                    action: $0.action, target: $0.target, result: $0.result, detail: $0.detail, hash: $0.hash
                )
            }
            if output == .json {
                print(try CLIOutput.json(views))
            } else {
                for view in views {
                    print("\(view.sequence)\t\(view.time)\t\(view.actor)\t\(view.action)\t\(view.target)\t\(view.result)\t\(view.detail)")
                }
            }
        }
    }

    struct Export: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Write every audit record and signed checkpoint as JSON lines, for checking with openssl alone (docs/SECURITY.md).",
            discussion: """
                Lines: one {"type":"key"} with the checkpoint key's public PEM; each {"type":"record"} with its fields, \
                previous_hash and hash (hex) and "hashed", the exact bytes its hash covers (base64); each {"type":"checkpoint"} \
                with "message" (base64) and its ECDSA P-256 SHA-256 "signature" (DER, base64).
                """
        )
        @OptionGroup var server: AdminOptions

        func run() async throws {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
            func line(_ value: some Encodable) throws { print(String(decoding: try encoder.encode(value), as: UTF8.self)) }
            let checkpoints = try await server.call("audit export") { try await $0.listAuditCheckpoints(Admin_ListAuditCheckpointsRequest()) }
            struct Key: Encodable { let type = "key", public_key_pem: String }
            try line(Key(public_key_pem: checkpoints.publicKeyPem))
            struct Record: Encodable {
                let type = "record", sequence: Int64, time_ms: Int64, caller_uid: Int64, actor: String?, action: String, target: String, result: String
                let detail: String
                let previous_hash: String, hash: String, hashed: String
            }
            var after: Int64 = 0
            var previous = AuditChain.genesis
            while true {
                let request = Admin_ListAuditRequest.with {
                    $0.afterSequence = after
                    $0.limit = 10_000
                }
                let page = try await server.call("audit export") { try await $0.listAudit(request) }.records
                for record in page {
                    let event = AuditEvent(
                        time: Date(timeIntervalSince1970: TimeInterval(record.time) / 1000),
                        actor: AuditActor(stored: record.actor.isEmpty ? nil : record.actor, callerUID: record.callerUid), action: record.action,
                        target: record.target, result: record.result, detail: record.detail
                    )
                    let preimage = AuditChain.preimage(sequence: record.sequence, event: event, previousHash: previous)
                    try line(Record(
                        sequence: record.sequence, time_ms: record.time, caller_uid: record.callerUid, actor: event.actor.stored, action: record.action, target: record.target,
                        result: record.result, detail: record.detail, previous_hash: Hex.encode(previous), hash: record.hash,
                        hashed: Data(preimage).base64EncodedString()
                    ))
                    previous = Hex.decode(record.hash) ?? []
                    after = record.sequence
                }
                if page.count < 10_000 { break }
            }
            struct Checkpoint: Encodable { let type = "checkpoint", sequence: Int64, head_hash: String, time_ms: Int64, key_id: String, message: String, signature: String }
            for checkpoint in checkpoints.checkpoints {
                let value = AuditCheckpoint(
                    sequence: checkpoint.sequence, headHash: Array(checkpoint.headHash), timeMS: checkpoint.timeMs, signature: Array(checkpoint.signature),
                    keyID: checkpoint.keyID
                )
                try line(Checkpoint(
                    sequence: value.sequence, head_hash: Hex.encode(value.headHash), time_ms: value.timeMS, key_id: value.keyID,
                    message: Data(value.message).base64EncodedString(), signature: Data(value.signature).base64EncodedString()
                ))
            }
        }
    }

    struct Verify: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Check the audit log's hash chain and its signed checkpoints; exits 1 naming a rewritten chain, a truncation or a missing checkpoint key."
        )
        @OptionGroup var server: AdminOptions
        @Option var output: OutputFormat = .text

        func run() async throws {
            let response = try await server.call("audit verify") { try await $0.verifyAudit(Admin_VerifyAuditRequest()) }
            if output == .json {
                struct View: Encodable { let intact: Bool, records: Int64, first_bad_sequence: Int64?, reason: String? }
                print(try CLIOutput.json(View(
                    intact: response.intact, records: response.records,
                    first_bad_sequence: response.intact ? nil : response.firstBadSequence, reason: response.intact ? nil : response.reason
                )))
            } else if response.intact {
                print("audit log intact: \(response.records) records")
            }
            if !response.intact {
                if output == .text { FileHandle.standardError.write(Data("hallmark: audit verify: \(response.reason)\n".utf8)) }
                throw ExitCode(1)
            }
        }
    }
}
