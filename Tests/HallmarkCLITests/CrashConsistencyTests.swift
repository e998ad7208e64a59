// Crashes at the worst moment, with SIGKILL on real processes: what was acknowledged survives,
// the database stays sound, and agents and workloads carry on.

import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import HallmarkProto
import HallmarkTestSupport
import Synchronization
import Testing

/// What the registering clients saw, shared between their tasks.
private final class Registrations: Sendable {
    let acknowledged = Mutex<[String]>([])
    let cutOff = Atomic<Int>(0)
}

@Suite("crash consistency")
struct CrashConsistencyTests {
    @Test("SIGKILL during 1,000 registrations from 10 clients: every acknowledged entry survives, integrity_check ok")
    func killDuringRegistrations() async throws {
        let server = try TestServer()
        let seen = Registrations()
        let socket = server.adminSocket
        // Ten clients, 100 registrations each, all at once; the server dies partway through.
        let clients = Task {
            await withTaskGroup(of: Void.self) { group in
                for client in 0..<10 {
                    group.addTask {
                        guard let transport = try? HTTP2ClientTransport.Posix(target: .unixDomainSocket(path: socket), transportSecurity: .plaintext) else { return }
                        try? await withGRPCClient(transport: transport) { grpc in
                            let admin = Admin_Admin.Client(wrapping: grpc)
                            for index in 0..<100 {
                                let request = Admin_CreateEntryRequest.with {
                                    $0.entry = Admin_Entry.with {
                                        $0.spiffeID = "spiffe://example.org/crash/\(client)/\(index)"
                                        $0.parentID = "spiffe://example.org/node/a"
                                        $0.selectors = [Admin_Selector.with { $0.type = "unix"; $0.value = "uid:\(client * 100 + index)" }]
                                    }
                                }
                                var options = CallOptions.defaults
                                options.waitForReady = false
                                options.timeout = .seconds(10)
                                do {
                                    let created = try await admin.createEntry(request, options: options)
                                    seen.acknowledged.withLock { $0.append(created.id) }
                                } catch {
                                    seen.cutOff.add(1, ordering: .relaxed)
                                    return
                                }
                            }
                        }
                    }
                }
            }
        }
        // Kill once a good part is acknowledged, while the rest are in flight.
        let deadline = Date().addingTimeInterval(60)
        while seen.acknowledged.withLock({ $0.count }) < 300 && Date() < deadline { try await Task.sleep(for: .milliseconds(5)) }
        server.kill()
        await clients.value
        let acked = seen.acknowledged.withLock { $0 }
        #expect(acked.count >= 300 && acked.count < 1000, "the kill came at \(acked.count) acknowledgements")
        #expect(seen.cutOff.load(ordering: .relaxed) > 0, "no request was cut off by the kill")

        #expect(try server.sqlite("PRAGMA integrity_check").stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "ok")
        try server.start()
        let listed = try server.hallmark(["entry", "show", "--output", "json"])
        let stored = Set(((try JSONSerialization.jsonObject(with: Data(listed.stdout.utf8)) as? [[String: Any]]) ?? []).compactMap { $0["id"] as? String })
        let missing = acked.filter { !stored.contains($0) }
        #expect(missing.isEmpty, "\(missing.count) acknowledged entries are gone after the crash")
        #expect(try server.hallmark(["audit", "verify"]).status == 0, "the audit chain does not verify after the crash")
    }

    @Test("SIGKILL the agent while it rotates: restarted, it serves SVIDs again within 5 s")
    func killAgentDuringRotation() throws {
        let server = try TestServer()
        let agent = try TestAgent(server: server)
        // A 4 s SVID is renewed every 2 s: the agent is always close to a rotation.
        try agent.register("/rotating", selectors: ["unix:uid:\(getuid())"], extra: ["--x509-ttl", "4"])
        _ = try agent.waitForSVID("spiffe://example.org/rotating")
        let rotating = Date().addingTimeInterval(20)
        while !agent.log.contains("renewing SVIDs at half-life") && Date() < rotating { usleep(10_000) }
        #expect(agent.log.contains("renewing SVIDs at half-life"))
        agent.kill()
        let restarted = Date()
        try agent.start()
        _ = try agent.waitForSVID("spiffe://example.org/rotating", timeout: 5)
        let elapsed = Date().timeIntervalSince(restarted)
        print("agent back to serving \(String(format: "%.2f", elapsed)) s after restart")
        #expect(elapsed < 5)
    }

    @Test("SIGKILL the server: agents keep serving cached SVIDs, and resume when it returns")
    func killServerWithAgents() throws {
        let server = try TestServer()
        let agent = try TestAgent(server: server)
        try agent.register("/cached", selectors: ["unix:uid:\(getuid())"])
        _ = try agent.waitForSVID("spiffe://example.org/cached")
        server.kill()
        // Served from the cache while the server is down, more than once.
        for _ in 0..<3 {
            let fetched = try agent.workload(["svid", "fetch", "--output", "json"])
            #expect(fetched.status == 0 && fetched.stdout.contains("spiffe://example.org/cached"), "\(fetched.stderr)")
            usleep(300_000)
        }
        try server.start()
        // Back: a registration made now reaches the workload through the same agent.
        try agent.register("/after-restart", selectors: ["unix:uid:\(getuid())"])
        _ = try agent.waitForSVID("spiffe://example.org/after-restart", timeout: 30)
        #expect(try agent.workload(["svid", "fetch", "--output", "json"]).stdout.contains("spiffe://example.org/cached"))
    }
}
