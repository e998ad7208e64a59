// What the agent holds: the entries it is authorised for, an SVID for each, the bundle, and the
// JWT-SVIDs it has fetched. Every change wakes the Workload API streams.

public import Foundation
public import HallmarkAttestation
public import HallmarkProto
public import SPIFFE
public import HallmarkSupport
import Synchronization

/// An X509-SVID as the agent keeps it for workloads: the bytes it serves and the facts it decides
/// by, without the parsed certificates and key objects (a few hundred bytes instead of many KB).
public struct HeldSVID: Sendable, Equatable {
    /// The chain, leaf first, DER concatenated.
    public let chainDER: [UInt8]
    /// The leaf's key, PKCS#8 DER.
    public let privateKeyDER: [UInt8]
    public let id: SPIFFEID
    public let notBefore: Date
    public let expiresAt: Date
    /// Key identifiers of the authorities above the leaf (one or two: an array is smaller than a set).
    public internal(set) var issuerKeyIDs: [String]
    /// When the agent received it. The CA backdates notBefore (for clocks that lag), so a
    /// short-lived SVID's half-life by its dates alone can come before it even arrived.
    public let receivedAt: Date

    /// - Parameters:
    ///   - chainDER: the chain as received, when at hand (saves serialising it again).
    ///   - receivedAt: when the agent received it (now, by the agent's clock).
    public init(_ svid: X509SVID, chainDER: [UInt8]? = nil, receivedAt: Date) throws {
        self.receivedAt = receivedAt
        self.chainDER = chainDER ?? svid.chainDER
        privateKeyDER = try svid.privateKeyDER()
        id = svid.id
        notBefore = svid.leaf.notValidBefore
        expiresAt = svid.expiresAt
        issuerKeyIDs = svid.issuerKeyIDs.sorted()
    }
}

/// One identity a workload may be given.
public struct CachedIdentity: Sendable, Equatable {
    public let entryID: String
    public let spiffeID: SPIFFEID
    public let selectors: [Selector]
    public let hint: String
    public let svid: HeldSVID
}

public final class AgentCache: Sendable {
    private struct State {
        var entries: [AgentAPI_Entry] = []
        /// Each entry's selectors, parsed (nil when one is malformed: that entry matches no one).
        var selectors: [[Selector]?] = []
        /// For each selector, the positions in `entries` of the entries that require it.
        var bySelector: [Selector: [Int]] = [:]
        var svids: [String: (revision: Int64, svid: HeldSVID)] = [:]
        var bundle: SPIFFEBundle?
        /// The bundle's X.509 authorities, DER concatenated, as the Workload API sends them.
        var x509BundleDER = Data()
        var jwts: [JWTKey: CachedJWT] = [:]
        /// Counts JWT cache uses, so the least recently used token is the one dropped when full.
        var jwtClock: UInt64 = 0
        /// Authorities whose SVIDs must be replaced (X.509 key identifiers, JWT kids).
        var tainted: Set<String> = []
        /// Entry revisions being signed now ("ID#revision"), so that the entry stream and the
        /// renewal loop never ask the server for the same SVID at once.
        var signing: Set<String> = []
        /// The authority key IDs the held SVIDs name, each string kept once.
        var keyIDs: Set<String> = []
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
            state.entries = entries.map(Self.kept)
            state.selectors = entries.map { entry in
                let parsed = entry.selectors.compactMap { try? Selector(type: $0.type, value: $0.value) }
                return parsed.count == entry.selectors.count ? parsed : nil
            }
            state.bySelector = [:]
            for (index, selectors) in state.selectors.enumerated() {
                for selector in Set(selectors ?? []) { state.bySelector[selector, default: []].append(index) }
            }
            if let bundle {
                state.bundle = bundle
                state.x509BundleDER = Data(bundle.x509Bundle.der)
            }
            state.tainted = tainted
            let ids = Set(entries.map(\.id))
            state.svids = state.svids.filter { ids.contains($0.key) }
            state.jwts = state.jwts.filter { ids.contains($0.key.entryID) && !tainted.contains($0.value.keyID) }
            defer { changes.notify() }
            return entries.filter { entry in
                guard Self.wantsSVID(entry), let held = state.svids[entry.id] else { return Self.wantsSVID(entry) }
                return held.revision != entry.revisionNumber || held.svid.issuerKeyIDs.contains(where: tainted.contains)
            }
        }
    }

    /// Forgets everything: the server no longer accepts this agent, so its workloads get nothing.
    public func clear() {
        state.withLock { state in
            state.entries = []
            state.selectors = []
            state.bySelector = [:]
            state.svids = [:]
            state.jwts = [:]
            changes.notify()
        }
    }

    /// Whether an SVID chains to an authority the server has tainted.
    public func isTainted(_ svid: X509SVID) -> Bool {
        state.withLock { !svid.issuerKeyIDs.isDisjoint(with: $0.tainted) }
    }

    /// What the cache keeps of an entry: what workloads are matched by and served with (ID,
    /// SPIFFE ID, selectors, hint, revision), not the fields only the server acts on (parent, DNS
    /// names, TTLs, expiry): on thousands of entries, the parent's ID alone is a hundred bytes each.
    static func kept(_ entry: AgentAPI_Entry) -> AgentAPI_Entry {
        var kept = AgentAPI_Entry()
        kept.id = entry.id
        kept.spiffeID = entry.spiffeID
        kept.selectors = entry.selectors
        kept.hint = entry.hint
        kept.revisionNumber = entry.revisionNumber
        return kept
    }

    /// Node aliases select agents, not workloads: no SVID is minted for them.
    static func wantsSVID(_ entry: AgentAPI_Entry) -> Bool {
        !entry.selectors.contains { $0.type == "spiffe_id" }
    }

    /// Stores SVIDs for entries (ignored for entries no longer held).
    public func store(_ svids: [(entryID: String, revision: Int64, svid: HeldSVID)]) {
        guard !svids.isEmpty else { return }
        state.withLock { state in
            let ids = Set(state.entries.map(\.id))
            // Every SVID of an authority names the same key IDs, and the entry ID is the entry's:
            // each is kept once, not once per SVID (a few hundred bytes each on 10,000 SVIDs).
            if state.keyIDs.count > 64 { state.keyIDs = Set(state.svids.values.flatMap(\.svid.issuerKeyIDs)) }
            for item in svids {
                guard let id = ids.firstIndex(of: item.entryID).map({ ids[$0] }) else { continue }
                var svid = item.svid
                svid.issuerKeyIDs = svid.issuerKeyIDs.map { state.keyIDs.insert($0).memberAfterInsert }
                state.svids[id] = (item.revision, svid)
            }
            changes.notify()
        }
    }

    /// Marks entries as being signed and returns those that were not already.
    public func claim(_ entries: [AgentAPI_Entry]) -> [AgentAPI_Entry] {
        state.withLock { state in entries.filter { state.signing.insert(Self.signingKey($0)).inserted } }
    }

    /// Ends what ``claim(_:)`` began.
    public func release(_ entries: [AgentAPI_Entry]) {
        state.withLock { state in for entry in entries { state.signing.remove(Self.signingKey(entry)) } }
    }

    private static func signingKey(_ entry: AgentAPI_Entry) -> String { "\(entry.id)#\(entry.revisionNumber)" }

    /// Plans renewals over every entry that wants an SVID, under the cache's lock and without
    /// copying the entries out: the renewal loop plans after every change, and an array of 10,000
    /// entries made for each plan left the agent's heap a fifth larger.
    /// - Returns: the plan; of the entries in `attempts` or due now, those still without a good
    ///   SVID (missing, or from a tainted key); and the tainted authorities.
    func planRotation(
        _ planner: RotationPlanner, agent: RotationPlanner.Held, attempts: [String: Date], now: Date
    ) -> (plan: RotationPlanner.Plan, unsettled: Set<String>, tainted: Set<String>) {
        state.withLock { state in
            // Read, not copied: the collections are shared until something writes them.
            let (svids, signing, tainted) = (state.svids, state.signing, state.tainted)
            let entries = state.entries.lazy.filter(Self.wantsSVID).map { entry in
                RotationPlanner.Entry(
                    id: entry.id,
                    svid: svids[entry.id].map {
                        .init(notBefore: $0.svid.notBefore, expiresAt: $0.svid.expiresAt, issuerKeyIDs: $0.svid.issuerKeyIDs, receivedAt: $0.svid.receivedAt)
                    },
                    signing: signing.contains(Self.signingKey(entry))
                )
            }
            let plan = planner.plan(entries: entries, agent: agent, tainted: tainted, attempts: attempts, now: now)
            let unsettled = Set(attempts.keys).union(plan.renew).filter { id in
                svids[id].map { $0.svid.issuerKeyIDs.contains(where: tainted.contains) } ?? true
            }
            return (plan, unsettled, tainted)
        }
    }

    /// The entries with these IDs, in the server's order.
    func entries(withIDs ids: Set<String>) -> [AgentAPI_Entry] {
        state.withLock { state in state.entries.filter { ids.contains($0.id) } }
    }

    public var bundle: SPIFFEBundle? { state.withLock { $0.bundle } }

    /// The bundle's X.509 authorities, DER concatenated (empty before the first bundle).
    public var x509BundleDER: Data { state.withLock { $0.x509BundleDER } }

    /// Every identity whose entry's selectors are all among `selectors`, in the server's order.
    /// Only entries that require one of the caller's selectors are looked at (an entry with no
    /// selectors matches no one; the server never sends one).
    public func identities(matching selectors: Set<Selector>) -> [CachedIdentity] {
        state.withLock { state in
            var candidates = Set<Int>()
            for selector in selectors {
                if let positions = state.bySelector[selector] { candidates.formUnion(positions) }
            }
            return candidates.sorted().compactMap { index in
                let entry = state.entries[index]
                guard let required = state.selectors[index], selectors.satisfies(required), let svid = state.svids[entry.id]?.svid else { return nil }
                return CachedIdentity(entryID: entry.id, spiffeID: svid.id, selectors: required, hint: entry.hint, svid: svid)
            }
        }
    }

    public var svidCount: Int { state.withLock { $0.svids.count } }

    /// The authorities (X.509 key identifiers) the held workload SVIDs chain to.
    public var heldAuthorityIDs: Set<String> {
        // Asked after every change: filled in place, with no array of every SVID's key IDs between.
        state.withLock { state in
            var ids = Set<String>()
            for held in state.svids.values { for id in held.svid.issuerKeyIDs { ids.insert(id) } }
            return ids
        }
    }

    /// What a JWT-SVID is cached under: the entry and the audience as a set of strings, so that
    /// `["a|b"]` and `["a", "b"]` are different requests and `["b", "a"]` is the same as `["a", "b"]`.
    struct JWTKey: Hashable {
        let entryID: String
        let audience: Set<String>
    }

    struct CachedJWT {
        let token: String
        let keyID: String
        let issuedAt: Date
        let expiresAt: Date
        var lastUsed: UInt64
    }

    /// How many JWT-SVIDs are kept at most; past that the least recently used go.
    public static let jwtCapacity = 4096

    public var jwtCount: Int { state.withLock { $0.jwts.count } }

    /// A cached JWT-SVID still before half of its life, if any.
    public func jwt(entryID: String, audience: [String], at time: Date) -> String? {
        state.withLock { state in
            let key = JWTKey(entryID: entryID, audience: Set(audience))
            guard var cached = state.jwts[key] else { return nil }
            let half = cached.issuedAt.addingTimeInterval(cached.expiresAt.timeIntervalSince(cached.issuedAt) / 2)
            guard time < half else { return nil }
            state.jwtClock += 1
            cached.lastUsed = state.jwtClock
            state.jwts[key] = cached
            return cached.token
        }
    }

    public func storeJWT(entryID: String, audience: [String], token: String, issuedAt: Date, expiresAt: Date) {
        let keyID = (try? JWTSVID(parsingWithoutSignatureCheck: token, audience: audience.first ?? "", at: issuedAt))?.keyID ?? ""
        state.withLock { state in
            guard !state.tainted.contains(keyID) else { return }
            state.jwtClock += 1
            state.jwts[JWTKey(entryID: entryID, audience: Set(audience))] = CachedJWT(
                token: token, keyID: keyID, issuedAt: issuedAt, expiresAt: expiresAt, lastUsed: state.jwtClock
            )
            if state.jwts.count > Self.jwtCapacity {
                // Drop the least recently used eighth at once, so that a full cache sorts rarely.
                let victims = state.jwts.sorted { $0.value.lastUsed < $1.value.lastUsed }.prefix(Self.jwtCapacity / 8)
                for (key, _) in victims { state.jwts[key] = nil }
            }
        }
    }
}
