// NVIDIA GPU attestation reports (SPDM GET_MEASUREMENTS request + signed response): parsed with
// every length checked, or refused with a GPUEvidenceError.

import FuzzSupport
import HallmarkGPU

/// What every input is checked against, built once on first use: libFuzzer supplies `main`, so
/// top-level code here never runs and a plain global would stay uninitialised.
enum Fixture {
    /// Hopper reports are a few KB; far longer inputs only slow the run down.
    static let longest = 1 << 16
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzSPDMReport(_ start: UnsafeRawPointer, _ count: Int) -> CInt {
    guard count <= Fixture.longest else { return 0 }
    let bytes = fuzzInput(start, count)
    guard let report = try? SPDMReport(bytes: bytes) else { return 0 }
    precondition(report.signature.count == SPDMReport.signatureLength)
    precondition(report.signedBytes.count + report.signature.count == bytes.count, "signed range and signature do not cover the report")
    _ = (report.driverVersion, report.blocks.map(\.value.count), report.opaque.count)
    return 0
}
