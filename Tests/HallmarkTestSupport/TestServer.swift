// A real `hallmark server` process on a temporary data directory, for end-to-end tests.

public import Foundation

public final class TestServer: @unchecked Sendable {
    public let dir: TemporaryDirectory
    public let dataDir: String
    public let adminSocket: String
    public let trustDomain: String
    private let arguments: [String]
    private var process: Process?
    private var starts = 0

    /// Starts a server and waits until it listens.
    public init(trustDomain: String = "example.org", arguments: [String] = []) throws {
        dir = try TemporaryDirectory("hallmark-server")
        dataDir = dir.path("data")
        // Outside the 0700 data directory, so that the tests can reach it as other uids.
        try FileManager.default.createDirectory(atPath: dir.path("run"), withIntermediateDirectories: true)
        chmod(dir.url.path, 0o755)
        chmod(dir.path("run"), 0o755)
        adminSocket = dir.path("run/admin.sock")
        self.trustDomain = trustDomain
        self.arguments = arguments
        try start()
    }

    deinit {
        if let process, process.isRunning {
            Foundation.kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
    }

    public var logPath: String { dir.path("server-\(starts).log") }

    /// Everything the server has logged across all its starts.
    public var log: String {
        (1...max(starts, 1)).compactMap { try? String(contentsOfFile: dir.path("server-\($0).log"), encoding: .utf8) }.joined()
    }

    public var databasePath: String { (dataDir as NSString).appendingPathComponent("hallmark.db") }

    /// Starts (again) and waits for the "listening" line.
    public func start() throws {
        starts += 1
        FileManager.default.createFile(atPath: logPath, contents: nil)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Run.hallmarkBinary)
        process.arguments = [
            "server", "run", "--data-dir", dataDir, "--trust-domain", trustDomain, "--admin-socket", adminSocket,
            "--listen", "127.0.0.1:\(agentPort ?? 0)",
        ] + arguments
        let log = FileHandle(forWritingAtPath: logPath)!
        process.standardOutput = log
        process.standardError = log
        process.standardInput = FileHandle.nullDevice
        try process.run()
        self.process = process
        try waitFor("hallmark server listening", in: logPath, while: process)
        // The agent API keeps its port across restarts, so that agents can come back to it.
        if agentPort == nil, let text = try? String(contentsOfFile: logPath, encoding: .utf8),
            let range = text.range(of: #"agent_api=127\.0\.0\.1:[0-9]+"#, options: .regularExpression)
        {
            agentPort = Int(text[range].split(separator: ":").last!)
        }
    }

    /// The agent API's port, once the server has listened.
    public private(set) var agentPort: Int?
    public var agentAddress: String { "127.0.0.1:\(agentPort ?? 0)" }

    /// SIGTERM, and wait for the exit; returns the exit status.
    @discardableResult
    public func stop() -> Int32 {
        guard let process else { return -1 }
        process.terminate()
        process.waitUntilExit()
        return process.terminationStatus
    }

    /// SIGKILL, and wait for the exit.
    public func kill() {
        guard let process else { return }
        Foundation.kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }

    public var isRunning: Bool { process?.isRunning ?? false }

    /// Runs the CLI against this server; `uid` runs it as that user (through setpriv).
    public func hallmark(_ arguments: [String], uid: UInt32? = nil) throws -> ProcessResult {
        let environment = ["HALLMARK_ADMIN_SOCKET": adminSocket]
        if let uid {
            return try Run.process(
                "/usr/bin/setpriv", ["--reuid=\(uid)", "--regid=0", "--clear-groups", "--", Run.hallmarkBinary] + arguments,
                environment: environment
            )
        }
        return try Run.process(Run.hallmarkBinary, arguments, environment: environment)
    }

    /// The database as SQL text (sqlite3 .dump), to compare before and after.
    public func dump() throws -> String {
        try sqlite(".dump").stdout
    }

    public func sqlite(_ sql: String) throws -> ProcessResult {
        try Run.process("/usr/bin/sqlite3", [databasePath, sql])
    }
}

/// Waits until `needle` appears in the file at `path`, failing if `process` exits first or 60 s pass.
public func waitFor(_ needle: String, in path: String, while process: Process, timeout: TimeInterval = 60, requireRunning: Bool = true) throws {
    let deadline = Date().addingTimeInterval(timeout)
    while Date() < deadline {
        if let text = try? String(contentsOfFile: path, encoding: .utf8), text.contains(needle) { return }
        guard process.isRunning || !requireRunning else {
            let text = (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
            throw TestFailure("the process exited (\(process.terminationStatus)) before logging '\(needle)':\n\(text)")
        }
        usleep(20_000)
    }
    throw TestFailure("'\(needle)' did not appear in \(path) within \(Int(timeout)) s")
}

/// Waits until `condition` holds (state a test can observe: an admin answer, a file, the Workload
/// API), checking every 50 ms, failing after `timeout`.
public func waitUntil(_ what: String, timeout: TimeInterval = 30, _ condition: () throws -> Bool) throws {
    let deadline = Date().addingTimeInterval(timeout)
    while Date() < deadline {
        if try condition() { return }
        usleep(50_000)
    }
    throw TestFailure("\(what) did not happen within \(Int(timeout)) s")
}

public struct TestFailure: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}
