// JWT-SVIDs as ValidateJWTSVID receives them: validated against a fixed bundle, or refused with a
// SPIFFEError. The fuzzer's text goes in as the token.

import Crypto
import Foundation
import FuzzSupport
import SPIFFE

/// What every input is checked against, built once on first use: libFuzzer supplies `main`, so
/// top-level code here never runs and a plain global would stay uninitialised.
enum Fixture {
    static let domain = try! TrustDomain("example.org")
    /// A fixed key, so that the seed tokens (signed with it) verify.
    static let key = try! P256.Signing.PrivateKey(rawRepresentation: [UInt8](repeating: 7, count: 32))
    static let bundle = try! JWTBundle(trustDomain: Fixture.domain, authorities: [JWTAuthority(keyID: "fuzz", publicKey: Fixture.key.publicKey)])
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzJWTSVID(_ start: UnsafeRawPointer, _ count: Int) -> CInt {
    let token = String(decoding: fuzzInput(start, count), as: UTF8.self)
    if let svid = try? JWTSVID(parsing: token, bundles: Fixture.bundle, audience: "fuzz", at: fuzzNow) {
        precondition(svid.id.trustDomain == Fixture.domain, "validated a token from another trust domain")
        precondition(svid.keyID == "fuzz")
    }
    _ = try? JWTSVID(parsingWithoutSignatureCheck: token, audience: "fuzz", at: fuzzNow)
    return 0
}
