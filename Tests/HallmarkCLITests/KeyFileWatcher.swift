// Another local user watching a directory with inotify, opening every file the moment it appears,
// is renamed into place, or changes mode; whatever it manages to read is reported. Runs as
// `python3` (ctypes and inotify, nothing to install) under setpriv as another uid.

import Foundation
import HallmarkTestSupport

final class KeyFileWatcher: @unchecked Sendable {
    static let script = #"""
    import ctypes, os, struct, sys, select
    directory, stop = sys.argv[1], sys.argv[2]
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    fd = libc.inotify_init1(os.O_NONBLOCK)
    IN_ATTRIB, IN_CLOSE_WRITE, IN_MOVED_TO, IN_CREATE = 0x4, 0x8, 0x80, 0x100
    if libc.inotify_add_watch(fd, directory.encode(), IN_ATTRIB | IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE) < 0:
        print("watch failed", ctypes.get_errno(), flush=True); sys.exit(2)
    print("watching", flush=True)
    events = reads = 0
    while not os.path.exists(stop):
        ready, _, _ = select.select([fd], [], [], 0.05)
        if not ready:
            continue
        buffer = os.read(fd, 65536)
        offset = 0
        while offset < len(buffer):
            _, mask, _, length = struct.unpack_from("iIII", buffer, offset)
            name = buffer[offset + 16:offset + 16 + length].rstrip(b"\0").decode()
            offset += 16 + length
            events += 1
            try:
                with open(os.path.join(directory, name), "rb") as handle:
                    if b"PRIVATE KEY" in handle.read():
                        reads += 1
                        print("read a key from", name, flush=True)
            except OSError:
                pass
    print(f"events {events} reads {reads}", flush=True)
    """#

    let process = Process()
    let output: String
    let stopFile: String

    /// Starts watching `directory` as `uid`; returns once the watch is in place.
    init(directory: String, uid: UInt32, scratch: TemporaryDirectory) throws {
        let script = try scratch.write("watcher.py", Self.script)
        chmod(script, 0o644)
        output = scratch.path("watcher.out")
        stopFile = scratch.path("watcher.stop")
        FileManager.default.createFile(atPath: output, contents: nil)
        chmod(output, 0o666)
        process.executableURL = URL(fileURLWithPath: "/usr/bin/setpriv")
        process.arguments = ["--reuid=\(uid)", "--regid=\(uid)", "--clear-groups", "--", "/usr/bin/python3", script, directory, stopFile]
        process.standardOutput = FileHandle(forWritingAtPath: output)
        process.standardError = FileHandle(forWritingAtPath: output)
        try process.run()
        try waitFor("watching", in: output, while: process, timeout: 20)
    }

    /// Stops the watcher and returns (events seen, keys read).
    func finish() throws -> (events: Int, reads: Int, log: String) {
        FileManager.default.createFile(atPath: stopFile, contents: nil)
        process.waitUntilExit()
        let log = try String(contentsOfFile: output, encoding: .utf8)
        guard let line = log.split(separator: "\n").last(where: { $0.hasPrefix("events ") }) else { throw TestFailure("the watcher ended without a count: \(log)") }
        let numbers = line.split(separator: " ").compactMap { Int($0) }
        return (numbers[0], numbers[1], log)
    }
}
