// hallmark-bench: Hallmark's performance against the limits of the hardware it runs on, measured
// side by side in one run (a shared machine makes absolute figures alone mean little).
//
// Measured so far: CSR → X509-SVID signing in process, on one core, against the crypto limit of
// the same run, 1 / (1/P-256 sign rate + 1/P-256 verify rate) with the same crypto library.
//
// Usage: hallmark-bench [--seconds S] [--output FILE]

import Crypto
import Foundation
import HallmarkCA
import SPIFFE

struct Figure: Encodable {
    let name: String
    let value: Double
    let unit: String
    let target: String
    let met: Bool?
    let note: String
}

func argument(_ flag: String) -> String? {
    let arguments = CommandLine.arguments
    return arguments.firstIndex(of: flag).flatMap { $0 + 1 < arguments.count ? arguments[$0 + 1] : nil }
}

let seconds = Double(argument("--seconds") ?? "3") ?? 3
let output = argument("--output") ?? "bench-results.json"

/// Runs `body` repeatedly for `seconds`; returns operations per second.
func rate(_ seconds: Double, _ body: () throws -> Void) rethrows -> Double {
    var count = 0
    let start = DispatchTime.now().uptimeNanoseconds
    let end = start + UInt64(seconds * 1e9)
    var now = start
    while now < end {
        for _ in 0..<16 { try body() }
        count += 16
        now = DispatchTime.now().uptimeNanoseconds
    }
    return Double(count) / (Double(now - start) / 1e9)
}

func measure() async throws -> [Figure] {
    let key = P256.Signing.PrivateKey()
    let message = Array(repeating: UInt8(0x5a), count: 256)
    let signature = try key.signature(for: message)
    let signRate = try rate(seconds) { _ = try key.signature(for: message) }
    let verifyRate = rate(seconds) { _ = key.publicKey.isValidSignature(signature, for: message) }
    let limit = 1 / (1 / signRate + 1 / verifyRate)

    let now = Date()
    let ca = try X509CA.selfSigned(trustDomain: try TrustDomain("bench.example"), ttl: 86400, now: now)
    let id = try SPIFFEID(parsing: "spiffe://bench.example/workload")
    let csrs = try (0..<64).map { _ in try SVIDRequest().csr }
    var index = 0
    // The async signer runs serially here: one core.
    var count = 0
    let start = DispatchTime.now().uptimeNanoseconds
    let end = start + UInt64(seconds * 1e9)
    var clock = start
    while clock < end {
        _ = try ca.issueX509SVID(X509SVIDParams(csr: csrs[index % csrs.count], spiffeID: id, ttl: 3600, now: now))
        index += 1
        count += 1
        clock = DispatchTime.now().uptimeNanoseconds
    }
    let signing = Double(count) / (Double(clock - start) / 1e9)
    let ratio = signing / limit
    return [
        Figure(name: "p256.sign", value: signRate, unit: "ops/s", target: "", met: nil, note: "swift-crypto, one core"),
        Figure(name: "p256.verify", value: verifyRate, unit: "ops/s", target: "", met: nil, note: "swift-crypto, one core"),
        Figure(name: "crypto.limit", value: limit, unit: "SVIDs/s", target: "", met: nil, note: "1 / (1/sign + 1/verify)"),
        Figure(name: "x509svid.sign", value: signing, unit: "SVIDs/s", target: "", met: nil, note: "CSR parse + verify, leaf from the template, sign"),
        Figure(
            name: "x509svid.sign / crypto.limit", value: ratio, unit: "ratio", target: ">= 0.8", met: ratio >= 0.8,
            note: ratio >= 0.8 ? "" : "missed by \(String(format: "%.2f", 0.8 - ratio))"
        ),
    ]
}

let figures = try await measure()
print("what".padding(toLength: 30, withPad: " ", startingAt: 0) + "value".padding(toLength: 14, withPad: " ", startingAt: 0) + "target   met")
for figure in figures {
    let value = figure.unit == "ratio" ? String(format: "%.3f", figure.value) : String(format: "%.0f %@", figure.value, figure.unit)
    let met = figure.met.map { $0 ? "yes" : "NO" } ?? ""
    print(figure.name.padding(toLength: 30, withPad: " ", startingAt: 0) + value.padding(toLength: 14, withPad: " ", startingAt: 0)
        + figure.target.padding(toLength: 9, withPad: " ", startingAt: 0) + met + (figure.note.isEmpty ? "" : "  \(figure.note)"))
}
let encoder = JSONEncoder()
encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
try encoder.encode(["seconds_per_measurement": [Figure(name: "seconds", value: seconds, unit: "s", target: "", met: nil, note: "")], "figures": figures])
    .write(to: URL(fileURLWithPath: output))
print("wrote \(output)")
