// What the agent holds: the entries it is authorised for, an SVID for each, the bundle, and the
// JWT-SVIDs it has fetched. Every change wakes the Workload API streams.

public import Foundation
public import HallmarkAttestation
public import HallmarkProto
public import SPIFFE
public import HallmarkSupport
import Synchronization

/// One identity a workload may be given.
public struct CachedIdentity: Sendable, Equatable {
    public let entryID: String
    public let spiffeID: SPIFFEID
    public let selectors: [Selector]
    public let hint: String
    public let svid: X509SVID

    public static func == (lhs: CachedIdentity, rhs: CachedIdentity) -> Bool {
        lhs.entryID == rhs.entryID && lhs.svid.leaf == rhs.svid.leaf && lhs.hint == rhs.hint
    }
}

public final class AgentCache: Sendable {
    private struct State {
        var entries: [AgentAPI_Entry] = []
        var svids: [String: (revision: Int64, svid: X509SVID)] = [:]
        var bundle: SPIFFEBundle?
        var jwts: [String: (token: String, keyID: String, issuedAt: Date, expiresAt: Date)] = [:]
        /// Authorities whose SVIDs must be replaced (X.509 key identifiers, JWT kids).
        var tainted: Set<String> = []
    }

    private let state = Mutex(State())
    /// Wakes the Workload API streams on every change.
    public let changes = Broadcast()

    public init() {}

    /// Replaces the entries, bundle and tainted authorities with the server's latest; drops SVIDs
    /// of removed entries and JWT-SVIDs signed by a tainted key.
    /// - Returns: the entries that need a (new) SVID: new, changed, or chained to a tainted authority.
    @discardableResult
    public func update(entries: [AgentAPI_Entry], bundle: SPIFFEBundle?, tainted: Set<String> = []) -> [AgentAPI_Entry] {
        state.withLock { state in
            state.entries = entries
            if let bundle { state.bundle = bundle }
            state.tainted = tainted
            let ids = Set(entries.map(\.id))
            state.svids = state.svids.filter { ids.contains($0.key) }
            state.jwts = state.jwts.filter { ids.contains(String($0.key.split(separator: "|").first ?? "")) && !tainted.contains($0.value.keyID) }
            defer { changes.notify() }
            return entries.filter { entry in
                guard Self.wantsSVID(entry), let held = state.svids[entry.id] else { return Self.wantsSVID(entry) }
                return held.revision != entry.revisionNumber || !held.svid.issuerKeyIDs.isDisjoint(with: tainted)
            }
        }
    }

    /// Forgets everything: the server no longer accepts this agent, so its workloads get nothing.
    public func clear() {
        state.withLock { state in
            state.entries = []
            state.svids = [:]
            state.jwts = [:]
            changes.notify()
        }
    }

    /// Whether an SVID chains to an authority the server has tainted.
    public func isTainted(_ svid: X509SVID) -> Bool {
        state.withLock { !svid.issuerKeyIDs.isDisjoint(with: $0.tainted) }
    }

    /// Node aliases select agents, not workloads: no SVID is minted for them.
    static func wantsSVID(_ entry: AgentAPI_Entry) -> Bool {
        !entry.selectors.contains { $0.type == "spiffe_id" }
    }

    /// Stores SVIDs for entries (ignored for entries no longer held).
    public func store(_ svids: [(entryID: String, revision: Int64, svid: X509SVID)]) {
        guard !svids.isEmpty else { return }
        state.withLock { state in
            let ids = Set(state.entries.map(\.id))
            for item in svids where ids.contains(item.entryID) {
                state.svids[item.entryID] = (item.revision, item.svid)
            }
            changes.notify()
        }
    }

    /// Entries whose SVID has passed half of its life (or is missing).
    public func due(at time: Date) -> [AgentAPI_Entry] {
        state.withLock { state in
            state.entries.filter { entry in
                guard Self.wantsSVID(entry) else { return false }
                guard let svid = state.svids[entry.id]?.svid else { return true }
                let start = svid.leaf.notValidBefore
                return time >= start.addingTimeInterval(svid.expiresAt.timeIntervalSince(start) / 2)
            }
        }
    }

    public var bundle: SPIFFEBundle? { state.withLock { $0.bundle } }

    /// Every identity whose entry's selectors are all among `selectors`, in the server's order.
    public func identities(matching selectors: Set<Selector>) -> [CachedIdentity] {
        state.withLock { state in
            state.entries.compactMap { entry in
                guard let svid = state.svids[entry.id]?.svid else { return nil }
                let required = entry.selectors.compactMap { try? Selector(type: $0.type, value: $0.value) }
                guard required.count == entry.selectors.count, selectors.satisfies(required) else { return nil }
                return CachedIdentity(entryID: entry.id, spiffeID: svid.id, selectors: required, hint: entry.hint, svid: svid)
            }
        }
    }

    public var svidCount: Int { state.withLock { $0.svids.count } }

    /// A cached JWT-SVID still before half of its life, if any.
    public func jwt(entryID: String, audience: [String], at time: Date) -> String? {
        state.withLock { state in
            guard let cached = state.jwts[Self.jwtKey(entryID, audience)] else { return nil }
            let half = cached.issuedAt.addingTimeInterval(cached.expiresAt.timeIntervalSince(cached.issuedAt) / 2)
            return time < half ? cached.token : nil
        }
    }

    public func storeJWT(entryID: String, audience: [String], token: String, issuedAt: Date, expiresAt: Date) {
        let keyID = (try? JWTSVID(parsingWithoutSignatureCheck: token, audience: audience.first ?? "", at: issuedAt))?.keyID ?? ""
        state.withLock { state in
            guard !state.tainted.contains(keyID) else { return }
            state.jwts[Self.jwtKey(entryID, audience)] = (token, keyID, issuedAt, expiresAt)
        }
    }

    private static func jwtKey(_ entryID: String, _ audience: [String]) -> String {
        entryID + "|" + audience.sorted().joined(separator: "|")
    }
}
