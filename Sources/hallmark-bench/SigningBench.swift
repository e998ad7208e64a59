// CSR → X509-SVID signing in process on one core, against the crypto limit of the same run:
// 1 / (1/P-256 sign rate + 1/P-256 verify rate) with the same crypto library (one signature for
// the leaf, one verification for the CSR).

import Crypto
import Foundation
import HallmarkCA
import SPIFFE

func signingBenchmarks(seconds: Double) throws -> [Figure] {
    let key = P256.Signing.PrivateKey()
    let message = Array(repeating: UInt8(0x5a), count: 256)
    let signature = try key.signature(for: message)
    let signRate = try rate(seconds) { _ = try key.signature(for: message) }
    let verifyRate = rate(seconds) { _ = key.publicKey.isValidSignature(signature, for: message) }
    let limit = 1 / (1 / signRate + 1 / verifyRate)

    let now = Date()
    let ca = try X509CA.selfSigned(trustDomain: Bench.trustDomain, ttl: 86400, now: now)
    let id = try SPIFFEID(parsing: "spiffe://bench.example/workload")
    let csrs = try (0..<64).map { _ in try SVIDRequest().csr }
    var index = 0
    let signing = try rate(seconds) {
        _ = try ca.issueX509SVID(X509SVIDParams(csr: csrs[index % csrs.count], spiffeID: id, ttl: 3600, now: now))
        index += 1
    }
    return [
        Figure(name: "p256.sign", value: signRate, unit: "ops/s", note: "swift-crypto, one core"),
        Figure(name: "p256.verify", value: verifyRate, unit: "ops/s", note: "swift-crypto, one core"),
        Figure(name: "crypto.limit", value: limit, unit: "SVIDs/s", note: "1 / (1/sign + 1/verify)"),
        Figure(name: "x509svid.sign", value: signing, unit: "SVIDs/s", note: "CSR parse + verify, leaf from the template, sign"),
        .atLeast("x509svid.sign / crypto.limit", signing / limit, "ratio", limit: 0.8),
    ]
}
