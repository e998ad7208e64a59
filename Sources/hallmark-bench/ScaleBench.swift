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
    var lookups = 10_000

    static let quick = ScaleSizes(agents: 20, entriesPerAgent: 5, clusters: 2, entriesPerCluster: 2, lookups: 20)
}

/// - Parameter keep: a directory that keeps the filled server data between runs (the fill takes
///   over a minute); reused when it holds data of the same sizes.
func scaleBenchmarks(hallmark: String, sizes: ScaleSizes, keep: String? = nil) async throws -> [Figure] {
    let scratch = try ScratchDirectory("scale")
    defer { scratch.remove() }
    let dataDir = keep ?? scratch.file("server")
    let arguments = ["server", "run", "--data-dir", dataDir, "--trust-domain", Bench.trustDomain.name, "--listen", "127.0.0.1:0"]
    let marker = (dataDir as NSString).appendingPathComponent("bench-sizes")
    let sizesText = "\(sizes.agents) \(sizes.entriesPerAgent) \(sizes.clusters) \(sizes.entriesPerCluster)"

    var fill = Double.nan
    let nodes: [AttestedNode]
    if keep != nil, (try? String(contentsOfFile: marker, encoding: .utf8)) == sizesText {
        nodes = try scaleNodes(sizes)
    } else {
        try? FileManager.default.removeItem(atPath: dataDir)
        // A first start creates the database and the CA; then the data goes in with the server stopped.
        let first = try Launched("server", hallmark, arguments, log: scratch.file("server-first.log"))
        try await first.waitForLine(containing: "hallmark server listening")
        first.stop()
        let fillStart = monotonic()
        nodes = try await fillScaleData(path: (dataDir as NSString).appendingPathComponent("hallmark.db"), sizes: sizes)
        fill = monotonic() - fillStart
        try sizesText.write(toFile: marker, atomically: true, encoding: .utf8)
    }
    let total = sizes.agents * sizes.entriesPerAgent + sizes.clusters * (1 + sizes.entriesPerCluster)

    let server = try Launched("server", hallmark, arguments, log: scratch.file("server.log"))
    defer { server.stop() }
    try await server.waitForLine(containing: "hallmark server listening")
    let ready = monotonic() - server.started
    // Authorisation is answered from the store until the entries are in memory, then from memory.
    try await server.waitForLine(containing: "entry index loaded")
    let indexed = monotonic() - server.started
    try await Task.sleep(for: .seconds(1))
    let rss = Double(server.rssKiB) / 1024

    // The server's own code computing authorisations: its entry index, loaded from the same file
    // the server has open, and brought up to date from the change log before every answer.
    let index = EntryIndex(store: try SQLiteStore(path: (dataDir as NSString).appendingPathComponent("hallmark.db")))
    try await index.load()
    // Off the main actor, as the server's handlers run.
    let (samples, expected) = try await Task.detached {
        var samples: [Double] = []
        var expected = sizes.entriesPerAgent + sizes.entriesPerCluster
        for lookup in 0..<sizes.lookups {
            let node = nodes[(lookup * 7919) % nodes.count]
            let start = monotonic()
            let entries = try await AgentAuthorization.entries(for: node, index: index, trustDomain: Bench.trustDomain)
            samples.append(monotonic() - start)
            if entries.count != expected { expected = -entries.count }
        }
        return (samples, expected)
    }.value
    guard expected > 0 else { throw BenchError("scale: an agent was authorised for \(-expected) entries, not \(sizes.entriesPerAgent + sizes.entriesPerCluster)") }
    let scale = "\(total) entries, \(sizes.agents) agents"
    return [
        Figure(name: "scale.fill", value: fill, unit: "s", note: fill.isNaN ? "\(scale) kept from an earlier run" : "\(scale) written in bulk transactions"),
        .below("scale.server_ready", ready, "s", limit: 10, note: "start → agent API listening, \(scale)"),
        Figure(name: "scale.index_loaded", value: indexed, unit: "s", note: "start → every entry in memory (until then authorisation reads SQLite)"),
        .below("scale.authorised_entries p99", quantile(samples, 0.99) * 1000, "ms", limit: 1, note: "\(expected) entries each, \(samples.count) agents; p50 \(Figure.format(quantile(samples, 0.5) * 1000)) ms"),
        .below("scale.server_rss", rss, "MiB", limit: 1024, note: "entries in memory"),
    ]
}

/// The attested agents of the scale data.
private func scaleNodes(_ sizes: ScaleSizes) throws -> [AttestedNode] {
    let now = Date()
    return try (0..<sizes.agents).map { index in
        AttestedNode(
            spiffeID: try SPIFFEID(parsing: "spiffe://bench.example/hallmark/agent/bench/\(index)"), attestationType: "join_token",
            serialNumber: String(format: "%032x", index), expiresAt: now.addingTimeInterval(86400), attestedAt: now,
            selectors: [try Selector(type: "bench", value: "cluster:\(index % sizes.clusters)")]
        )
    }
}

/// Writes the agents, their entries and the cluster aliases; returns the agents.
private func fillScaleData(path: String, sizes: ScaleSizes) async throws -> [AttestedNode] {
    let store = try SQLiteStore(path: path)
    let audit = AuditEvent(actor: .admin(uid: 0), action: "bench.import", target: "scale")
    let nodes = try scaleNodes(sizes)
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
