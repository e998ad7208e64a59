// What every benchmark shares: figures, percentiles, and the processes it runs (a server, an
// agent, cfssl) with their memory and CPU time read from /proc.

import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// One measured figure; `met` is nil for figures that only give context.
struct Figure: Encodable {
    let name: String
    let value: Double
    let unit: String
    var target: String = ""
    var met: Bool? = nil
    var note: String = ""

    /// A figure with a ceiling: met when `value < limit`; the note says by how much it missed.
    static func below(_ name: String, _ value: Double, _ unit: String, limit: Double, note: String = "") -> Figure {
        let met = value < limit
        let miss = met ? "" : "missed by \(format(value - limit)) \(unit) (\(format(value / limit))× the target)"
        return Figure(name: name, value: value, unit: unit, target: "< \(format(limit))", met: met, note: [note, miss].filter { !$0.isEmpty }.joined(separator: "; "))
    }

    /// A figure with a floor: met when `value >= limit`.
    static func atLeast(_ name: String, _ value: Double, _ unit: String, limit: Double, note: String = "") -> Figure {
        let met = value >= limit
        let miss = met ? "" : "missed by \(format(limit - value))"
        return Figure(name: name, value: value, unit: unit, target: ">= \(format(limit))", met: met, note: [note, miss].filter { !$0.isEmpty }.joined(separator: "; "))
    }

    static func format(_ value: Double) -> String {
        if value == value.rounded(), abs(value) < 1e15 { return String(format: "%.0f", value) }
        return abs(value) >= 100 ? String(format: "%.0f", value) : abs(value) >= 1 ? String(format: "%.2f", value) : String(format: "%.3f", value)
    }
}

struct BenchError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// The `fraction` quantile (0...1) of `samples`, nearest rank.
func quantile(_ samples: [Double], _ fraction: Double) -> Double {
    guard !samples.isEmpty else { return .nan }
    let sorted = samples.sorted()
    let rank = Int((fraction * Double(sorted.count)).rounded(.up)) - 1
    return sorted[min(max(rank, 0), sorted.count - 1)]
}

/// Seconds on a monotonic clock.
func monotonic() -> Double { Double(DispatchTime.now().uptimeNanoseconds) / 1e9 }

/// Runs `body` repeatedly for `seconds`; returns operations per second.
func rate(_ seconds: Double, _ body: () throws -> Void) rethrows -> Double {
    var count = 0
    let start = monotonic()
    var now = start
    while now < start + seconds {
        for _ in 0..<16 { try body() }
        count += 16
        now = monotonic()
    }
    return Double(count) / (now - start)
}

/// A child process whose output goes to a log file.
final class Launched: @unchecked Sendable {
    let name: String
    let process = Process()
    let logPath: String
    let started = monotonic()

    init(_ name: String, _ executable: String, _ arguments: [String], log: String) throws {
        self.name = name
        logPath = log
        FileManager.default.createFile(atPath: log, contents: nil)
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.standardOutput = handle
        process.standardError = handle
        try process.run()
    }

    var pid: Int32 { process.processIdentifier }
    var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    /// Waits until a log line contains `text` and returns that line.
    @discardableResult
    func waitForLine(containing text: String, timeout: TimeInterval = 120) async throws -> String {
        let deadline = monotonic() + timeout
        while monotonic() < deadline {
            if let line = log.split(separator: "\n").first(where: { $0.contains(text) }) { return String(line) }
            guard process.isRunning else { throw BenchError("\(name) exited (status \(process.terminationStatus)) before logging '\(text)':\n\(log.suffix(2000))") }
            try await Task.sleep(for: .milliseconds(5))
        }
        throw BenchError("\(name) did not log '\(text)' within \(Int(timeout)) s:\n\(log.suffix(2000))")
    }

    /// Waits until `value(log)` is at least `target`.
    func waitForLog(_ what: String, atLeast target: Int, timeout: TimeInterval = 300, _ value: (String) -> Int) async throws {
        let deadline = monotonic() + timeout
        while monotonic() < deadline {
            if value(log) >= target { return }
            guard process.isRunning else { throw BenchError("\(name) exited while waiting for \(what) ≥ \(target):\n\(log.suffix(2000))") }
            try await Task.sleep(for: .milliseconds(20))
        }
        throw BenchError("\(name): \(what) did not reach \(target) within \(Int(timeout)) s (at \(value(log)))")
    }

    /// Waits until 127.0.0.1:`port` accepts a connection.
    func waitForPort(_ port: Int, timeout: TimeInterval = 60) async throws {
        let deadline = monotonic() + timeout
        while monotonic() < deadline {
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_addr.s_addr = inet_addr("127.0.0.1")
            address.sin_port = UInt16(port).bigEndian
            let connected = withUnsafePointer(to: &address) { pointer in
                pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
            }
            close(fd)
            if connected { return }
            guard process.isRunning else { throw BenchError("\(name) exited before listening on \(port):\n\(log.suffix(2000))") }
            try await Task.sleep(for: .milliseconds(20))
        }
        throw BenchError("\(name) did not listen on \(port) within \(Int(timeout)) s")
    }

    /// Resident memory in KiB (VmRSS).
    var rssKiB: Int {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
            let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") })
        else { return 0 }
        return Int(line.split(separator: " ").dropFirst().first ?? "0") ?? 0
    }

    /// User plus system CPU time so far, in seconds.
    var cpuSeconds: Double {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8), let close = stat.lastIndex(of: ")") else { return 0 }
        // Fields after the command name start at field 3 (state); utime and stime are 14 and 15.
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        guard fields.count > 12, let user = Double(fields[11]), let system = Double(fields[12]) else { return 0 }
        return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }

    /// SIGTERM, then SIGKILL after five seconds.
    func stop() {
        guard process.isRunning else { return }
        kill(pid, SIGTERM)
        let deadline = monotonic() + 5
        while process.isRunning && monotonic() < deadline { usleep(10_000) }
        if process.isRunning { kill(pid, SIGKILL) }
        process.waitUntilExit()
    }
}

/// This process's user plus system CPU time so far, in seconds.
func processCPUSeconds() -> Double {
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    let seconds = { (time: timeval) in Double(time.tv_sec) + Double(time.tv_usec) / 1e6 }
    return seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

/// The last value of `key=N` in a log.
func lastLogValue(_ log: String, _ key: String) -> Int {
    guard let range = log.range(of: "\(key)=", options: .backwards) else { return 0 }
    return Int(log[range.upperBound...].prefix { $0.isNumber }) ?? 0
}

/// A TCP port free on loopback now.
func freePort() throws -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    address.sin_port = 0
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafeMutablePointer(to: &address) { pointer in
        pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0 }
    }
    guard bound else { throw BenchError("cannot find a free port on 127.0.0.1") }
    return Int(UInt16(bigEndian: address.sin_port))
}

/// A fresh directory under the system's temporary directory, removed by `remove()`.
struct ScratchDirectory {
    let path: String
    init(_ name: String) throws {
        path = NSTemporaryDirectory() + "hallmark-bench-\(name)-\(getpid())"
        try? FileManager.default.removeItem(atPath: path)
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }
    func file(_ name: String) -> String { (path as NSString).appendingPathComponent(name) }
    func remove() { try? FileManager.default.removeItem(atPath: path) }
}
