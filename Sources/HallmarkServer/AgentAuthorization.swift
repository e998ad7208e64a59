// Which entries an agent may hold: entries whose parent is the agent, entries whose parent is a
// node entry the agent's node satisfies (a node alias), and, transitively, their descendants.

import Foundation
import HallmarkAttestation
public import HallmarkStore
public import SPIFFE

public enum AgentAuthorization {
    /// Parents looked up in one query (SQLite allows 32,766 parameters; this keeps statements small).
    static let parentsPerQuery = 500

    /// The SPIFFE ID of the server, and the parent of node entries that select agents by their selectors.
    public static func serverID(_ trustDomain: TrustDomain) -> SPIFFEID {
        try! SPIFFEID(trustDomain: trustDomain, segments: ["hallmark", "server"])
    }

    /// Every entry the agent of `node` is authorised for.
    public static func entries(for node: AttestedNode, store: any Store, trustDomain: TrustDomain) async throws -> [RegistrationEntry] {
        var roots: [SPIFFEID] = [node.spiffeID]
        let nodeSelectors = Set(node.selectors)
        for alias in try await store.entries(matching: EntryFilter(parentID: serverID(trustDomain))) where nodeSelectors.satisfies(alias.selectors) {
            roots.append(alias.spiffeID)
        }
        // Breadth first, one query per level (in chunks): an agent's entries rarely have children,
        // so the second level is one query that finds nothing.
        var visited = Set(roots)
        var level = roots
        var seen = Set<String>()
        var authorised: [RegistrationEntry] = []
        while !level.isEmpty {
            var next: [SPIFFEID] = []
            for start in stride(from: 0, to: level.count, by: parentsPerQuery) {
                let parents = Array(level[start..<min(start + parentsPerQuery, level.count)])
                for entry in try await store.entries(matching: EntryFilter(parentIDs: parents)) where seen.insert(entry.id).inserted {
                    authorised.append(entry)
                    if visited.insert(entry.spiffeID).inserted { next.append(entry.spiffeID) }
                }
            }
            level = next
        }
        // Oldest first, so that the default SVID (the first) stays put as entries are added.
        return authorised.sorted { $0.createdAt < $1.createdAt }
    }
}
