// How the CLI reports: plain text or JSON on stdout, errors on stderr with a non-zero exit.

import ArgumentParser
import Foundation
import HallmarkSupport

enum OutputFormat: String, ExpressibleByArgument, CaseIterable {
    case text, json
}

enum CLIOutput {
    static func json(_ value: some Encodable) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        encoder.dateEncodingStrategy = .iso8601
        return String(decoding: try encoder.encode(value), as: UTF8.self)
    }

    /// Writes `hallmark: <message>` to stderr and returns the exit to throw.
    static func fail(_ message: String, exitCode: Int32 = 1) -> ExitCode {
        FileHandle.standardError.write(Data("hallmark: \(message)\n".utf8))
        return ExitCode(exitCode)
    }

    /// Reads a file named by a flag; a file that cannot be read exits 2, naming it.
    static func readFile(_ path: String, flag: String) throws -> Data {
        // Read through a handle, so pipes and process substitutions (/dev/fd/N) work too.
        guard let handle = FileHandle(forReadingAtPath: path), let data = try? handle.readToEnd() ?? Data() else {
            throw fail("\(flag): cannot read '\(path)': no such file, or not readable", exitCode: 2)
        }
        return data
    }

    /// Writes each (name, text, mode) into `directory` (created if missing) through PrivateFiles, so
    /// that a key is never readable by others, even while it is written.
    static func writeFiles(_ files: [(name: String, text: String, mode: Int)], to directory: String, flag: String) throws {
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            for file in files {
                try PrivateFiles.write(file.text, to: (directory as NSString).appendingPathComponent(file.name), mode: mode_t(file.mode))
            }
        } catch let error as PrivateFileError {
            throw fail("\(flag): \(error.message)")
        }
    }
}

extension Date {
    /// Parses an RFC 3339 time (`2026-06-01T12:00:00Z`, fractional seconds and offsets allowed).
    init(rfc3339 text: String, flag: String) throws {
        if let date = try? Date(text, strategy: Date.ISO8601FormatStyle(includingFractionalSeconds: true)) {
            self = date
        } else if let date = try? Date(text, strategy: Date.ISO8601FormatStyle()) {
            self = date
        } else {
            throw ValidationError("\(flag): '\(text)' is not an RFC 3339 time such as 2026-06-01T12:00:00Z")
        }
    }
}
