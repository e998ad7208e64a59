// NVIDIA GPU attestation reports (SPDM GET_MEASUREMENTS request + signed response): parsed with
// every length checked, or refused with a GPUEvidenceError.

import FuzzSupport
import HallmarkGPU

/// Hopper reports are a few KB; far longer inputs only slow the run down.
let longest = 1 << 16

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzSPDMReport(_ start: UnsafeRawPointer, _ count: Int) -> CInt {
    guard count <= longest else { return 0 }
    let bytes = fuzzInput(start, count)
    guard let report = try? SPDMReport(bytes: bytes) else { return 0 }
    precondition(report.signature.count == SPDMReport.signatureLength)
    precondition(report.signedBytes.count + report.signature.count == bytes.count, "signed range and signature do not cover the report")
    _ = (report.driverVersion, report.blocks.map(\.value.count), report.opaque.count)
    return 0
}
