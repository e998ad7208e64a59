// CSRs as the agent API receives them: the CA parses, checks the signature and key, and signs;
// or refuses with a CAError. A signed leaf must carry the registered ID and the CSR's key.

import Foundation
import FuzzSupport
import HallmarkCA
import SPIFFE
import X509

/// What every input is checked against, built once on first use: libFuzzer supplies `main`, so
/// top-level code here never runs and a plain global would stay uninitialised.
enum Fixture {
    static let ca = try! X509CA.selfSigned(trustDomain: try! TrustDomain("example.org"), ttl: 86400 * 365 * 10, now: fuzzNow)
    static let id = try! SPIFFEID(parsing: "spiffe://example.org/model/llama")
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzCSR(_ start: UnsafeRawPointer, _ count: Int) -> CInt {
    let csr = fuzzInput(start, count)
    do {
        let issued = try Fixture.ca.issueX509SVID(X509SVIDParams(csr: csr, spiffeID: Fixture.id, dnsNames: ["llama.example.org"], ttl: 3600, now: fuzzNow))
        let leaf = try Certificate(derEncoded: issued.chain[0])
        let key = try X509CA.checkedCSRKey(csr)
        let leafID = try SPIFFEID(x509SVIDLeaf: leaf)
        precondition(leaf.publicKey == key, "the leaf's key is not the CSR's")
        precondition(leafID == Fixture.id, "the leaf names \(leafID), not \(Fixture.id)")
    } catch is CAError {
    } catch {
        preconditionFailure("an unexpected error: \(error)")
    }
    return 0
}
