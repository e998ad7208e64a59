// What the agent must renew at a moment, computed from what it holds: a value with no clock of its
// own, so that rotation is tested over simulated days without processes. The agent's renewal loop
// asks it, does what it says, and sleeps until the time it names or until the cache changes.

import Foundation

struct RotationPlanner: Sendable {
    /// The facts a renewal is decided by, for one SVID.
    struct Held: Sendable, Equatable {
        var notBefore: Date
        var expiresAt: Date
        /// Key identifiers of the authorities it chains to.
        var issuerKeyIDs: [String]
        /// When the agent received it.
        var receivedAt: Date?

        /// Half of its life: when it is renewed (SPIRE's habit too). Its life counts from when it
        /// was received if that is later than notBefore: the CA backdates notBefore, and an SVID
        /// shorter than twice the backdate would otherwise be due before it arrived, and renewed
        /// back to back.
        var halfLife: Date {
            let start = max(notBefore, receivedAt ?? notBefore)
            return start.addingTimeInterval(expiresAt.timeIntervalSince(start) / 2)
        }
    }

    /// An entry the agent holds (or should hold) an X509-SVID for.
    struct Entry: Sendable, Equatable {
        var id: String
        var svid: Held?
        /// Being signed by another task now: left to it, and looked at again after `retry`.
        var signing = false
    }

    /// What is due at a moment.
    struct Plan: Sendable, Equatable {
        /// Entries to have signed now: no SVID yet, past half-life, or chained to a tainted key.
        var renew: [String] = []
        /// The agent's own SVID is past half-life or chained to a tainted key.
        var renewAgent = false
        /// When something next comes due if nothing changes before; nil when nothing will.
        var next: Date?
    }

    /// How long an entry the server did not sign (refused it, or deferred it under its rate
    /// limit) waits before it is asked for again.
    var retry: TimeInterval = 0.5

    /// - Parameters:
    ///   - attempts: when each entry was last asked for and not obtained; such an entry is not asked
    ///     for again until `retry` has passed.
    func plan(entries: some Sequence<Entry>, agent: Held, tainted: Set<String>, attempts: [String: Date] = [:], now: Date) -> Plan {
        var plan = Plan()
        func later(_ time: Date) {
            plan.next = plan.next.map { min($0, time) } ?? time
        }
        for entry in entries {
            guard !entry.signing else {
                // Left to the task signing it; looked at again after the pause, in case it gets nothing.
                later(now.addingTimeInterval(retry))
                continue
            }
            let due: Date
            if let svid = entry.svid, !svid.issuerKeyIDs.contains(where: tainted.contains) {
                due = svid.halfLife
            } else {
                // Missing, or from a tainted key: now, unless it was just asked for.
                due = attempts[entry.id].map { $0.addingTimeInterval(retry) } ?? now
            }
            if due <= now { plan.renew.append(entry.id) } else { later(due) }
        }
        if agent.issuerKeyIDs.contains(where: tainted.contains) || agent.halfLife <= now {
            plan.renewAgent = true
        } else {
            later(agent.halfLife)
        }
        return plan
    }
}
