// SPIFFE bundles (JWK Sets) as federation and agents read them: parsed, or refused with a
// SPIFFEError; a parsed bundle serialises to JSON that parses to the same authorities.

import FuzzSupport
import SPIFFE

/// What every input is checked against, built once on first use: libFuzzer supplies `main`, so
/// top-level code here never runs and a plain global would stay uninitialised.
enum Fixture {
    static let domain = try! TrustDomain("example.org")
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzBundle(_ start: UnsafeRawPointer, _ count: Int) -> CInt {
    let bytes = fuzzInput(start, count)
    guard let bundle = try? SPIFFEBundle(trustDomain: Fixture.domain, json: bytes) else { return 0 }
    guard let json = try? bundle.json() else { preconditionFailure("a parsed bundle does not serialise") }
    guard let again = try? SPIFFEBundle(trustDomain: Fixture.domain, json: json) else { preconditionFailure("a serialised bundle does not parse") }
    precondition(again.x509Bundle.authorities == bundle.x509Bundle.authorities, "X.509 authorities changed in a round trip")
    return 0
}
