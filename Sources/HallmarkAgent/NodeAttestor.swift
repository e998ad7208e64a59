// How the agent proves which node it runs on: one type per attestation method, so that a new
// method is one new file. A host attestor answers the server's challenge at attestation and, when
// its method has fresh evidence to give, again at every re-attestation; evidence contributors
// (the GPUs) answer the same nonce beside whichever host attestor the node uses.

import Foundation
import HallmarkProto
import X509

protocol NodeAttestor: Sendable {
    /// The method's name as the server knows it ("join-token", "tpm").
    var name: String { get }
    /// What the first attestation message carries.
    func payload() throws -> Data
    /// The answer to the server's challenge, made with the CSR's key, and the nonce the challenge
    /// carried (which the contributors answer too).
    func answer(challenge: [UInt8], key: Certificate.PrivateKey) throws -> (answer: [UInt8], nonce: [UInt8])
    /// How often the node presents fresh evidence while attested; nil when the method has none to give.
    var reattestInterval: TimeInterval? { get }
    /// Adds the method's fresh evidence for the server's re-attestation challenge.
    func reattest(_ challenge: AgentAPI_TPMChallenge, into request: inout AgentAPI_ReattestRequest) throws
}

extension NodeAttestor {
    var reattestInterval: TimeInterval? { nil }
    func reattest(_ challenge: AgentAPI_TPMChallenge, into request: inout AgentAPI_ReattestRequest) throws {}
}

/// Evidence that any host attestor can carry: made with the server's nonce at attestation and at
/// every re-attestation.
protocol EvidenceContributor: Sendable {
    /// How often it is presented again when the host attestor has no interval of its own.
    var reattestInterval: TimeInterval { get }
    func contribute(nonce: [UInt8], into request: inout AgentAPI_AttestRequest) throws
    func contribute(nonce: [UInt8], into request: inout AgentAPI_ReattestRequest) throws
}

extension AgentConfig {
    /// The host attestor this configuration names: TPM when one is configured, else a join token
    /// (which refuses to attest when none was given).
    func nodeAttestor() throws -> any NodeAttestor {
        if let tpm { return try TPMAttestor(tpm) }
        return JoinTokenAttestor(token: joinToken, dataDir: dataDir)
    }

    var evidenceContributors: [any EvidenceContributor] {
        gpu.map { [GPUEvidenceContributor(source: $0, reattestInterval: gpuReattestInterval)] } ?? []
    }
}
