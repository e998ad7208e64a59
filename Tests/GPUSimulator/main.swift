// hallmark-gpu-simulator: stands in for NVML where there is no GPU. The agent runs it with
// `--nonce HEX`; it prints the evidence as JSON, one object per GPU: {"report": HEX, "chain": PEM}.
// Usage: hallmark-gpu-simulator --state DIR [--create] --nonce HEX

import Foundation
import HallmarkTestSupport

let arguments = CommandLine.arguments
func value(_ flag: String) -> String? { arguments.firstIndex(of: flag).flatMap { $0 + 1 < arguments.count ? arguments[$0 + 1] : nil } }

guard let dir = value("--state") else {
    FileHandle.standardError.write(Data("hallmark-gpu-simulator: --state DIR is required\n".utf8))
    exit(2)
}
do {
    if arguments.contains("--create") {
        try GPUSimulator.create(in: dir)
        exit(0)
    }
    guard let hex = value("--nonce"), hex.count == 64 else { throw TestFailure("--nonce HEX (32 bytes) is required") }
    let nonce = stride(from: 0, to: 64, by: 2).map { UInt8(String(Array(hex)[$0..<$0 + 2]), radix: 16) ?? 0 }
    let evidence = try GPUSimulator.evidence(GPUSimulator.State(dir: dir), nonce: nonce)
    let object = [["report": evidence.report.map { String(format: "%02x", $0) }.joined(), "chain": evidence.chainPEM]]
    FileHandle.standardOutput.write(try JSONSerialization.data(withJSONObject: object))
} catch {
    FileHandle.standardError.write(Data("hallmark-gpu-simulator: \(error)\n".utf8))
    exit(1)
}
