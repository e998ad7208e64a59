// SPIFFE IDs and trust domain names from arbitrary text: parsing either succeeds with a value
// that prints back to what parses to itself, or throws.

import FuzzSupport
import SPIFFE

/// What every input is checked against, built once on first use: libFuzzer supplies `main`, so
/// top-level code here never runs and a plain global would stay uninitialised.
enum Fixture {
    /// Longer inputs say nothing new about the parser (the spec's limit is 2,048 bytes).
    static let longest = 4096
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzSPIFFEID(_ start: UnsafeRawPointer, _ count: Int) -> CInt {
    guard count <= Fixture.longest else { return 0 }
    let text = String(decoding: fuzzInput(start, count), as: UTF8.self)
    if let id = try? SPIFFEID(parsing: text) {
        precondition((try? SPIFFEID(parsing: id.description)) == id, "a parsed SPIFFE ID does not round-trip: \(id)")
        precondition(id.isMember(of: id.trustDomain))
    }
    if let domain = try? TrustDomain(text) {
        precondition((try? TrustDomain(domain.name)) == domain, "a trust domain does not round-trip: \(domain.name)")
    }
    return 0
}
