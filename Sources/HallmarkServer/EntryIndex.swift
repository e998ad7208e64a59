// Every registration entry in memory, by parent, so that an agent's authorised entries are found
// without reading and decoding rows: loaded once at start (in the background; until then answers
// come from the store), then brought up to date from the store's change log before every answer,
// which also picks up entries written to the database by another process.

import Foundation
public import HallmarkAttestation
public import HallmarkStore
public import SPIFFE

public actor EntryIndex {
    private let store: any Store
    /// Nil until `load()` has finished.
    private var tables: Tables?
    /// The change-log sequence `tables` reflect.
    private var sequence: Int64 = 0

    public init(store: any Store) {
        self.store = store
    }

    /// Whether answers come from memory yet.
    public var isLoaded: Bool { tables != nil }

    /// Reads every entry and starts answering from memory; returns how many entries it holds.
    @discardableResult
    public func load() async throws -> Int {
        let snapshot = try await store.allEntries()
        // Built off the actor: on a million entries this takes a while, and lookups go on meanwhile.
        let built = await Task.detached { Tables(snapshot) }.value
        tables = built
        sequence = snapshot.sequence
        return snapshot.entries.count
    }

    /// What an agent may hold: the entries under `agent` and under each node alias (an entry under
    /// `aliasParent` whose selectors `nodeSelectors` satisfy) and, transitively, their descendants;
    /// oldest first (creation time, then the order they were stored in), each once.
    public func authorised(agent: SPIFFEID, nodeSelectors: Set<Selector>, aliasParent: SPIFFEID) async throws -> [RegistrationEntry] {
        guard try await catchUp(), let tables else {
            var roots = [agent]
            for alias in try await store.entries(matching: EntryFilter(parentID: aliasParent)) where nodeSelectors.satisfies(alias.selectors) {
                roots.append(alias.spiffeID)
            }
            return try await store.descendants(of: roots)
        }
        let aliases = tables.children(of: aliasParent).filter { nodeSelectors.satisfies($0.selectors) }
        return tables.descendants(of: [agent] + aliases.map(\.spiffeID))
    }

    /// Applies the changes logged since the last answer. False while not loaded.
    private func catchUp() async throws -> Bool {
        guard tables != nil else { return false }
        let changes = try await store.entryChanges(after: sequence)
        // Another call may have caught up further while this one waited: never apply older state.
        if changes.sequence > sequence {
            tables!.apply(changes)
            sequence = changes.sequence
        }
        return true
    }
}

/// The index proper: each parent's children, and where each entry is.
private struct Tables: Sendable {
    struct Slot: Sendable {
        var entry: RegistrationEntry
        /// The entry's place in storage order: breaks ties in creation time (whole seconds).
        var position: Int64
        /// `entry.spiffeID.hashValue`, kept so that asking whether the entry has children of its own
        /// touches nothing but a small table.
        var idHash: Int
    }

    struct Location: Sendable {
        var parent: SPIFFEID
        var index: Int
    }

    private var children: [SPIFFEID: [Slot]] = [:]
    private var locations: [String: Location] = [:]
    /// How many parents in `children` have each hash value: a miss here means "no children"
    /// without hashing or comparing the ID again.
    private var parentHashes: [Int: Int] = [:]

    init(_ snapshot: EntrySnapshot) {
        locations.reserveCapacity(snapshot.entries.count)
        for (entry, position) in zip(snapshot.entries, snapshot.positions) { insert(entry, position) }
    }

    mutating func apply(_ changes: EntrySnapshot) {
        for id in changes.removedIDs { remove(id) }
        for (entry, position) in zip(changes.entries, changes.positions) {
            remove(entry.id)
            insert(entry, position)
        }
    }

    private mutating func insert(_ entry: RegistrationEntry, _ position: Int64) {
        let slot = Slot(entry: entry, position: position, idHash: entry.spiffeID.hashValue)
        // One lookup, and the siblings array grows in place.
        let index = children[entry.parentID, default: []].withAppended(slot)
        if index == 0 { parentHashes[entry.parentID.hashValue, default: 0] += 1 }
        locations[entry.id] = Location(parent: entry.parentID, index: index)
    }

    private mutating func remove(_ id: String) {
        guard let location = locations.removeValue(forKey: id), var siblings = children.removeValue(forKey: location.parent) else { return }
        // The last sibling takes the removed one's place.
        let last = siblings.removeLast()
        if location.index < siblings.count {
            siblings[location.index] = last
            locations[last.entry.id]?.index = location.index
        }
        if siblings.isEmpty {
            let hash = location.parent.hashValue
            parentHashes[hash] = parentHashes[hash] == 1 ? nil : parentHashes[hash]! - 1
        } else {
            children[location.parent] = siblings
        }
    }

    func children(of parent: SPIFFEID) -> [RegistrationEntry] {
        (children[parent] ?? []).map(\.entry)
    }

    func descendants(of roots: [SPIFFEID]) -> [RegistrationEntry] {
        var visited = Set(roots)
        var pending = Array(visited)
        // Sibling groups found, and for each entry found its sort key and place: the slots are
        // copied once, into the answer, not while sorting.
        var groups: [[Slot]] = []
        var found: [(createdAt: Date, position: Int64, group: Int32, index: Int32)] = []
        while let parent = pending.popLast() {
            guard let siblings = children[parent] else { continue }
            let group = Int32(groups.count)
            groups.append(siblings)
            for (index, slot) in siblings.enumerated() {
                found.append((slot.entry.createdAt, slot.position, group, Int32(index)))
                if parentHashes[slot.idHash] != nil, visited.insert(slot.entry.spiffeID).inserted { pending.append(slot.entry.spiffeID) }
            }
        }
        found.sort { ($0.createdAt, $0.position) < ($1.createdAt, $1.position) }
        return found.map { groups[Int($0.group)][Int($0.index)].entry }
    }
}

extension Array {
    /// Appends `element` and returns the index it now has.
    fileprivate mutating func withAppended(_ element: Element) -> Int {
        append(element)
        return count - 1
    }
}
