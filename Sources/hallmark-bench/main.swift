// hallmark-bench: Hallmark's performance against the limits of the hardware it runs on and
// against a peer, measured side by side in one run (a shared machine makes absolute figures alone
// mean little). Targets are printed beside each figure; nothing here fails on a missed target.
//
// Usage: hallmark-bench [--seconds S] [--output FILE] [--quick] [--only signing,system,scale]
//                       [--hallmark PATH] [--cfssl PATH] [--keep-scale-data DIR]

import Foundation

func argument(_ flag: String) -> String? {
    let arguments = CommandLine.arguments
    return arguments.firstIndex(of: flag).flatMap { $0 + 1 < arguments.count ? arguments[$0 + 1] : nil }
}

let seconds = Double(argument("--seconds") ?? "3") ?? 3
let output = argument("--output") ?? "bench-results.json"
let quick = CommandLine.arguments.contains("--quick")
let only = Set((argument("--only") ?? "signing,system,scale").split(separator: ",").map(String.init))
let directory = (CommandLine.arguments[0] as NSString).deletingLastPathComponent
let hallmark = argument("--hallmark") ?? (directory as NSString).appendingPathComponent("hallmark")
let cfssl = argument("--cfssl") ?? ["/usr/bin/cfssl", "/usr/local/bin/cfssl"].first { FileManager.default.isExecutableFile(atPath: $0) }

/// Writes a line at once (unbuffered), so that a long run shows its progress through a pipe.
func say(_ line: String) { FileHandle.standardOutput.write(Data((line + "\n").utf8)) }

var figures: [Figure] = []
@MainActor func report(_ new: [Figure]) {
    for figure in new {
        let value = figure.value.isNaN ? "-" : "\(Figure.format(figure.value)) \(figure.unit)"
        let met = figure.met.map { $0 ? "yes" : "NO" } ?? ""
        say(
            figure.name.padding(toLength: 40, withPad: " ", startingAt: 0) + value.padding(toLength: 22, withPad: " ", startingAt: 0)
                + figure.target.padding(toLength: 10, withPad: " ", startingAt: 0) + met.padding(toLength: 5, withPad: " ", startingAt: 0)
                + figure.note
        )
    }
    figures += new
}

say("what".padding(toLength: 40, withPad: " ", startingAt: 0) + "value".padding(toLength: 22, withPad: " ", startingAt: 0) + "target    met  note")
do {
    if only.contains("signing") { report(try signingBenchmarks(seconds: seconds)) }
    if only.contains("system") {
        report(try await systemBenchmarks(hallmark: hallmark, cfssl: cfssl, sizes: quick ? .quick : SystemSizes(), seconds: seconds))
    }
    if only.contains("scale") { report(try await scaleBenchmarks(hallmark: hallmark, sizes: quick ? .quick : ScaleSizes(), keep: argument("--keep-scale-data"))) }
} catch {
    FileHandle.standardError.write(Data("hallmark-bench: \(error)\n".utf8))
    exit(1)
}

struct Results: Encodable {
    let secondsPerMeasurement: Double
    let quick: Bool
    let figures: [Figure]
}
let encoder = JSONEncoder()
encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
encoder.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
encoder.keyEncodingStrategy = .convertToSnakeCase
try encoder.encode(Results(secondsPerMeasurement: seconds, quick: quick, figures: figures)).write(to: URL(fileURLWithPath: output))
say("wrote \(output)")
