// A real `hallmark agent` process attested to a TestServer with a join token.

public import Foundation

public final class TestAgent: @unchecked Sendable {
    public let server: TestServer
    public let dataDir: String
    public let socket: String
    /// The agent API addresses given as --server, in order (the server's own by default).
    public let servers: [String]
    public private(set) var spiffeID = ""
    private var process: Process?
    /// The running agent's process ID, for /proc.
    public var pid: Int32? { process?.processIdentifier }
    private var starts = 0

    /// Starts the agent and waits until it serves the Workload API: attested with a join token
    /// (made here unless given), or with `attestation` arguments (such as `--attestor tpm …`).
    public init(server: TestServer, name: String = "agent", token: String? = nil, attestation: [String]? = nil, servers: [String]? = nil) throws {
        self.server = server
        self.servers = servers ?? [server.agentAddress]
        dataDir = server.dir.path("\(name)-data")
        try FileManager.default.createDirectory(atPath: server.dir.path("\(name)-socket"), withIntermediateDirectories: true)
        chmod(server.dir.path("\(name)-socket"), 0o755)
        socket = server.dir.path("\(name)-socket/api.sock")
        let bundle = try server.dir.write("\(name)-bundle.pem", try server.hallmark(["bundle", "show"]).stdout)
        if let attestation {
            try start(["--trust-bundle", bundle] + attestation)
        } else {
            try start(["--trust-bundle", bundle, "--join-token", try token ?? Self.token(server)])
        }
        // "hallmark agent listening" names the agent: agent=spiffe://… socket=…
        if let range = log.range(of: #"agent=spiffe://[^ ]+"#, options: .regularExpression) {
            spiffeID = String(log[range].dropFirst("agent=".count))
        }
    }

    deinit {
        if let process, process.isRunning {
            Foundation.kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
    }

    public static func token(_ server: TestServer) throws -> String {
        let result = try server.hallmark(["token", "generate", "--output", "json"])
        guard let object = try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any], let token = object["token"] as? String else {
            throw TestFailure("token generate failed: \(result.stderr)")
        }
        return token
    }

    public var logPath: String { server.dir.path("agent-\(ObjectIdentifier(self).hashValue)-\(starts).log") }
    public var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    /// Starts the agent process (again) with extra arguments and waits for it to listen.
    public func start(_ extra: [String] = ["--insecure-bootstrap"]) throws {
        starts += 1
        FileManager.default.createFile(atPath: logPath, contents: nil)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Run.hallmarkBinary)
        process.arguments = ["agent", "run", "--data-dir", dataDir] + servers.flatMap { ["--server", $0] } + ["--socket", socket] + extra
        let log = FileHandle(forWritingAtPath: logPath)!
        process.standardOutput = log
        process.standardError = log
        process.standardInput = FileHandle.nullDevice
        try process.run()
        self.process = process
        try waitFor("hallmark agent listening", in: logPath, while: process)
    }

    /// SIGTERM, then waits; returns the exit status.
    @discardableResult
    public func stop() -> Int32 {
        guard let process else { return -1 }
        process.terminate()
        process.waitUntilExit()
        return process.terminationStatus
    }

    public func kill() {
        guard let process else { return }
        Foundation.kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }

    /// Registers an entry under this agent; returns its ID.
    @discardableResult
    public func register(_ path: String, selectors: [String], extra: [String] = []) throws -> String {
        var arguments = ["entry", "create", "--spiffe-id", "spiffe://\(server.trustDomain)\(path)", "--parent-id", spiffeID, "--output", "json"]
        for selector in selectors { arguments += ["--selector", selector] }
        let result = try server.hallmark(arguments + extra)
        guard let object = try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any], let id = object["id"] as? String else {
            throw TestFailure("entry create failed: \(result.stderr)")
        }
        return id
    }

    /// Runs a workload command against this agent's socket, optionally as another uid.
    public func workload(_ arguments: [String], uid: UInt32? = nil, gid: UInt32 = 0) throws -> ProcessResult {
        let full = arguments + ["--socket", socket]
        if let uid {
            return try Run.process("/usr/bin/setpriv", ["--reuid=\(uid)", "--regid=\(gid)", "--clear-groups", "--", Run.hallmarkBinary] + full)
        }
        return try Run.process(Run.hallmarkBinary, full)
    }

    /// Polls `svid fetch` until it lists `spiffeID` (the agent gets entries pushed, not instantly).
    public func waitForSVID(_ spiffeID: String, uid: UInt32? = nil, timeout: TimeInterval = 30) throws -> ProcessResult {
        let deadline = Date().addingTimeInterval(timeout)
        var last: ProcessResult?
        while Date() < deadline {
            let result = try workload(["svid", "fetch", "--output", "json"], uid: uid)
            if result.status == 0, result.stdout.contains("\"\(spiffeID)\"") { return result }
            last = result
            usleep(50_000)
        }
        throw TestFailure("\(spiffeID) never reached the workload: \(last?.stderr ?? "")")
    }
}
