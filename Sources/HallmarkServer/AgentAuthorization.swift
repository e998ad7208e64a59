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

    /// Every entry the agent of `node` is authorised for, oldest first, so that the default SVID
    /// (the first) stays put as entries are added.
    public static func entries(for node: AttestedNode, index: EntryIndex, trustDomain: TrustDomain) async throws -> [RegistrationEntry] {
        try await index.authorised(agent: node.spiffeID, nodeSelectors: Set(node.selectors), aliasParent: serverID(trustDomain))
    }
}
