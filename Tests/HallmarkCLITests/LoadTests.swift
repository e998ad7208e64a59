// Load on one agent: 500 Workload API streams at once while it holds 10,000 SVIDs. All are served
// and see an update, a stream whose client never reads holds up no one, and closing them all
// gives back every file descriptor.

import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import HallmarkTestSupport
import SPIFFEWorkloadAPI
import Synchronization
import Testing

/// Messages each stream has received, by stream number.
private final class StreamCounts: Sendable {
    let counts: Mutex<[Int: Int]> = Mutex([:])
    func received(_ stream: Int) { counts.withLock { $0[stream, default: 0] += 1 } }
    func streams(withAtLeast messages: Int) -> Int { counts.withLock { $0.values.filter { $0 >= messages }.count } }
}

@Suite("load")
struct LoadTests {
    static func openDescriptors(_ pid: Int32) -> Int {
        (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd").count) ?? -1
    }

    static func rssMiB(_ pid: Int32) -> Int {
        let status = (try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)) ?? ""
        let line = status.split(separator: "\n").first { $0.hasPrefix("VmRSS:") } ?? ""
        return (Int(line.split(separator: " ").dropFirst().first ?? "0") ?? 0) / 1024
    }

    /// 10,000 entries for other uids, written straight into the server's database in one
    /// transaction; the next registration through the admin API sends them all to the agent.
    static func bulkEntries(_ server: TestServer, parent: String, count: Int) throws {
        var sql = "BEGIN;\n"
        for index in 0..<count {
            let id = "load-\(index)"
            sql += "INSERT INTO entries (id, spiffe_id, parent_id, selector_key, x509_svid_ttl, jwt_svid_ttl, created_at) "
                + "VALUES ('\(id)', 'spiffe://example.org/load/\(index)', '\(parent)', 'unix:uid:\(100_000 + index)', 0, 0, 1);\n"
            sql += "INSERT INTO entry_selectors (entry_id, type, value) VALUES ('\(id)', 'unix', 'uid:\(100_000 + index)');\n"
        }
        sql += "COMMIT;\n"
        let file = try server.dir.write("load.sql", sql)
        let result = try Run.process("/bin/sh", ["-c", "/usr/bin/sqlite3 '\(server.databasePath)' < '\(file)'"])
        guard result.status == 0 else { throw TestFailure("sqlite3: \(result.stderr)") }
    }

    @Test("500 concurrent streams with 10,000 cached SVIDs: all served, a non-reader stalls no one, no descriptor leaks")
    func fiveHundredStreams() async throws {
        let server = try TestServer()
        let agent = try TestAgent(server: server)
        let pid = try #require(agent.pid)
        try Self.bulkEntries(server, parent: agent.spiffeID, count: 10_000)
        try agent.register("/load/mine", selectors: ["unix:uid:\(getuid())"])
        _ = try agent.waitForSVID("spiffe://example.org/load/mine", timeout: 120)
        let deadline = Date().addingTimeInterval(180)
        while !agent.log.contains("cached=10001") && Date() < deadline { try await Task.sleep(for: .milliseconds(200)) }
        #expect(agent.log.contains("cached=10001"), "the agent did not cache all 10,001 SVIDs")
        let descriptorsBefore = Self.openDescriptors(pid)
        let rssBefore = Self.rssMiB(pid)

        let counts = StreamCounts()
        let client = try WorkloadAPIClient(endpoint: agent.socket)
        let streams = Task {
            try await withThrowingTaskGroup(of: Void.self) { group in
                // Ten connections of 50 streams each (below HTTP/2's usual 100 per connection).
                for connection in 0..<10 {
                    group.addTask {
                        try await client.withClient { api in
                            try await withThrowingTaskGroup(of: Void.self) { inner in
                                for stream in 0..<50 {
                                    inner.addTask {
                                        try await api.fetchX509SVID(WorkloadAPI_X509SVIDRequest(), metadata: WorkloadAPIClient.securityMetadata) { response in
                                            for try await _ in response.messages { counts.received(connection * 50 + stream) }
                                        }
                                    }
                                }
                                try await inner.waitForAll()
                            }
                        }
                    }
                }
                // One more stream whose client never reads a message.
                group.addTask {
                    try await client.withClient { api in
                        try await api.fetchX509SVID(WorkloadAPI_X509SVIDRequest(), metadata: WorkloadAPIClient.securityMetadata) { _ in
                            try await Task.sleep(for: .seconds(600))
                        }
                    }
                }
                try await group.waitForAll()
            }
        }
        let served = Date().addingTimeInterval(60)
        while counts.streams(withAtLeast: 1) < 500 && Date() < served { try await Task.sleep(for: .milliseconds(50)) }
        #expect(counts.streams(withAtLeast: 1) == 500, "only \(counts.streams(withAtLeast: 1)) of 500 streams got their first message")
        let descriptorsDuring = Self.openDescriptors(pid)
        let rssDuring = Self.rssMiB(pid)

        // An update reaches all 500, the non-reader notwithstanding.
        try agent.register("/load/update", selectors: ["unix:uid:\(getuid())"])
        let updated = Date().addingTimeInterval(60)
        while counts.streams(withAtLeast: 2) < 500 && Date() < updated { try await Task.sleep(for: .milliseconds(50)) }
        #expect(counts.streams(withAtLeast: 2) == 500, "only \(counts.streams(withAtLeast: 2)) of 500 streams saw the update")

        streams.cancel()
        _ = try? await streams.value
        var descriptorsAfter = Self.openDescriptors(pid)
        let released = Date().addingTimeInterval(20)
        while descriptorsAfter > descriptorsBefore && Date() < released {
            try await Task.sleep(for: .milliseconds(100))
            descriptorsAfter = Self.openDescriptors(pid)
        }
        print("agent descriptors \(descriptorsBefore) → \(descriptorsDuring) with 501 streams → \(descriptorsAfter); RSS \(rssBefore) → \(rssDuring) MiB")
        #expect(descriptorsDuring >= descriptorsBefore + 11, "the 11 connections did not show as descriptors")
        #expect(descriptorsAfter <= descriptorsBefore, "descriptors leaked: \(descriptorsBefore) before, \(descriptorsAfter) after")
        #expect(rssDuring - rssBefore < 200, "RSS grew by \(rssDuring - rssBefore) MiB for 501 streams")
        #expect(try agent.workload(["healthcheck"]).status == 0)
    }
}
