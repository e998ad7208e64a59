// JWT-SVIDs as ValidateJWTSVID receives them: validated against a fixed bundle, or refused with a
// SPIFFEError. The fuzzer's text goes in as the token.

import Crypto
import Foundation
import FuzzSupport
import SPIFFE

let domain = try! TrustDomain("example.org")
/// A fixed key, so that the seed tokens (signed with it) verify.
let key = try! P256.Signing.PrivateKey(rawRepresentation: [UInt8](repeating: 7, count: 32))
let bundle = try! JWTBundle(trustDomain: domain, authorities: [JWTAuthority(keyID: "fuzz", publicKey: key.publicKey)])

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzJWTSVID(_ start: UnsafeRawPointer, _ count: Int) -> CInt {
    let token = String(decoding: fuzzInput(start, count), as: UTF8.self)
    if let svid = try? JWTSVID(parsing: token, bundles: bundle, audience: "fuzz", at: fuzzNow) {
        precondition(svid.id.trustDomain == domain, "validated a token from another trust domain")
        precondition(svid.keyID == "fuzz")
    }
    _ = try? JWTSVID(parsingWithoutSignatureCheck: token, audience: "fuzz", at: fuzzNow)
    return 0
}
