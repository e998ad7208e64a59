// The `hallmark` executable: maps flags onto the library's types and runs them. Nothing else.

import ArgumentParser

@main
struct Hallmark: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "hallmark",
        abstract: "A SPIFFE workload identity authority for AI systems.",
        version: HallmarkVersion.current,
        subcommands: [SVIDCommand.self]
    )
}

enum HallmarkVersion {
    static let current = "0.1.0"
}
