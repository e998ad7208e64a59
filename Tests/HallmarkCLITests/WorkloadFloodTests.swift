// A local user flooding the Workload API of a real agent — new audiences, connections, calls on
// one connection, connections that never speak, a reader that never reads — is refused by a
// gRPC status naming the limit it hit, while another user (uid 65534, through the hallmark CLI)
// keeps being served throughout.

import Foundation
import GRPCCore
import HallmarkTestSupport
import Testing

@Suite("Workload API under a flood", .serialized)
struct WorkloadFloodTests {
    typealias Raw = WorkloadAPIProtocolTests.RawConnection
    static let bystander: UInt32 = 65534
    static let resourceExhausted = String(RPCError.Code.resourceExhausted.rawValue)

    /// An agent with the given limits, an identity for this process's uid and one for the bystander.
    static func agent(_ limits: [String]) throws -> TestAgent {
        let server = try TestServer()
        let agent = try TestAgent(server: server, attestation: ["--join-token", try TestAgent.token(server)] + limits)
        try agent.register("/flooder", selectors: ["unix:uid:\(getuid())"])
        try agent.register("/bystander", selectors: ["unix:uid:\(bystander)"])
        _ = try agent.waitForSVID("spiffe://example.org/flooder")
        _ = try agent.waitForSVID("spiffe://example.org/bystander", uid: bystander)
        return agent
    }

    /// The bystander still gets its X509-SVID and a JWT-SVID for a new audience.
    static func bystanderServed(_ agent: TestAgent, _ moment: String) throws {
        let x509 = try agent.workload(["svid", "fetch", "--output", "json"], uid: bystander)
        #expect(x509.status == 0 && x509.stdout.contains("spiffe://example.org/bystander"), "\(moment): \(x509.stderr)")
        let jwt = try agent.workload(["jwt", "fetch", "--audience", "spiffe://example.org/\(moment.filter(\.isLetter))", "--output", "json"], uid: bystander)
        #expect(jwt.status == 0 && jwt.stdout.contains("spiffe://example.org/bystander"), "\(moment): \(jwt.stderr)")
    }

    /// Opens a raw connection and waits for the agent's SETTINGS: by then it has been counted.
    static func connect(_ agent: TestAgent, initialWindow: UInt32? = nil) throws -> Raw {
        let connection = try Raw(agent.socket, initialWindow: initialWindow)
        _ = try connection.frames { $0.type == 0x4 && $0.flags & 0x1 == 0 }
        return connection
    }

    /// The status and message ending `stream`, reading until they come.
    static func status(_ connection: Raw, _ stream: UInt32) throws -> (code: String, message: String) {
        let frames = try connection.frames { $0.type == 0x1 && $0.stream == stream && $0.flags & 0x1 != 0 }
        let trailers = try #require(frames.last?.headers)
        return (trailers.first(name: "grpc-status") ?? "", (trailers.first(name: "grpc-message") ?? "").removingPercentEncoding ?? "")
    }

    @Test("new audiences, connections and calls past their limits are refused by name; another uid is served throughout")
    func flood() throws {
        let agent = try Self.agent([
            "--workload-connections-per-uid", "8", "--workload-streams-per-connection", "4",
            "--workload-jwt-mint-rate", "0.01", "--workload-jwt-mint-burst", "5",
        ])
        try Self.bystanderServed(agent, "before")

        // Audiences: five new ones are signed, the sixth is refused; a cached one is still served.
        // (The bystander's own four new audiences are within its own burst.)
        for index in 1...5 {
            let minted = try agent.workload(["jwt", "fetch", "--audience", "spiffe://example.org/a\(index)"])
            #expect(minted.status == 0, "audience \(index): \(minted.stderr)")
        }
        let refused = try agent.workload(["jwt", "fetch", "--audience", "spiffe://example.org/a6"])
        #expect(refused.status != 0)
        #expect(refused.stderr.contains("resourceExhausted") && refused.stderr.contains("--workload-jwt-mint-rate"), "\(refused.stderr)")
        #expect(try agent.workload(["jwt", "fetch", "--audience", "spiffe://example.org/a1"]).status == 0, "a cached JWT-SVID was refused")
        try Self.bystanderServed(agent, "after the audience flood")

        // Connections: eight are held; the ninth hears why it is refused, and is closed.
        let held = try (0..<8).map { _ in try Self.connect(agent) }
        let ninth = try Self.connect(agent)
        try ninth.grpcRequest(stream: 1)
        let status = try Self.status(ninth, 1)
        #expect(status.code == Self.resourceExhausted)
        #expect(status.message.contains("--workload-connections-per-uid") && status.message.contains("has 8 Workload API connections open"), "\(status.message)")
        #expect(throws: (any Error).self, "the refused connection stayed open") { _ = try ninth.frames(until: { _ in false }, timeout: 5) }
        try Self.bystanderServed(agent, "during the connection flood")

        // Calls: four streams follow the cache on one connection; the fifth is refused.
        let connection = held[0]
        for stream: UInt32 in [1, 3, 5, 7] {
            try connection.grpcRequest(stream: stream)
            _ = try connection.frames { $0.type == 0x0 && $0.stream == stream }
        }
        try connection.grpcRequest(stream: 9)
        let fifth = try Self.status(connection, 9)
        #expect(fifth.code == Self.resourceExhausted)
        #expect(fifth.message.contains("--workload-streams-per-connection"), "\(fifth.message)")
        try Self.bystanderServed(agent, "during the stream flood")
        #expect(!agent.log.contains("Fatal error"), "the agent crashed")
        #expect(agent.log.contains("Workload API connection refused"), "the refusal was not logged")
    }

    @Test("the limit on connections in all, the preface timeout, and a reader that never reads")
    func connectionsAndTimeouts() throws {
        let agent = try Self.agent([
            "--workload-connections", "3", "--workload-preface-timeout", "0.5", "--workload-buffered-bytes", "32768",
        ])

        // In all: three connections of this uid are held, the fourth is refused naming the limit.
        var held = try (0..<3).map { _ in try Self.connect(agent) }
        let fourth = try Self.connect(agent)
        try fourth.grpcRequest(stream: 1)
        let refused = try Self.status(fourth, 1)
        #expect(refused.code == Self.resourceExhausted)
        #expect(refused.message.contains("--workload-connections)"), "\(refused.message)")
        // A connection that closes is counted out: the next one is served.
        held.removeLast()
        let deadline = Date().addingTimeInterval(10)
        var served = false
        while !served && Date() < deadline {
            let next = try Self.connect(agent)
            try next.grpcRequest(stream: 1)
            let frames = try next.frames { ($0.type == 0x0 || $0.flags & 0x1 != 0) && $0.stream == 1 }
            served = frames.last?.type == 0x0
            if served { held.append(next) }
        }
        #expect(served, "a closed connection was never counted out")
        held.removeAll()

        // A connection that never sends the HTTP/2 preface is closed after --workload-preface-timeout.
        let silent = try HostileInputTests.raw(agent.socket, [], timeout: 10)
        #expect(silent.closed, "a connection that never spoke HTTP/2 was still open after 10 s")

        // A reader that never reads (a window of one byte): its answers pile up to the byte limit,
        // then its new calls are refused naming it.
        let slow = try Self.connect(agent, initialWindow: 1)
        var stream: UInt32 = 1
        var refusal: (code: String, message: String)?
        while refusal == nil && stream < 200 {
            try slow.grpcRequest(stream: stream)
            let headers = try slow.frames { $0.type == 0x1 && $0.stream == stream }.last!
            if headers.flags & 0x1 != 0 {
                refusal = (headers.headers?.first(name: "grpc-status") ?? "", (headers.headers?.first(name: "grpc-message") ?? "").removingPercentEncoding ?? "")
            }
            stream += 2
        }
        let bytes = try #require(refusal, "no call was refused after \(stream / 2) unread answers")
        #expect(bytes.code == Self.resourceExhausted)
        #expect(bytes.message.contains("--workload-buffered-bytes"), "\(bytes.message)")
        #expect(stream / 2 > 3, "refused after only \(stream / 2) calls: the limit counted more than the unread answers")
        try Self.bystanderServed(agent, "while a reader does not read")
        #expect(!agent.log.contains("Fatal error"), "the agent crashed")
    }
}

@Suite("agent API rate limits", .serialized)
struct AgentRateLimitTests {
    @Test("the server signs each agent's X509-SVIDs and JWT-SVIDs within its limits: deferred CSRs still arrive, a JWT past the limit is refused by name")
    func perAgent() throws {
        let server = try TestServer(arguments: [
            "--agent-x509-burst", "3", "--agent-x509-rate", "2", "--agent-jwt-burst", "2", "--agent-jwt-rate", "0.01",
        ])
        let agent = try TestAgent(server: server)
        // Six entries at once: three are signed at once, the rest as the bucket refills.
        for index in 1...6 { try agent.register("/w\(index)", selectors: ["unix:uid:\(getuid())"]) }
        for index in 1...6 { _ = try agent.waitForSVID("spiffe://example.org/w\(index)", timeout: 30) }
        #expect(server.log.contains("CSRs refused: rate limit"), "the server's X.509 limit never deferred a CSR")
        #expect(agent.log.contains("the server deferred CSRs"), "the agent did not say its CSRs were deferred")

        let first = try agent.workload(["jwt", "fetch", "--audience", "spiffe://example.org/one", "--spiffe-id", "spiffe://example.org/w1"])
        let second = try agent.workload(["jwt", "fetch", "--audience", "spiffe://example.org/two", "--spiffe-id", "spiffe://example.org/w1"])
        #expect(first.status == 0 && second.status == 0, "\(first.stderr) \(second.stderr)")
        let third = try agent.workload(["jwt", "fetch", "--audience", "spiffe://example.org/three", "--spiffe-id", "spiffe://example.org/w1"])
        #expect(third.status != 0)
        #expect(third.stderr.contains("resourceExhausted") && third.stderr.contains("--agent-jwt-rate"), "\(third.stderr)")
        #expect(third.stderr.contains(agent.spiffeID), "the refusal does not name the agent: \(third.stderr)")
        let fourth = try agent.workload(["jwt", "fetch", "--audience", "spiffe://example.org/four", "--spiffe-id", "spiffe://example.org/w1"])
        #expect(fourth.status != 0)

        // Refusals are audited, but an agent held at its limit adds one record a minute, not one a call.
        let records = try JSONSerialization.jsonObject(with: Data(try server.hallmark(["audit", "show", "--output", "json"]).stdout.utf8)) as? [[String: Any]] ?? []
        let refusals = records.filter { ($0["result"] as? String) == "refused" && (($0["detail"] as? String) ?? "").contains("are limited to") }
        #expect(refusals.filter { $0["action"] as? String == "jwt.issue" }.count == 1, "\(refusals)")
        #expect(refusals.filter { $0["action"] as? String == "x509.issue" }.count == 1, "\(refusals)")
    }
}
