// Admin and agent API messages as the server decodes them: the first byte picks the message;
// the rest is decoded as protobuf and handed to the code the server runs on it (entry
// validation, CSR signing). Each is refused with a named error or accepted; nothing else.

import Foundation
import FuzzSupport
import HallmarkCA
import HallmarkProto
import HallmarkServer
import SPIFFE
import SwiftProtobuf

/// What every input is checked against, built once on first use: libFuzzer supplies `main`, so
/// top-level code here never runs and a plain global would stay uninitialised.
enum Fixture {
    static let domain = try! TrustDomain("example.org")
    static let ca = try! X509CA.selfSigned(trustDomain: Fixture.domain, ttl: 86400 * 365 * 10, now: fuzzNow)
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzAPIMessages(_ start: UnsafeRawPointer, _ count: Int) -> CInt {
    guard let (selector, input) = fuzzSelectedInput(start, count) else { return 0 }
    let bytes = Data(input)
    switch selector % 4 {
    case 0:
        guard let request = try? Admin_CreateEntryRequest(serializedBytes: bytes) else { return 0 }
        if let entry = try? EntryValidation.validate(EntryInput(request.entry), trustDomain: Fixture.domain, now: fuzzNow) {
            precondition(entry.spiffeID.trustDomain == Fixture.domain, "accepted an entry outside the trust domain")
            precondition(!entry.selectors.isEmpty, "accepted an entry without selectors")
        }
    case 1:
        guard let request = try? AgentAPI_BatchNewX509SVIDRequest(serializedBytes: bytes) else { return 0 }
        let id = try! SPIFFEID(parsing: "spiffe://example.org/w")
        for param in request.params.prefix(4) {
            _ = try? Fixture.ca.issueX509SVID(X509SVIDParams(csr: Array(param.csr), spiffeID: id, ttl: 60, now: fuzzNow))
        }
    case 2:
        _ = try? AgentAPI_AttestRequest(serializedBytes: bytes)
    default:
        _ = try? Admin_UpdateEntryRequest(serializedBytes: bytes)
    }
    return 0
}
