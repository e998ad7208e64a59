// Scale: a server on a SQLite file with 1,000,000 entries and 10,000 attested agents. Each agent
// has 100 entries of its own and belongs to one of 10 clusters; each cluster has a node alias
// with 10 entries, so an agent is authorised for 110 entries (the alias itself is the server's).

import Foundation
import HallmarkAttestation
import HallmarkServer
import HallmarkStore
import SPIFFE

struct ScaleSizes {
    var agents = 10_000
    var entriesPerAgent = 100
    var clusters = 10
    var entriesPerCluster = 10
    var lookups = 2_000

    static let quick = ScaleSizes(agents: 20, entriesPerAgent: 5, clusters: 2, entriesPerCluster: 2, lookups: 20)
}

func scaleBenchmarks(hallmark: String, sizes: ScaleSizes) async throws -> [Figure] {
    let scratch = try ScratchDirectory("scale")
    defer { scratch.remove() }
    let dataDir = scratch.file("server")
    let arguments = ["server", "run", "--data-dir", dataDir, "--trust-domain", Bench.trustDomain.name, "--listen", "127.0.0.1:0"]

    // A first start creates the database and the CA; then the data goes in with the server stopped.
    let first = try Launched("server", hallmark, arguments, log: scratch.file("server-first.log"))
    try await first.waitForLine(containing: "hallmark server listening")
    first.stop()

    let fillStart = monotonic()
    let nodes = try await fill(path: (dataDir as NSString).appendingPathComponent("hallmark.db"), sizes: sizes)
    let fill = monotonic() - fillStart
    let total = sizes.agents * sizes.entriesPerAgent + sizes.clusters * (1 + sizes.entriesPerCluster)

    let server = try Launched("server", hallmark, arguments, log: scratch.file("server.log"))
    defer { server.stop() }
    try await server.waitForLine(containing: "hallmark server listening")
    let ready = monotonic() - server.started
    try await Task.sleep(for: .seconds(1))
    let rss = Double(server.rssKiB) / 1024

    // The server's own code computing authorisations, on the same file the server has open.
    let store = try SQLiteStore(path: (dataDir as NSString).appendingPathComponent("hallmark.db"))
    var samples: [Double] = []
    var expected = sizes.entriesPerAgent + sizes.entriesPerCluster
    for index in 0..<sizes.lookups {
        let node = nodes[(index * 7919) % nodes.count]
        let start = monotonic()
        let entries = try await AgentAuthorization.entries(for: node, store: store, trustDomain: Bench.trustDomain)
        samples.append(monotonic() - start)
        if entries.count != expected { expected = -entries.count }
    }
    guard expected > 0 else { throw BenchError("scale: an agent was authorised for \(-expected) entries, not \(sizes.entriesPerAgent + sizes.entriesPerCluster)") }
    let scale = "\(total) entries, \(sizes.agents) agents"
    return [
        Figure(name: "scale.fill", value: fill, unit: "s", note: "\(scale) written in bulk transactions"),
        .below("scale.server_ready", ready, "s", limit: 10, note: "start → agent API listening, \(scale)"),
        .below("scale.authorised_entries p99", quantile(samples, 0.99) * 1000, "ms", limit: 1, note: "\(expected) entries each, \(samples.count) agents; p50 \(Figure.format(quantile(samples, 0.5) * 1000)) ms"),
        .below("scale.server_rss", rss, "MiB", limit: 1024),
    ]
}

/// Writes the agents, their entries and the cluster aliases; returns the agents.
private func fill(path: String, sizes: ScaleSizes) async throws -> [AttestedNode] {
    let store = try SQLiteStore(path: path)
    let now = Date()
    let audit = AuditEvent(callerUID: 0, action: "bench.import", target: "scale")
    let nodes = try (0..<sizes.agents).map { index in
        AttestedNode(
            spiffeID: try SPIFFEID(parsing: "spiffe://bench.example/hallmark/agent/bench/\(index)"), attestationType: "join_token",
            serialNumber: String(format: "%032x", index), expiresAt: now.addingTimeInterval(86400), attestedAt: now,
            selectors: [try Selector(type: "bench", value: "cluster:\(index % sizes.clusters)")]
        )
    }
    for start in stride(from: 0, to: nodes.count, by: 1_000) {
        try await store.saveAttestedNodes(Array(nodes[start..<min(start + 1_000, nodes.count)]), audit: audit)
    }
    let server = AgentAuthorization.serverID(Bench.trustDomain)
    var aliases: [RegistrationEntry] = []
    for cluster in 0..<sizes.clusters {
        let alias = try SPIFFEID(parsing: "spiffe://bench.example/cluster/\(cluster)")
        aliases.append(RegistrationEntry(spiffeID: alias, parentID: server, selectors: [try Selector(type: "bench", value: "cluster:\(cluster)")]))
        for index in 0..<sizes.entriesPerCluster {
            aliases.append(RegistrationEntry(
                spiffeID: try SPIFFEID(parsing: "spiffe://bench.example/cluster/\(cluster)/shared/\(index)"), parentID: alias,
                selectors: [try Selector(type: "unix", value: "uid:\(index)")]
            ))
        }
    }
    try await store.importEntries(aliases, audit: audit)
    var chunk: [RegistrationEntry] = []
    chunk.reserveCapacity(10_000)
    for node in nodes {
        for index in 0..<sizes.entriesPerAgent {
            chunk.append(RegistrationEntry(
                spiffeID: try SPIFFEID(trustDomain: Bench.trustDomain, path: "/workload\(node.spiffeID.path)/\(index)"), parentID: node.spiffeID,
                selectors: [try Selector(type: "unix", value: "uid:\(index)")]
            ))
        }
        if chunk.count >= 10_000 {
            try await store.importEntries(chunk, audit: audit)
            chunk.removeAll(keepingCapacity: true)
        }
    }
    if !chunk.isEmpty { try await store.importEntries(chunk, audit: audit) }
    return nodes
}
