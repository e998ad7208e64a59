// Which entries an agent may hold: entries whose parent is the agent, entries whose parent is a
// node entry the agent's node satisfies (a node alias), and, transitively, their descendants.

import Foundation
import HallmarkAttestation
public import HallmarkStore
public import SPIFFE

public enum AgentAuthorization {

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
        let authorised = try await store.descendants(of: roots)
        // Oldest first, so that the default SVID (the first) stays put as entries are added.
        return authorised.sorted { $0.createdAt < $1.createdAt }
    }
}
