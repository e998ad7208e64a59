// The peer: Debian's cfssl (`cfssl serve`) signing the same kind of CSR over its HTTP API on
// loopback, one CSR a request, with a P-256 CA of its own.

import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import HallmarkCA
import SPIFFE
import SwiftASN1
import X509

/// Signs CSRs through cfssl for `seconds`; returns certificates per second of cfssl's CPU time
/// and of wall clock.
func cfsslSigning(cfssl: String, scratch: ScratchDirectory, seconds: Double) async throws -> (perCPU: Double, perSecond: Double) {
    let ca = try X509CA.selfSigned(trustDomain: Bench.trustDomain, ttl: 86400, now: Date())
    try ca.certificate.serializeAsPEM().pemString.write(toFile: scratch.file("cfssl-ca.pem"), atomically: true, encoding: .utf8)
    try ca.privateKey.serializeAsPEM().pemString.write(toFile: scratch.file("cfssl-ca-key.pem"), atomically: true, encoding: .utf8)
    let config = #"{"signing": {"default": {"expiry": "1h", "usages": ["digital signature", "server auth", "client auth"]}}}"#
    try config.write(toFile: scratch.file("cfssl-config.json"), atomically: true, encoding: .utf8)
    let port = try freePort()
    let server = try Launched(
        "cfssl", cfssl,
        [
            "serve", "-address", "127.0.0.1", "-port", "\(port)", "-ca", scratch.file("cfssl-ca.pem"), "-ca-key", scratch.file("cfssl-ca-key.pem"),
            "-config", scratch.file("cfssl-config.json"), "-loglevel", "2",
        ],
        log: scratch.file("cfssl.log")
    )
    defer { server.stop() }
    // Quiet (warnings only), so cfssl logs nothing per certificate: it is up when its port answers.
    try await server.waitForPort(port)

    let csrs = try (0..<64).map { _ in try SVIDRequest().csr }
    let bodies = try csrs.map { csr in
        let pem = PEMDocument(type: "CERTIFICATE REQUEST", derBytes: csr).pemString
        return try JSONSerialization.data(withJSONObject: ["certificate_request": pem])
    }
    let configuration = URLSessionConfiguration.ephemeral
    configuration.httpMaximumConnectionsPerHost = 8
    let session = URLSession(configuration: configuration)
    let url = URL(string: "http://127.0.0.1:\(port)/api/v1/cfssl/sign")!
    @Sendable func sign(_ body: Data) async throws {
        var request = URLRequest(url: url)
        request.httpMethod = "POST"
        request.httpBody = body
        request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        let (data, _) = try await session.data(for: request)
        guard let object = try JSONSerialization.jsonObject(with: data) as? [String: Any], object["success"] as? Bool == true,
            let result = object["result"] as? [String: Any], let certificate = result["certificate"] as? String, certificate.contains("BEGIN CERTIFICATE")
        else { throw BenchError("cfssl refused a CSR: \(String(decoding: data, as: UTF8.self).prefix(300))") }
    }
    for body in bodies.prefix(8) { try await sign(body) }  // warm-up
    let cpu = server.cpuSeconds, start = monotonic()
    let count = try await withThrowingTaskGroup(of: Int.self) { group in
        for worker in 0..<8 {
            group.addTask {
                var count = 0
                while monotonic() < start + seconds || count < 4 {
                    try await sign(bodies[(worker * 8 + count) % bodies.count])
                    count += 1
                }
                return count
            }
        }
        return try await group.reduce(0, +)
    }
    let elapsed = monotonic() - start, used = server.cpuSeconds - cpu
    session.invalidateAndCancel()
    return (Double(count) / max(used, 0.01), Double(count) / elapsed)
}
