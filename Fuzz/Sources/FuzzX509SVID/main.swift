// X509-SVID chains as a workload or agent receives them: concatenated DER certificates, verified
// by Hallmark's SPIFFE verifier against a fixed bundle: ca.pem beside this file, a test CA made
// with openssl whose key (seed-keys/) signs the seed chains. Anything but a clean refusal or a
// verified ID is a finding.

import Foundation
import FuzzSupport
import SPIFFE

/// What every input is checked against, built once on first use: libFuzzer supplies `main`, so
/// top-level code here never runs and a plain global would stay uninitialised.
enum Fixture {
    static let bundle = X509Bundle(
        trustDomain: try! TrustDomain("example.org"),
        authorities: try! X509SVID.certificates(
            pem: String(contentsOf: URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("ca.pem"), encoding: .utf8)
        )
    )
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzX509SVID(_ start: UnsafeRawPointer, _ count: Int) -> CInt {
    let bytes = fuzzInput(start, count)
    guard let chain = try? X509SVID.certificates(der: bytes) else { return 0 }
    let verified = blocking { try? await X509SVIDVerifier(bundles: Fixture.bundle).verify(chain, at: fuzzNow) }
    if let verified {
        precondition(verified.id.trustDomain.name == "example.org", "verified an ID outside the bundle's trust domain: \(verified.id)")
    }
    return 0
}
