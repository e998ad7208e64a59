// TPM structures an agent sends: the first byte picks TPMT_PUBLIC (0), TPMS_ATTEST (1) or
// TPMT_SIGNATURE (2); the rest is parsed with every length checked, or refused with a TPMError.

import FuzzSupport
import HallmarkTPM

/// What every input is checked against, built once on first use: libFuzzer supplies `main`, so
/// top-level code here never runs and a plain global would stay uninitialised.
enum Fixture {
    /// TPM2B buffers are at most a few KB; far longer inputs only slow the run down.
    static let longest = 1 << 16
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzTPMStructures(_ start: UnsafeRawPointer, _ count: Int) -> CInt {
    guard count <= Fixture.longest, let (selector, bytes) = fuzzSelectedInput(start, count) else { return 0 }
    switch selector % 3 {
    case 0:
        if let area = try? TPMPublic(bytes: bytes) { _ = area.name }
    case 1:
        _ = try? TPMQuote(bytes: bytes)
    default:
        _ = try? TPMSignature(bytes: bytes)
    }
    return 0
}
