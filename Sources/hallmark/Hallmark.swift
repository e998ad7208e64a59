// The `hallmark` executable: maps flags onto the library's types and runs them. Nothing else.

import ArgumentParser

@main
struct Hallmark: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "hallmark",
        abstract: "A SPIFFE workload identity authority for AI systems.",
        version: HallmarkVersion.current,
        subcommands: [
            ServerCommand.self, TokenCommand.self, EntryCommand.self, AgentCommand.self, BundleCommand.self,
            AuthorityCommand.self, X509Command.self, JWTCommand.self, AuditCommand.self, SVIDCommand.self, Healthcheck.self,
            AttestCommand.self,
        ]
    )
}

enum HallmarkVersion {
    static let current = "0.1.0"
}

/// `hallmark agent …`: the admin's view of agents.
struct AgentCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "agent", abstract: "Attested agents.",
        subcommands: [
            AgentRunCommand.self, AgentAdmin.List.self, AgentAdmin.Show.self, AgentAdmin.Evict.self, AgentAdmin.Ban.self,
            AgentAdmin.Unban.self,
        ]
    )
}
