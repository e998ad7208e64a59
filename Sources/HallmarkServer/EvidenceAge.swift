// Evidence that is not presented again is not believed for ever. A TPM quote proves the boot state
// when it was made, GPU evidence the firmware when it was made; a node that stops presenting them
// (because it booted into something that would fail) must not keep the selectors they earned. The
// server records when each node's evidence last passed, refuses a node whose evidence is older
// than allowed, and its maintenance loop evicts such nodes, so their entry streams end at once.

import Foundation
import HallmarkStore

struct EvidenceAge: Sendable {
    let tpmMaxAge: TimeInterval
    let gpuMaxAge: TimeInterval

    init(_ config: ServerConfig) {
        tpmMaxAge = config.tpmReattestMaxAge
        gpuMaxAge = config.gpuReattestMaxAge
    }

    /// The evidence a node must keep presenting, and how old it may be; nil for a node whose
    /// attestation has nothing to present again (a join token alone).
    func limit(for node: AttestedNode) -> (evidence: String, maxAge: TimeInterval)? {
        var limits: [(String, TimeInterval)] = []
        if node.attestationType == TPMAttestation.method { limits.append(("TPM quote", tpmMaxAge)) }
        if node.selectors.contains(where: { $0.type == "gpu" }) { limits.append(("GPU evidence", gpuMaxAge)) }
        return limits.min { $0.1 < $1.1 }
    }

    /// Why the node's evidence no longer counts at `now`, or nil while it does.
    func staleness(of node: AttestedNode, at now: Date) -> String? {
        guard let limit = limit(for: node) else { return nil }
        let age = now.timeIntervalSince(node.evidenceAt)
        guard age > limit.maxAge else { return nil }
        return "its last passing \(limit.evidence) is \(Int(age)) s old, more than the \(Int(limit.maxAge)) s allowed; it did not re-attest"
    }
}

extension EvidenceAge {
    /// Evicts every unbanned node whose evidence is stale at `now`, each audited with the reason,
    /// and returns them. A node that re-attests between the look-up and the eviction is kept.
    func evictStale(store: any Store, at now: Date) async throws -> [AttestedNode] {
        var evicted: [AttestedNode] = []
        for node in try await store.attestedNodes(evidenceBefore: now.addingTimeInterval(-min(tpmMaxAge, gpuMaxAge))) {
            guard let reason = staleness(of: node, at: now), let limit = limit(for: node) else { continue }
            let audit = AuditEvent(time: now, actor: .server, action: "agent.evict", target: node.spiffeID.description, result: "evidence expired", detail: reason)
            if let removed = try await store.evictAttestedNode(node.spiffeID, evidenceBefore: now.addingTimeInterval(-limit.maxAge), audit: audit) {
                evicted.append(removed)
            }
        }
        return evicted
    }
}
