// The life of a CA's keys of one kind, as SPIRE runs it, decided by a value with no clock of its
// own: the next key is prepared (and published) at half of the active key's life and activated at
// five sixths of it, the previous one becomes old, and a key leaves the bundle a grace period after
// it expires. An admin may prepare and activate early, taint an old key and revoke a tainted one;
// the rules for those are here too. The server's CAManager carries out what this decides.

public import Foundation

public struct KeySlotPlanner: Sendable {
    /// A key's slot: prepared (published, not signing), active (signing), old (no longer signing,
    /// still trusted), tainted (still trusted, everything it signed is being replaced), revoked
    /// (out of the bundle for good).
    public enum State: String, Sendable, CaseIterable { case prepared, active, old, tainted, revoked }

    public struct Slot: Sendable, Equatable {
        public var id: String
        public var state: State
        public var notBefore: Date
        public var notAfter: Date

        public init(id: String, state: State, notBefore: Date, notAfter: Date) {
            self.id = id
            self.state = state
            self.notBefore = notBefore
            self.notAfter = notAfter
        }
    }

    public enum Action: Sendable, Equatable {
        /// Make the next key; it is published at once and signs nothing until activated.
        case prepare
        /// The prepared key signs from now on; the active one, if any, becomes old.
        case activate(String)
        /// The key has left the bundle (expired, and its grace period over): forget it.
        case expire(String)
    }

    /// How long a key stays in the bundle after it expires.
    public var gracePeriod: TimeInterval

    public init(gracePeriod: TimeInterval) {
        self.gracePeriod = gracePeriod
    }

    /// What is due now for the keys of one kind (in the order they were made). Carry out the
    /// first action and ask again: each answer reflects the slots as they are.
    /// - Parameter published: the keys the bundle held when last asked.
    public func decide(_ slots: [Slot], published: Set<String>, now: Date) -> [Action] {
        let gone = expired(slots, published: published, now: now).map(Action.expire)
        let prepared = slots.last { $0.state == .prepared && $0.notAfter > now }
        guard let active = slots.last(where: { $0.state == .active && $0.notAfter > now }) else {
            // Nothing signs: use the prepared key at once, or make one.
            return [prepared.map { .activate($0.id) } ?? .prepare] + gone
        }
        let life = active.notAfter.timeIntervalSince(active.notBefore)
        let age = now.timeIntervalSince(active.notBefore)
        var actions: [Action] = []
        if let prepared {
            if age >= life * 5 / 6 { actions.append(.activate(prepared.id)) }
        } else if age >= life / 2 {
            actions.append(.prepare)
        }
        return actions + gone
    }

    /// When something next comes due if nothing changes before; nil when nothing will.
    public func next(_ slots: [Slot], now: Date) -> Date? {
        var times: [Date] = slots.filter { $0.state != .revoked }.map { $0.notAfter.addingTimeInterval(gracePeriod) }
        if let active = slots.last(where: { $0.state == .active && $0.notAfter > now }) {
            let life = active.notAfter.timeIntervalSince(active.notBefore)
            let hasPrepared = slots.contains { $0.state == .prepared && $0.notAfter > now }
            times.append(active.notBefore.addingTimeInterval(hasPrepared ? life * 5 / 6 : life / 2))
            times.append(active.notAfter)
        }
        return times.filter { $0 > now }.min()
    }

    /// The keys the bundle held (`published`) that have left it by now, in ID order.
    public func expired(_ slots: [Slot], published: Set<String>, now: Date) -> [String] {
        published.subtracting(self.published(slots, at: now)).sorted()
    }

    /// The keys that belong in the bundle now: not revoked, not past expiry plus the grace period.
    public func published(_ slots: [Slot], at now: Date) -> Set<String> {
        Set(slots.filter { $0.state != .revoked && $0.notAfter.addingTimeInterval(gracePeriod) > now }.map(\.id))
    }

    /// Refuses an admin's prepare while a key is already prepared.
    public func checkPrepare(_ slots: [Slot]) throws(CAError) {
        if let prepared = slots.last(where: { $0.state == .prepared }) {
            throw CAError(.failedPrecondition, "authority: \(prepared.id) is already prepared; activate it before preparing another")
        }
    }

    /// The key an admin's activate acts on: the one named, which must be prepared, or else the
    /// prepared one; never an expired key.
    public func activation(_ slots: [Slot], named id: String?, kind: String, now: Date) throws(CAError) -> Slot {
        let target: Slot
        if let id {
            guard let named = slots.first(where: { $0.id == id }) else {
                throw CAError(.notFound, "authority: no \(kind) authority with ID \(id)")
            }
            guard named.state == .prepared else {
                throw CAError(.failedPrecondition, "authority: only a prepared authority can be activated; \(id) is \(named.state.rawValue)")
            }
            target = named
        } else {
            guard let prepared = slots.last(where: { $0.state == .prepared }) else {
                throw CAError(.failedPrecondition, "authority: no \(kind) authority is prepared; prepare one first")
            }
            target = prepared
        }
        guard target.notAfter > now else { throw CAError(.expired, "authority: \(target.id) expired at \(target.notAfter)") }
        return target
    }

    /// Refuses to taint anything but an old key.
    public func checkTaint(_ slot: Slot) throws(CAError) {
        switch slot.state {
        case .old: return
        case .active:
            throw CAError(.failedPrecondition, "authority: only an old authority can be tainted; \(slot.id) is active: prepare and activate another first")
        case .prepared:
            throw CAError(.failedPrecondition, "authority: only an old authority can be tainted; \(slot.id) is prepared and has signed nothing")
        case .tainted:
            throw CAError(.failedPrecondition, "authority: \(slot.id) is already tainted")
        case .revoked:
            throw CAError(.failedPrecondition, "authority: only an old authority can be tainted; \(slot.id) is revoked")
        }
    }

    /// Refuses to revoke anything but a tainted key.
    public func checkRevoke(_ slot: Slot) throws(CAError) {
        guard slot.state == .tainted else {
            throw CAError(.failedPrecondition, "authority: only a tainted authority can be revoked; \(slot.id) is \(slot.state.rawValue): taint it first")
        }
    }
}
