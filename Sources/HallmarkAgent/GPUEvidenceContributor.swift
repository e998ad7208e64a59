// GPU evidence beside the host attestor: each GPU's attestation report, made with the server's
// nonce, and its certificate chain, at attestation and at every re-attestation.

import Foundation
import HallmarkGPU
import HallmarkProto

struct GPUEvidenceContributor: EvidenceContributor {
    let source: GPUEvidenceSource
    let reattestInterval: TimeInterval

    func contribute(nonce: [UInt8], into request: inout AgentAPI_AttestRequest) throws {
        request.gpus = try evidence(nonce)
    }

    func contribute(nonce: [UInt8], into request: inout AgentAPI_ReattestRequest) throws {
        request.gpus = try evidence(nonce)
    }

    private func evidence(_ nonce: [UInt8]) throws -> [AgentAPI_GPUEvidence] {
        try source.evidence(nonce: nonce).map { evidence in
            AgentAPI_GPUEvidence.with {
                $0.report = Data(evidence.report)
                $0.chainPem = evidence.chainPEM
            }
        }
    }
}
