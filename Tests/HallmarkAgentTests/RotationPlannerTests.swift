// The agent's renewal decisions over simulated time: every SVID at half of its life, the agent's
// own too, at once when its key is tainted, and an SVID the server did not sign asked for again
// only after the retry pause — with the time of the next decision always named.

import Foundation
@testable import HallmarkAgent
import Testing

@Suite("rotation planner")
struct RotationPlannerTests {
    static let start = Date(timeIntervalSince1970: 1_800_000_000)

    static func held(from: Date, ttl: TimeInterval, keys: [String] = ["k1"]) -> RotationPlanner.Held {
        RotationPlanner.Held(notBefore: from, expiresAt: from.addingTimeInterval(ttl), issuerKeyIDs: keys)
    }

    @Test("SVIDs are renewed at half-life, and the plan says when the next one is due")
    func halfLife() {
        let planner = RotationPlanner()
        let agent = Self.held(from: Self.start, ttl: 3600)
        let entries = [
            RotationPlanner.Entry(id: "a", svid: Self.held(from: Self.start, ttl: 600)),
            RotationPlanner.Entry(id: "b", svid: Self.held(from: Self.start, ttl: 1200)),
        ]
        let early = planner.plan(entries: entries, agent: agent, tainted: [], now: Self.start.addingTimeInterval(10))
        #expect(early == RotationPlanner.Plan(renew: [], renewAgent: false, next: Self.start.addingTimeInterval(300)))
        let atA = planner.plan(entries: entries, agent: agent, tainted: [], now: Self.start.addingTimeInterval(300))
        #expect(atA.renew == ["a"] && atA.next == Self.start.addingTimeInterval(600))
        let atAgent = planner.plan(entries: [], agent: agent, tainted: [], now: Self.start.addingTimeInterval(1800))
        #expect(atAgent.renewAgent && atAgent.next == nil)
    }

    @Test("a day of one-hour SVIDs: each renewed once per half-life, never early, never missed")
    func simulatedDay() {
        let planner = RotationPlanner()
        var agent = Self.held(from: Self.start, ttl: 3600)
        var svids: [String: RotationPlanner.Held] = ["a": Self.held(from: Self.start, ttl: 3600), "b": Self.held(from: Self.start.addingTimeInterval(100), ttl: 1000)]
        var renewals: [String: [Date]] = [:]
        var now = Self.start
        let end = Self.start.addingTimeInterval(86_400)
        var steps = 0
        while now < end {
            let plan = planner.plan(entries: svids.map { .init(id: $0.key, svid: $0.value) }, agent: agent, tainted: [], now: now)
            for id in plan.renew {
                #expect(now >= svids[id]!.halfLife, "\(id) renewed before its half-life")
                renewals[id, default: []].append(now)
                svids[id] = Self.held(from: now, ttl: svids[id]!.expiresAt.timeIntervalSince(svids[id]!.notBefore))
            }
            if plan.renewAgent {
                renewals["agent", default: []].append(now)
                agent = Self.held(from: now, ttl: 3600)
            }
            // After renewing, the agent decides again at once; otherwise it sleeps exactly until
            // the plan's next time: no polling.
            if !plan.renew.isEmpty || plan.renewAgent { continue }
            guard let next = plan.next else { break }
            #expect(next > now, "the plan named a time that is not later")
            now = next
            steps += 1
        }
        #expect(renewals["a"]?.count == 47, "a: \(renewals["a"]?.count ?? 0) renewals")
        #expect(renewals["agent"]?.count == 47)
        #expect(renewals["b"]?.count == 172, "b: \(renewals["b"]?.count ?? 0) renewals")
        // Never late: every renewal at exactly its half-life.
        #expect(renewals["b"]?.first == Self.start.addingTimeInterval(600))
        #expect(steps < 300, "woke \(steps) times in a day")
    }

    @Test("a short SVID whose notBefore is backdated is due at half of its life from when it arrived, not at once")
    func backdated() {
        let planner = RotationPlanner()
        // Issued at `start` with a 4 s TTL and notBefore 10 s earlier: by its dates alone, due 3 s before it arrived.
        let short = RotationPlanner.Held(notBefore: Self.start.addingTimeInterval(-10), expiresAt: Self.start.addingTimeInterval(4), issuerKeyIDs: ["k1"], receivedAt: Self.start)
        let plan = planner.plan(entries: [.init(id: "short", svid: short)], agent: short, tainted: [], now: Self.start)
        #expect(plan.renew.isEmpty && !plan.renewAgent, "renewed the moment it arrived")
        #expect(plan.next == Self.start.addingTimeInterval(2))
        let dates = RotationPlanner.Held(notBefore: Self.start.addingTimeInterval(-10), expiresAt: Self.start.addingTimeInterval(3590), issuerKeyIDs: ["k1"])
        #expect(dates.halfLife == Self.start.addingTimeInterval(1790), "without a receipt time, the dates decide")
    }

    @Test("a tainted key: every SVID it signed, and the agent's own, are due at once")
    func taint() {
        let planner = RotationPlanner()
        let now = Self.start.addingTimeInterval(60)
        let plan = planner.plan(
            entries: [
                .init(id: "old", svid: Self.held(from: Self.start, ttl: 3600, keys: ["k1"])),
                .init(id: "new", svid: Self.held(from: Self.start, ttl: 3600, keys: ["k2"])),
            ],
            agent: Self.held(from: Self.start, ttl: 3600, keys: ["k1"]), tainted: ["k1"], now: now
        )
        #expect(plan.renew == ["old"] && plan.renewAgent)
        #expect(plan.next == Self.start.addingTimeInterval(1800), "the untainted one is still due at its half-life")
    }

    @Test("a missing SVID is due now; one just asked for and not obtained waits for the retry pause; one being signed is left alone")
    func missing() {
        let planner = RotationPlanner(retry: 0.5)
        let agent = Self.held(from: Self.start, ttl: 3600)
        let now = Self.start.addingTimeInterval(10)
        let entries: [RotationPlanner.Entry] = [.init(id: "new", svid: nil), .init(id: "deferred", svid: nil), .init(id: "busy", svid: nil, signing: true)]
        let plan = planner.plan(entries: entries, agent: agent, tainted: [], attempts: ["deferred": now.addingTimeInterval(-0.2)], now: now)
        #expect(plan.renew == ["new"])
        #expect(plan.next == now.addingTimeInterval(0.3))
        // One being signed elsewhere is looked at again after the pause, in case that signing gets nothing.
        let busy = planner.plan(entries: [.init(id: "busy", svid: nil, signing: true)], agent: agent, tainted: [], now: now)
        #expect(busy.renew.isEmpty && busy.next == now.addingTimeInterval(0.5))
        let later = planner.plan(entries: entries, agent: agent, tainted: [], attempts: ["deferred": now.addingTimeInterval(-0.2)], now: now.addingTimeInterval(0.3))
        #expect(later.renew == ["new", "deferred"])
    }
}
