// The CA keys' life over simulated days, with no clock but the one the test moves: prepare at half
// of the active key's life, activate at five sixths, old keys leaving the bundle a grace period
// after expiry, and the admin's prepare, activate, taint and revoke under SPIRE's rules.

import Foundation
import HallmarkCA
import Testing

@Suite("key-slot planner")
struct KeySlotPlannerTests {
    static let start = Date(timeIntervalSince1970: 1_800_000_000)
    static let day: TimeInterval = 86_400

    /// A journal the test's "CA" keeps, carrying out each action as CAManager does.
    struct Journal {
        var slots: [KeySlotPlanner.Slot] = []
        var published: Set<String> = []
        var made = 0
        var events: [(Date, String)] = []
        let ttl: TimeInterval

        mutating func carryOut(_ planner: KeySlotPlanner, at now: Date) {
            for _ in 0..<4 {
                guard let action = planner.decide(slots, published: published, now: now).first else { return }
                switch action {
                case .prepare:
                    made += 1
                    let id = "k\(made)"
                    slots.append(.init(id: id, state: .prepared, notBefore: now, notAfter: now.addingTimeInterval(ttl)))
                    published.insert(id)
                    events.append((now, "prepare \(id)"))
                case .activate(let id):
                    for index in slots.indices where slots[index].state == .active { slots[index].state = .old }
                    slots[slots.firstIndex { $0.id == id }!].state = .active
                    events.append((now, "activate \(id)"))
                case .expire(let id):
                    published.remove(id)
                    events.append((now, "expire \(id)"))
                }
            }
            Issue.record("the planner did not settle at \(now)")
        }
    }

    @Test("from nothing: a key is prepared and activated at once")
    func firstKey() {
        let planner = KeySlotPlanner(gracePeriod: Self.day)
        var journal = Journal(ttl: Self.day)
        journal.carryOut(planner, at: Self.start)
        #expect(journal.events.map(\.1) == ["prepare k1", "activate k1"])
        #expect(planner.decide(journal.slots, published: journal.published, now: Self.start).isEmpty)
        #expect(planner.next(journal.slots, now: Self.start) == Self.start.addingTimeInterval(Self.day / 2))
    }

    @Test("thirty simulated days of one-day keys: each prepared at 1/2 and activated at 5/6 of its predecessor's life, expired a grace period after its end")
    func simulatedMonth() {
        let planner = KeySlotPlanner(gracePeriod: Self.day)
        var journal = Journal(ttl: Self.day)
        var now = Self.start
        journal.carryOut(planner, at: now)
        let end = Self.start.addingTimeInterval(30 * Self.day)
        // Time jumps from one decision to the next, as the server's timer does.
        while let next = planner.next(journal.slots, now: now), next < end {
            // Nothing is due a moment before the time the planner names: it never acts early.
            #expect(planner.decide(journal.slots, published: journal.published, now: next.addingTimeInterval(-1)).isEmpty, "\(next)")
            now = next
            journal.carryOut(planner, at: now)
            let signing = journal.slots.filter { $0.state == .active && $0.notAfter > now }
            #expect(signing.count == 1, "exactly one key signs at \(now)")
        }
        func time(_ event: String) -> TimeInterval? {
            journal.events.first { $0.1 == event }.map { $0.0.timeIntervalSince(Self.start) }
        }
        // k1 runs from 0 to 1 day: k2 prepared at 1/2, activated at 5/6; k2 runs from 1/2 to 3/2.
        #expect(time("prepare k2") == Self.day / 2)
        #expect(time("activate k2") == Self.day * 5 / 6)
        #expect(time("prepare k3") == Self.day / 2 + Self.day / 2)
        #expect(time("activate k3") == Self.day / 2 + Self.day * 5 / 6)
        #expect(time("expire k1") == Self.day + Self.day, "k1 expires at 1 day and leaves the bundle a day later")
        // Over the month the pattern holds: every key but the last few activated, none twice.
        let activations = journal.events.filter { $0.1.hasPrefix("activate") }.map(\.1)
        #expect(activations.count == Set(activations).count)
        #expect(activations.count >= 58)
        // The bundle never holds a revoked or long-expired key, and always holds the signing one.
        #expect(journal.published.count <= 4)
    }

    @Test("an admin's early prepare and activate; a second prepare and a foreign or expired activation are refused")
    func adminPrepareActivate() throws {
        let planner = KeySlotPlanner(gracePeriod: Self.day)
        var slots: [KeySlotPlanner.Slot] = [.init(id: "k1", state: .active, notBefore: Self.start, notAfter: Self.start.addingTimeInterval(Self.day))]
        try planner.checkPrepare(slots)
        slots.append(.init(id: "k2", state: .prepared, notBefore: Self.start, notAfter: Self.start.addingTimeInterval(Self.day)))
        #expect(throws: CAError(.failedPrecondition, "authority: k2 is already prepared; activate it before preparing another")) { try planner.checkPrepare(slots) }
        #expect(try planner.activation(slots, named: nil, kind: "x509", now: Self.start).id == "k2")
        #expect(throws: CAError(.failedPrecondition, "authority: only a prepared authority can be activated; k1 is active")) {
            try planner.activation(slots, named: "k1", kind: "x509", now: Self.start)
        }
        let late = Self.start.addingTimeInterval(2 * Self.day)
        #expect(throws: CAError(.expired, "authority: k2 expired at \(Self.start.addingTimeInterval(Self.day))")) {
            try planner.activation(slots, named: "k2", kind: "x509", now: late)
        }
        #expect(throws: CAError(.failedPrecondition, "authority: no x509 authority is prepared; prepare one first")) {
            try planner.activation([slots[0]], named: nil, kind: "x509", now: Self.start)
        }
        // Before its time, the clock does nothing with the prepared key; at 5/6 it activates it.
        #expect(planner.decide(slots, published: ["k1", "k2"], now: Self.start.addingTimeInterval(Self.day / 2)).isEmpty)
        #expect(planner.decide(slots, published: ["k1", "k2"], now: Self.start.addingTimeInterval(Self.day * 5 / 6)) == [.activate("k2")])
    }

    @Test("taint only an old key, revoke only a tainted one; a revoked key leaves the bundle at once, a tainted one stays")
    func taintAndRevoke() throws {
        let planner = KeySlotPlanner(gracePeriod: Self.day)
        let life = (Self.start, Self.start.addingTimeInterval(Self.day))
        func slot(_ state: KeySlotPlanner.State) -> KeySlotPlanner.Slot { .init(id: "k", state: state, notBefore: life.0, notAfter: life.1) }
        try planner.checkTaint(slot(.old))
        #expect(throws: CAError(.failedPrecondition, "authority: only an old authority can be tainted; k is active: prepare and activate another first")) { try planner.checkTaint(slot(.active)) }
        #expect(throws: CAError(.failedPrecondition, "authority: only an old authority can be tainted; k is prepared and has signed nothing")) { try planner.checkTaint(slot(.prepared)) }
        #expect(throws: CAError(.failedPrecondition, "authority: k is already tainted")) { try planner.checkTaint(slot(.tainted)) }
        #expect(throws: CAError(.failedPrecondition, "authority: only an old authority can be tainted; k is revoked")) { try planner.checkTaint(slot(.revoked)) }
        try planner.checkRevoke(slot(.tainted))
        #expect(throws: CAError(.failedPrecondition, "authority: only a tainted authority can be revoked; k is old: taint it first")) { try planner.checkRevoke(slot(.old)) }
        #expect(planner.published([slot(.tainted)], at: Self.start) == ["k"])
        #expect(planner.published([slot(.revoked)], at: Self.start).isEmpty)
        #expect(planner.decide([slot(.revoked), .init(id: "a", state: .active, notBefore: life.0, notAfter: life.1)], published: ["k", "a"], now: Self.start) == [.expire("k")])
    }

    @Test("a prepared key that expired unused is never activated: the clock prepares a fresh one")
    func expiredPrepared() {
        let planner = KeySlotPlanner(gracePeriod: Self.day)
        let slots: [KeySlotPlanner.Slot] = [
            .init(id: "k1", state: .old, notBefore: Self.start, notAfter: Self.start.addingTimeInterval(Self.day)),
            .init(id: "k2", state: .prepared, notBefore: Self.start, notAfter: Self.start.addingTimeInterval(Self.day)),
        ]
        #expect(planner.decide(slots, published: ["k1", "k2"], now: Self.start.addingTimeInterval(Self.day + 1)) == [.prepare])
    }
}
