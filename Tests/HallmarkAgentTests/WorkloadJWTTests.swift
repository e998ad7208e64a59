// FetchJWTSVID in memory, with the server replaced by a minter the test counts: a token is minted
// once per entry and audience and then served from the cache, an unreachable server is
// UNAVAILABLE, and the per-uid mint limit refuses new tokens while cached ones are still served.

import Foundation
import GRPCCore
@testable import HallmarkAgent
import HallmarkAttestation
import HallmarkPeerCredentials
import HallmarkProto
import HallmarkSupport
import HallmarkTestSupport
import SPIFFE
import SPIFFEWorkloadAPI
import Synchronization
import Testing

@Suite("Workload API JWT-SVIDs in memory")
struct WorkloadJWTTests {
    /// Counts the tokens it mints; each is named after its entry, audience and number.
    final class CountingMinter: JWTMinter {
        let minted = Atomic<Int>(0)
        let clock: @Sendable () -> Date

        init(clock: @escaping @Sendable () -> Date = { Date() }) { self.clock = clock }

        func mintJWTSVID(entryID: String, audience: [String]) async throws -> (token: String, expiresAt: Date) {
            let number = minted.add(1, ordering: .sequentiallyConsistent).newValue
            return ("\(entryID):\(audience.joined(separator: ",")):\(number)", clock().addingTimeInterval(300))
        }
    }

    static let selector = try! Selector(type: "unix", value: "uid:\(getuid())")

    /// A cache holding one X509-SVID, for an entry that the caller's uid selects.
    static func cache() throws -> AgentCache {
        let ca = try TestCA.root()
        let leaf = try ca.leaf(TestCA.LeafOptions(id: "spiffe://example.org/svc", now: Date()))
        let svid = try X509SVID(certificates: [leaf.certificate, ca.certificate], privateKey: leaf.key)
        let cache = AgentCache()
        _ = cache.update(entries: [AgentAPI_Entry.with {
            $0.id = "e1"
            $0.spiffeID = "spiffe://example.org/svc"
            $0.revisionNumber = 1
            $0.selectors = [AgentAPI_Selector.with { $0.type = selector.type; $0.value = selector.value }]
        }], bundle: nil)
        cache.store([(entryID: "e1", revision: 1, svid: try HeldSVID(svid, receivedAt: Date()))])
        return cache
    }

    static let peer = PeerCredentials(pid: getpid(), uid: getuid(), gid: getgid(), startTime: PeerCredentials.startTime(of: getpid()))

    static func fetch(_ service: WorkloadAPIService, _ audience: [String]) async throws -> [String] {
        let request = try WorkloadAPI_JWTSVIDRequest.with { $0.audience = audience }.serializedBytes() as [UInt8]
        let answer = try await service.unary(.fetchJWTSVID, request, selectors: [selector], peer: peer)
        return try WorkloadAPI_JWTSVIDResponse(serializedBytes: answer).svids.map(\.svid)
    }

    @Test("a token is minted once per audience, then served from the cache")
    func mintedOnce() async throws {
        let minter = CountingMinter()
        let service = testWorkloadAPIService(cache: try Self.cache(), minter: minter)
        #expect(try await Self.fetch(service, ["inference"]) == ["e1:inference:1"])
        #expect(try await Self.fetch(service, ["inference"]) == ["e1:inference:1"])
        #expect(try await Self.fetch(service, ["training"]) == ["e1:training:2"])
        #expect(minter.minted.load(ordering: .sequentiallyConsistent) == 2)
    }

    @Test("a cached token is served until half of its life on the agent's clock, then minted anew")
    func halfLife() async throws {
        let clock = ManualClock()
        let minter = CountingMinter(clock: clock.function)
        let service = testWorkloadAPIService(cache: try Self.cache(), minter: minter, clock: clock.function)
        #expect(try await Self.fetch(service, ["inference"]) == ["e1:inference:1"])
        clock.advance(by: 149)
        #expect(try await Self.fetch(service, ["inference"]) == ["e1:inference:1"], "re-minted before half of its 300 s life")
        clock.advance(by: 2)
        #expect(try await Self.fetch(service, ["inference"]) == ["e1:inference:2"], "served past half of its life")
    }

    @Test("with no session to the server, a token not cached is UNAVAILABLE")
    func unreachable() async throws {
        let service = testWorkloadAPIService(cache: try Self.cache())
        let error = await #expect(throws: RPCError.self) { try await Self.fetch(service, ["inference"]) }
        #expect(error?.code == .unavailable)
    }

    @Test("past the uid's mint limit new tokens are refused as RESOURCE_EXHAUSTED, cached ones still served")
    func mintLimit() async throws {
        var limits = WorkloadAPILimits()
        limits.jwtMintsPerUID = .init(rate: 0.001, burst: 2)
        let minter = CountingMinter()
        let service = testWorkloadAPIService(limits: limits, cache: try Self.cache(), minter: minter)
        _ = try await Self.fetch(service, ["a"])
        _ = try await Self.fetch(service, ["b"])
        let error = await #expect(throws: RPCError.self) { try await Self.fetch(service, ["c"]) }
        #expect(error?.code == .resourceExhausted)
        #expect(error?.message.contains("--workload-jwt-mint-rate") == true)
        #expect(try await Self.fetch(service, ["a"]) == ["e1:a:1"])
        #expect(minter.minted.load(ordering: .sequentiallyConsistent) == 2)
    }
}
