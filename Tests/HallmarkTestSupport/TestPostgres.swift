// A throwaway PostgreSQL cluster for the tests that need the real server: made with initdb in a
// temporary directory as an unprivileged user, reachable only on a Unix socket in that directory,
// stopped when the test process ends. `scripts/test` starts one for the whole run and names it in
// HALLMARK_TEST_PG_HOST (the socket directory) and HALLMARK_TEST_PG_USER; a test process started
// without them (`swift test` by hand) starts its own the first time a test asks.

public import Foundation
import Synchronization

public final class TestPostgres: Sendable {
    /// The directory holding the server's socket (libpq's host for a Unix socket).
    public let socketDirectory: String
    /// The superuser the cluster was made with.
    public let user: String

    private init(socketDirectory: String, user: String) {
        self.socketDirectory = socketDirectory
        self.user = user
    }

    private static let instance = Mutex<Result<TestPostgres, TestFailure>?>(nil)
    /// The data directory of a cluster this process started, stopped at exit.
    nonisolated(unsafe) private static var ownCluster: String?

    /// The run's cluster: the one `scripts/test` started, or one started now for this process.
    public static func shared() throws -> TestPostgres {
        try instance.withLock { instance in
            if instance == nil { instance = Result { try start() }.mapError { $0 as? TestFailure ?? TestFailure("\($0)") } }
            return try instance!.get()
        }
    }

    /// The directory of PostgreSQL's server programs (initdb, pg_ctl, postgres): Debian's newest.
    public static func binaries() throws -> String {
        let versions = (try? FileManager.default.contentsOfDirectory(atPath: "/usr/lib/postgresql")) ?? []
        guard let newest = versions.compactMap(Int.init).max() else {
            throw TestFailure("PostgreSQL is not installed (scripts/test installs it: apt-get install postgresql)")
        }
        return "/usr/lib/postgresql/\(newest)/bin"
    }

    private static func start() throws -> TestPostgres {
        let environment = ProcessInfo.processInfo.environment
        if let host = environment["HALLMARK_TEST_PG_HOST"], let user = environment["HALLMARK_TEST_PG_USER"] {
            return TestPostgres(socketDirectory: host, user: user)
        }
        let bin = try binaries()
        var template = Array("/tmp/hallmark-pg-XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else { throw TestFailure("cannot make a directory for PostgreSQL") }
        let directory = String(cString: made)
        // initdb refuses to run as root: as root, the cluster belongs to an unprivileged user.
        var prefix: [String] = []
        if geteuid() == 0 {
            guard let account = getpwnam("nobody") else { throw TestFailure("no unprivileged user to run PostgreSQL as") }
            guard chown(directory, account.pointee.pw_uid, account.pointee.pw_gid) == 0 else { throw TestFailure("cannot hand \(directory) to nobody") }
            prefix = ["/usr/sbin/runuser", "-u", "nobody", "--"]
        }
        func run(_ arguments: [String]) throws {
            let output = directory + "/setup.log"
            let status = try spawn(prefix + arguments, output: output)
            guard status == 0 else {
                throw TestFailure("\(arguments.joined(separator: " ")) failed (\(status)): \((try? String(contentsOfFile: output, encoding: .utf8)) ?? "")")
            }
        }
        let data = directory + "/data"
        try run(["\(bin)/initdb", "-D", data, "-U", "hallmark", "-A", "trust", "-E", "UTF8", "--no-sync", "--no-instructions"])
        try run([
            "\(bin)/pg_ctl", "-D", data, "-l", directory + "/server.log", "-w", "-t", "60",
            "-o", "-k \(directory) -c listen_addresses='' -F", "start",
        ])
        ownCluster = data
        atexit {
            guard let data = TestPostgres.ownCluster, let bin = try? TestPostgres.binaries() else { return }
            let stop = geteuid() == 0 ? ["/usr/sbin/runuser", "-u", "nobody", "--", "\(bin)/pg_ctl"] : ["\(bin)/pg_ctl"]
            _ = try? TestPostgres.spawn(stop + ["-D", data, "-m", "immediate", "stop"], output: "/dev/null")
            try? FileManager.default.removeItem(atPath: (data as NSString).deletingLastPathComponent)
        }
        return TestPostgres(socketDirectory: directory, user: "hallmark")
    }

    /// Runs a program to its end with no descriptor of this process but its output file: the
    /// server that pg_ctl starts outlives it, and must not hold a test's pipe (or Foundation's
    /// watch on a child) open for ever. Returns the exit status.
    static func spawn(_ argv: [String], output: String) throws -> Int32 {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, output, O_WRONLY | O_APPEND | O_CREAT, 0o644)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        // glibc 2.34's posix_spawn_file_actions_addclosefrom_np, which Swift does not import.
        typealias CloseFrom = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "posix_spawn_file_actions_addclosefrom_np") else {
            throw TestFailure("this C library cannot close a child's descriptors (glibc 2.34 or newer is needed)")
        }
        _ = unsafeBitCast(symbol, to: CloseFrom.self)(&actions, 3)
        let arguments = argv.map { strdup($0) } + [nil]
        defer { for argument in arguments { free(argument) } }
        var pid: pid_t = 0
        let spawned = posix_spawn(&pid, argv[0], &actions, nil, arguments, environ)
        guard spawned == 0 else { throw TestFailure("cannot run \(argv[0]): \(String(cString: strerror(spawned)))") }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 {
            guard errno == EINTR else { throw TestFailure("waiting for \(argv[0]): \(String(cString: strerror(errno)))") }
        }
        // WIFEXITED / WEXITSTATUS, which Swift does not import.
        return status & 0x7f == 0 ? (status >> 8) & 0xff : -(status & 0x7f)
    }

    /// A new, empty database of its own for one test.
    public func createDatabase(_ label: String = "test") throws -> String {
        let name = "\(label)_\(UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: ""))"
        let result = try psql("postgres", sql: "CREATE DATABASE \(name)")
        guard result.status == 0 else { throw TestFailure("CREATE DATABASE \(name): \(result.stderr)") }
        return name
    }

    /// Runs `sql` with psql in `database`, stopping at the first error.
    public func psql(_ database: String, sql: String) throws -> ProcessResult {
        let psql = Run.which("psql") ?? "/usr/bin/psql"
        return try Run.process(psql, ["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", socketDirectory, "-U", user, "-d", database], input: sql)
    }
}
