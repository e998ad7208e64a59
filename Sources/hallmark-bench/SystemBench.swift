// Benchmarks on real processes: a `hallmark server` on SQLite and a `hallmark agent` attested to
// it by join token, driven through the admin socket, the agent API (mTLS, as an agent calls it)
// and the Workload API socket.
//
// In order, on one server and one agent:
//   - agent RSS with 1 cached SVID;
//   - with 1,000 cached SVIDs: batch signing over the agent API against cfssl, propagation of 200
//     entry changes to an open Workload API stream, FetchX509SVID latency under 100 clients;
//   - with 10,000 cached SVIDs: agent RSS growth per SVID.

import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import HallmarkAttestation
import HallmarkProto
import HallmarkStore
import SPIFFE
import SPIFFETLS
import SPIFFEWorkloadAPI
import Synchronization
import X509
#if canImport(Glibc)
import Glibc
#endif

typealias AdminClient = Admin_Admin.Client<HTTP2ClientTransport.Posix>
typealias AgentAPIClient = AgentAPI_AgentAPI.Client<HTTP2ClientTransport.Posix>

/// How big each system benchmark is.
struct SystemSizes {
    var cachedSVIDs = 1_000
    var memorySVIDs = 10_000
    var batch = 500
    var propagationChanges = 200
    var workloadClients = 100
    var fetchesPerClient = 20
    var lightFetchesPerClient = 5

    static let quick = SystemSizes(cachedSVIDs: 20, memorySVIDs: 60, batch: 10, propagationChanges: 4, workloadClients: 4, fetchesPerClient: 2, lightFetchesPerClient: 1)
}

enum Bench {
    static let trustDomain = try! TrustDomain("bench.example")
    /// The join token's alias: every benchmark entry is parented to it.
    static let nodeID = try! SPIFFEID(parsing: "spiffe://bench.example/bench/node")

    /// Entries for workloads this process is not (uids from 100,000), parented to the node.
    static func entries(_ prefix: String, _ range: Range<Int>) throws -> [RegistrationEntry] {
        try range.map { index in
            RegistrationEntry(
                spiffeID: try SPIFFEID(parsing: "spiffe://bench.example/\(prefix)/\(index)"), parentID: nodeID,
                selectors: [try Selector(type: "unix", value: "uid:\(100_000 + index)")]
            )
        }
    }

    static func adminEntry(_ id: SPIFFEID, uid: UInt32) -> Admin_Entry {
        Admin_Entry.with {
            $0.spiffeID = id.description
            $0.parentID = nodeID.description
            $0.selectors = [Admin_Selector.with { $0.type = "unix"; $0.value = "uid:\(uid)" }]
        }
    }
}

/// Runs the system benchmarks and returns their figures.
func systemBenchmarks(hallmark: String, cfssl: String?, sizes: SystemSizes, seconds: Double) async throws -> [Figure] {
    let scratch = try ScratchDirectory("system")
    defer { scratch.remove() }
    // Batch signing measures how fast the server can sign, one agent asking as fast as it can:
    // the per-agent limit on X509-SVIDs (a policy, 500 a second by default) is lifted for it.
    let server = try Launched(
        "server", hallmark, [
            "server", "run", "--data-dir", scratch.file("server"), "--trust-domain", Bench.trustDomain.name, "--listen", "127.0.0.1:0",
            "--agent-x509-rate", "1000000000", "--agent-x509-burst", "1000000000",
        ],
        log: scratch.file("server.log")
    )
    defer { server.stop() }
    let listening = try await server.waitForLine(containing: "hallmark server listening")
    guard let portText = listening.range(of: #"agent_api=127\.0\.0\.1:(\d+)"#, options: .regularExpression).map({ listening[$0].split(separator: ":").last! }),
        let port = Int(portText)
    else { throw BenchError("no agent_api address in: \(listening)") }

    let transport = try HTTP2ClientTransport.Posix(target: .unixDomainSocket(path: scratch.file("server/admin.sock")), transportSecurity: .plaintext)
    return try await withGRPCClient(transport: transport) { grpc in
        let admin = AdminClient(wrapping: grpc)
        let store = try SQLiteStore(path: scratch.file("server/hallmark.db"))
        let uid = getuid()
        let token = try await admin.createJoinToken(Admin_CreateJoinTokenRequest.with { $0.spiffeID = Bench.nodeID.description; $0.ttlSeconds = 600 })
        let bundlePEM = try await admin.getBundle(Admin_GetBundleRequest()).x509Pem
        try bundlePEM.write(toFile: scratch.file("bundle.pem"), atomically: true, encoding: .utf8)
        let base = try SPIFFEID(parsing: "spiffe://bench.example/bench/workload")
        _ = try await admin.createEntry(Admin_CreateEntryRequest.with { $0.entry = Bench.adminEntry(base, uid: uid) })

        try FileManager.default.createDirectory(atPath: scratch.file("socket"), withIntermediateDirectories: true, attributes: [.posixPermissions: 0o755])
        let socket = scratch.file("socket/api.sock")
        let agent = try Launched(
            "agent", hallmark,
            [
                "agent", "run", "--data-dir", scratch.file("agent"), "--server", "127.0.0.1:\(port)", "--trust-bundle", scratch.file("bundle.pem"),
                "--socket", socket, "--attestor", "join-token", "--join-token", token.token,
            ],
            log: scratch.file("agent.log")
        )
        defer { agent.stop() }
        try await agent.waitForLine(containing: "hallmark agent listening")
        try await agent.waitForLog("cached SVIDs", atLeast: 1) { lastLogValue($0, "cached") }
        try await Task.sleep(for: .seconds(1))
        let rssOne = agent.rssKiB
        var figures: [Figure] = []

        // More cached SVIDs: the entries go straight into SQLite, then one entry through the admin
        // API wakes the server, which sends the agent all of them.
        var cached = 1, imported = 0
        func grow(to total: Int) async throws {
            let count = total - cached - 1
            let more = try Bench.entries("cached", imported..<(imported + count))
            try await store.importEntries(more, audit: AuditEvent(actor: .admin(uid: Int64(uid)), action: "entry.import", target: "bench", detail: "\(count) entries"))
            imported += count
            let poke = try SPIFFEID(parsing: "spiffe://bench.example/poke/\(total)")
            _ = try await admin.createEntry(Admin_CreateEntryRequest.with { $0.entry = Bench.adminEntry(poke, uid: 200_000 + UInt32(total)) })
            try await agent.waitForLog("cached SVIDs", atLeast: total) { lastLogValue($0, "cached") }
            cached = total
        }
        try await grow(to: sizes.cachedSVIDs)

        let batchEntries = try await store.entries(matching: EntryFilter(parentID: Bench.nodeID)).filter { $0.spiffeID.path.hasPrefix("/cached/") }.prefix(sizes.batch)
        let batch = try await batchSigning(
            server: server, port: port, agentDir: scratch.file("agent"), bundlePEM: bundlePEM, entryIDs: batchEntries.map(\.id), seconds: seconds
        )
        figures.append(Figure(name: "agentapi.batch.svids_per_cpu_second", value: batch.perCPU, unit: "SVIDs/CPU-s", note: "server CPU time; batches of \(batchEntries.count) over mTLS"))
        figures.append(Figure(name: "agentapi.batch.svids_per_second", value: batch.perSecond, unit: "SVIDs/s", note: "wall clock, one client"))
        if let cfssl {
            let peer = try await cfsslSigning(cfssl: cfssl, scratch: scratch, seconds: seconds)
            figures.append(Figure(name: "cfssl.sign.svids_per_cpu_second", value: peer.perCPU, unit: "certs/CPU-s", note: "cfssl serve CPU time; one CSR per HTTP request, 8 concurrent"))
            figures.append(Figure(name: "cfssl.sign.svids_per_second", value: peer.perSecond, unit: "certs/s", note: "wall clock"))
            figures.append(.atLeast("agentapi.batch / cfssl, per server core", batch.perCPU / peer.perCPU, "ratio", limit: 1))
        } else {
            figures.append(Figure(name: "agentapi.batch / cfssl, per server core", value: .nan, unit: "ratio", target: "> 1", met: false, note: "cfssl not installed (apt install golang-cfssl)"))
        }

        let propagation = try await propagationLatencies(admin: admin, socket: socket, base: base, uid: uid, changes: sizes.propagationChanges)
        figures.append(.below("propagation p50", quantile(propagation, 0.5) * 1000, "ms", limit: 100, note: "\(propagation.count) entry creates and deletes → open FetchX509SVID stream"))
        figures.append(.below("propagation p99", quantile(propagation, 0.99) * 1000, "ms", limit: 1000))

        /// Runs a Workload API pass and says what each side spent per call: the agent's CPU from
        /// /proc, the clients' (this process) from getrusage.
        func measured(_ pass: () async throws -> [Double]) async throws -> (samples: [Double], cpu: String) {
            let agentCPU = agent.cpuSeconds, clientCPU = processCPUSeconds()
            let samples = try await pass()
            let perCall = { (seconds: Double) in Figure.format(seconds / Double(samples.count) * 1e6) }
            return (samples, "CPU per call: agent \(perCall(agent.cpuSeconds - agentCPU)) µs, clients \(perCall(processCPUSeconds() - clientCPU)) µs")
        }
        let (fetches, fetchCPU) = try await measured {
            try await fetchLatencies(socket: socket, clients: sizes.workloadClients, fetchesPerClient: sizes.fetchesPerClient)
        }
        let note = "\(sizes.workloadClients) clients at 10 fetches/s each, \(fetches.count) fetches, \(cached) SVIDs cached; \(fetchCPU)"
        figures.append(.below("workloadapi.fetch_x509 p50", quantile(fetches, 0.5) * 1000, "ms", limit: 1, note: note))
        figures.append(.below("workloadapi.fetch_x509 p99", quantile(fetches, 0.99) * 1000, "ms", limit: 5))
        // The floor: the same load refused before the agent does anything (no security header).
        let (floor, floorCPU) = try await measured {
            try await fetchLatencies(socket: socket, clients: sizes.workloadClients, fetchesPerClient: sizes.fetchesPerClient, refused: true)
        }
        figures.append(Figure(
            name: "workloadapi.refused_call p50", value: quantile(floor, 0.5) * 1000, unit: "ms",
            note: "the same load refused at once (no security header): the transport alone (HTTP/2 and gRPC framing, both sides); p99 \(Figure.format(quantile(floor, 0.99) * 1000)) ms; \(floorCPU)"
        ))
        // The same clients at a tenth of the load: what a call costs when it does not queue.
        let light = try await fetchLatencies(socket: socket, clients: sizes.workloadClients, fetchesPerClient: sizes.lightFetchesPerClient, callsPerSecond: 1)
        figures.append(Figure(
            name: "workloadapi.fetch_x509 p50, 1 call/s each", value: quantile(light, 0.5) * 1000, unit: "ms",
            note: "\(sizes.workloadClients) clients, \(light.count) fetches; p99 \(Figure.format(quantile(light, 0.99) * 1000)) ms"
        ))

        try await grow(to: sizes.memorySVIDs)
        try await Task.sleep(for: .seconds(2))
        let rssMany = agent.rssKiB
        let perSVID = Double(rssMany - rssOne) * 1024 / Double(cached - 1) / 1000
        figures.append(.below(
            "agent.rss_per_svid", perSVID, "KB", limit: 3,
            note: "RSS \(rssOne / 1024) MiB with 1 SVID, \(rssMany / 1024) MiB with \(cached)"
        ))
        return figures
    }
}

// MARK: Batch signing over the agent API

/// Signs batches as the agent does, with the agent's own SVID, for `seconds`; returns SVIDs per
/// second of server CPU time and of wall clock.
func batchSigning(
    server: Launched, port: Int, agentDir: String, bundlePEM: String, entryIDs: [String], seconds: Double
) async throws -> (perCPU: Double, perSecond: Double) {
    let chainPEM = try String(contentsOfFile: (agentDir as NSString).appendingPathComponent("agent-svid.pem"), encoding: .utf8)
    let keyPEM = try String(contentsOfFile: (agentDir as NSString).appendingPathComponent("agent-svid.key"), encoding: .utf8)
    let bundle = X509Bundle(trustDomain: Bench.trustDomain, authorities: try X509SVID.certificates(pem: bundlePEM))
    let transport = try HTTP2ClientTransport.Posix(
        target: .ipv4(host: "127.0.0.1", port: port),
        transportSecurity: .mTLS(certificateChain: [.bytes(Array(chainPEM.utf8), format: .pem)], privateKey: .bytes(Array(keyPEM.utf8), format: .pem)) { tls in
            tls.serverCertificateVerification = .noHostnameVerification
            tls.customVerificationCallback = SPIFFEPeerVerification.callback(
                bundles: { bundle }, authorizer: .matching("the server") { $0.path == "/hallmark/server" }
            )
        },
        config: .defaults { $0.http2.authority = "hallmark-server" }
    )
    let request = AgentAPI_BatchNewX509SVIDRequest.with { request in
        request.params = entryIDs.map { id in
            AgentAPI_X509SVIDParams.with {
                $0.entryID = id
                $0.csr = Data((try? SVIDRequest().csr) ?? [])
            }
        }
    }
    return try await withGRPCClient(transport: transport) { grpc in
        let api = AgentAPIClient(wrapping: grpc)
        func signed() async throws -> Int {
            let response = try await api.batchNewX509SVID(request)
            let good = response.results.filter { $0.statusCode == 0 && !$0.chain.isEmpty }.count
            guard good == entryIDs.count else {
                throw BenchError("batch signing: \(entryIDs.count - good) of \(entryIDs.count) refused: \(response.results.first { $0.statusCode != 0 }?.statusMessage ?? "")")
            }
            return good
        }
        _ = try await signed()  // warm-up: connection, caches
        let cpu = server.cpuSeconds, start = monotonic()
        var count = 0, batches = 0
        while monotonic() < start + seconds || batches < 3 {
            count += try await signed()
            batches += 1
        }
        let elapsed = monotonic() - start, used = server.cpuSeconds - cpu
        return (Double(count) / max(used, 0.01), Double(count) / elapsed)
    }
}

// MARK: Propagation

/// Arrival time and SPIFFE IDs of each X.509 context a watcher receives.
typealias Arrival = (time: Double, ids: Set<String>)

/// Creates and deletes entries for this process's uid; each latency runs from the admin call to
/// the first message on an already-open FetchX509SVID stream that reflects it.
func propagationLatencies(admin: AdminClient, socket: String, base: SPIFFEID, uid: uid_t, changes: Int) async throws -> [Double] {
    let client = try WorkloadAPIClient(endpoint: socket)
    let (arrivals, sink) = AsyncStream<Arrival>.makeStream()
    let watcher = Task {
        try await client.watchX509Contexts { context in
            sink.yield((monotonic(), Set(context.svids.map(\.id.description))))
            return !Task.isCancelled
        }
    }
    defer { watcher.cancel() }
    var iterator = arrivals.makeAsyncIterator()
    func wait(until condition: (Set<String>) -> Bool) async throws -> Double {
        while let arrival = await iterator.next() {
            if condition(arrival.ids) { return arrival.time }
        }
        throw BenchError("propagation: the Workload API stream ended")
    }
    _ = try await wait { $0.contains(base.description) }
    var latencies: [Double] = []
    for index in 0..<(changes / 2) {
        let id = try SPIFFEID(parsing: "spiffe://bench.example/propagation/\(index)")
        let created = monotonic()
        let entry = try await admin.createEntry(Admin_CreateEntryRequest.with { $0.entry = Bench.adminEntry(id, uid: uid) })
        latencies.append(try await wait { $0.contains(id.description) } - created)
        let deleted = monotonic()
        _ = try await admin.deleteEntry(Admin_DeleteEntryRequest.with { $0.id = entry.id })
        latencies.append(try await wait { !$0.contains(id.description) } - deleted)
    }
    return latencies
}

// MARK: Workload API latency

/// `clients` connections at once, each making `fetchesPerClient` FetchX509SVID calls at random
/// moments, ten a second on average (an open load: 100 clients make 1,000 calls a second, and
/// a slow answer does not slow the callers down), timing each from the call to the first message.
/// Each client's connection is opened by one more call first, which is not timed: connecting is
/// not part of a FetchX509SVID call.
///
/// - Parameter refused: leave out the security header, so that the agent refuses each call before
///   any work of its own: the gRPC round trip alone, the floor under a real answer.
func fetchLatencies(socket: String, clients: Int, fetchesPerClient: Int, callsPerSecond: Int = 10, refused: Bool = false) async throws -> [Double] {
    let meanGap = 1000 / callsPerSecond
    return try await withThrowingTaskGroup(of: [Double].self) { group in
        for _ in 0..<clients {
            group.addTask {
                let client = try WorkloadAPIClient(endpoint: socket)
                return try await client.withClient { api in
                    var samples: [Double] = []
                    // The first call also opens the client's connection: made, not timed.
                    try await api.fetchX509SVID(WorkloadAPI_X509SVIDRequest(), metadata: WorkloadAPIClient.securityMetadata) { response in
                        for try await message in response.messages where !message.svids.isEmpty { return }
                    }
                    for _ in 0..<fetchesPerClient {
                        try await Task.sleep(for: .milliseconds(Int.random(in: 0..<(2 * meanGap))))
                        let start = monotonic()
                        if refused {
                            do {
                                try await api.fetchX509SVID(WorkloadAPI_X509SVIDRequest()) { response in
                                    for try await _ in response.messages {}
                                }
                                throw BenchError("fetch: a call without the security header was answered")
                            } catch let error as RPCError where error.code == .invalidArgument {}
                            samples.append(monotonic() - start)
                            continue
                        }
                        let first: Double = try await api.fetchX509SVID(WorkloadAPI_X509SVIDRequest(), metadata: WorkloadAPIClient.securityMetadata) { response in
                            for try await message in response.messages where !message.svids.isEmpty { return monotonic() }
                            throw BenchError("fetch: the stream ended without an SVID")
                        }
                        samples.append(first - start)
                    }
                    return samples
                }
            }
        }
        var all: [Double] = []
        for try await samples in group { all += samples }
        return all
    }
}
