// Node attestation methods: join tokens and TPM 2.0 (EK certificate, credential activation, a
// quote with the server's nonce, the PCR policy), and TPM re-attestation over the agent's mTLS
// connection, which evicts the agent when its quote no longer passes.

import Crypto
import Foundation
import GRPCCore
import HallmarkAttestation
import HallmarkGPU
import HallmarkProto
import HallmarkStore
import HallmarkTPM
import SPIFFE
import SwiftProtobuf
import X509

/// What an attestation method proved.
struct AttestedIdentity {
    let id: SPIFFEID
    /// The challenge's nonce, which GPU evidence must carry too.
    let nonce: [UInt8]
    let selectors: [Selector]
    /// What re-attestation will need (the TPM AK's public area).
    let data: [UInt8]
    let detail: String
}

/// The challenge step of the attestation stream.
struct AttestationExchange {
    let send: ([UInt8]) async throws -> Void
    let receive: () async throws -> [UInt8]
}

/// Evidence that did not pass; the reason names the rule. Attestation refuses the agent with it,
/// re-attestation evicts the node with it.
struct EvidenceRefusal: Error, CustomStringConvertible {
    let reason: String
    init(_ reason: String) { self.reason = reason }
    var description: String { reason }
}

/// GPU evidence the agent sent with its answer, until the host attestor is done.
final class GPUEvidenceBox: @unchecked Sendable {
    var evidence: [AgentAPI_GPUEvidence] = []
}

enum TPMAttestation {
    static let method = "tpm"

    static func agentID(trustDomain: TrustDomain, ekHash: String) throws -> SPIFFEID {
        try SPIFFEID(trustDomain: trustDomain, segments: ["hallmark", "agent", "tpm", ekHash])
    }

    static func selection(_ message: [AgentAPI_TPMPCRSelection]) throws -> [TPMHash: [Int]] {
        var selection: [TPMHash: [Int]] = [:]
        for bank in message {
            let hash = try TPMHash(UInt16(truncatingIfNeeded: bank.hash), field: "pcrs.hash")
            selection[hash] = bank.pcrs.map(Int.init).sorted()
        }
        return selection
    }

    static func message(_ selection: [TPMHash: [Int]]) -> [AgentAPI_TPMPCRSelection] {
        selection.keys.sorted { $0.rawValue < $1.rawValue }.map { hash in
            AgentAPI_TPMPCRSelection.with {
                $0.hash = UInt32(hash.rawValue)
                $0.pcrs = selection[hash]!.map(UInt32.init)
            }
        }
    }

    static func values(_ message: [AgentAPI_TPMPCRValue]) throws -> [TPMHash: [Int: [UInt8]]] {
        var values: [TPMHash: [Int: [UInt8]]] = [:]
        for value in message {
            let hash = try TPMHash(UInt16(truncatingIfNeeded: value.hash), field: "values.hash")
            values[hash, default: [:]][Int(value.index)] = Array(value.digest)
        }
        return values
    }
}

extension AgentService {
    var acceptedMethods: [String] { [JoinToken.method] + (config.tpm == nil ? [] : [TPMAttestation.method]) }

    /// The challenge proves the agent holds the key it wants certified: the nonce signed with the CSR's key.
    private func checkPossession(_ signature: [UInt8], nonce: [UInt8], csrKey: Certificate.PublicKey) throws {
        guard csrKey.isValidSignature(signature, for: nonce, signatureAlgorithm: .ecdsaWithSHA256)
            || csrKey.isValidSignature(signature, for: nonce, signatureAlgorithm: .ecdsaWithSHA384)
        else {
            throw RPCError(code: .permissionDenied, message: "attestation: the challenge was not signed with the CSR's key")
        }
    }

    private func refuseBanned(_ id: SPIFFEID) async throws {
        if let existing = try await store.attestedNode(id), existing.banned {
            throw RPCError(code: .permissionDenied, message: "attestation: agent \(id) is banned")
        }
    }

    func attestJoinToken(_ params: AgentAPI_AttestParams, csrKey: Certificate.PublicKey, _ exchange: AttestationExchange) async throws -> AttestedIdentity {
        let nonce = (0..<32).map { _ in UInt8.random(in: 0...255) }
        try await exchange.send(nonce)
        try checkPossession(try await exchange.receive(), nonce: nonce, csrKey: csrKey)
        let token = String(decoding: params.payload, as: UTF8.self)
        // A banned agent is refused before its token is looked at, so that the refusal says why.
        try await refuseBanned(try JoinToken.agentID(trustDomain: config.trustDomain, tokenID: JoinToken.id(of: token)))
        let record: JoinTokenRecord
        do {
            record = try await store.redeemJoinToken(hash: JoinToken.hash(token), at: now())
        } catch let error as StoreError {
            // The reason from the code, never from the store's message text.
            let id = JoinToken.id(of: token)
            let reason = switch error.code {
            case .notFound: "the join token is not known"
            case .tokenUsed: "join token \(id) was already used"
            case .tokenExpired: "join token \(id) has expired"
            default: "join token \(id) cannot be redeemed (\(error.code))"
            }
            throw RPCError(code: .permissionDenied, message: "attestation: \(reason)")
        }
        let id = try JoinToken.agentID(trustDomain: config.trustDomain, tokenID: record.id)
        return AttestedIdentity(id: id, nonce: nonce, selectors: [], data: [], detail: "join token \(record.id)")
    }

    func attestTPM(_ params: AgentAPI_AttestParams, csrKey: Certificate.PublicKey, _ exchange: AttestationExchange) async throws -> AttestedIdentity {
        guard let tpm = config.tpm else { throw RPCError(code: .invalidArgument, message: "attestation: TPM attestation is not configured") }
        do {
            let evidence = try AgentAPI_TPMEvidence(serializedBytes: params.payload)
            let endorsement = try await TPMVerifier.endorsement(
                certificate: Array(evidence.ekCertificate), ekPublic: Array(evidence.ekPublic), trust: tpm.trust, at: now()
            )
            let ak = try TPMVerifier.attestationKey(Array(evidence.akPublic))
            let id = try TPMAttestation.agentID(trustDomain: config.trustDomain, ekHash: endorsement.ekHash)
            try await refuseBanned(id)
            // The AK is accepted only once the TPM holding the EK recovers a secret bound to its name.
            let credential = (0..<32).map { _ in UInt8.random(in: 0...255) }
            let made = try TPMCredential.make(ek: endorsement.ek, objectName: ak.name, credential: credential)
            let nonce = await nonces.issue(for: id.description)
            let selection = tpm.policy.selection
            let challenge: [UInt8] = try AgentAPI_TPMChallenge.with {
                $0.nonce = Data(nonce)
                $0.credentialBlob = Data(made.blob)
                $0.encryptedSecret = Data(made.secret)
                $0.pcrs = TPMAttestation.message(selection)
            }.serializedBytes()
            try await exchange.send(challenge)
            let answer = try AgentAPI_TPMChallengeResponse(serializedBytes: try await exchange.receive())
            guard Array(answer.credential) == credential else {
                throw TPMError(.invalidKey, "tpm: credential activation failed: the AK is not on the TPM that holds the EK")
            }
            try checkPossession(Array(answer.csrSignature), nonce: nonce, csrKey: csrKey)
            try await spend(nonce, for: id)
            let pcrSelectors = try TPMVerifier.verifyQuote(
                attest: Array(answer.quote.attest), signature: Array(answer.quote.signature),
                pcrValues: try TPMAttestation.values(answer.quote.values), ak: ak, nonce: nonce, selection: selection, policy: tpm.policy
            )
            var selectors = [try Selector(type: "tpm", value: "ek-hash:\(endorsement.ekHash)")]
            if let vouchedBy = endorsement.vouchedBy { selectors.append(try Selector(type: "tpm", value: "ek-ca:\(vouchedBy)")) }
            return AttestedIdentity(
                id: id, nonce: nonce, selectors: selectors + pcrSelectors, data: Array(evidence.akPublic),
                detail: "tpm ek \(endorsement.ekHash) " + (endorsement.vouchedBy.map { "vouched by \($0)" } ?? "allow-listed")
            )
        } catch let error as TPMError {
            throw RPCError(code: .permissionDenied, message: "attestation: \(error.message)")
        } catch let error as SwiftProtobuf.BinaryDecodingError {
            throw RPCError(code: .invalidArgument, message: "attestation: the TPM evidence is not a valid message: \(error)")
        }
    }

    /// Verifies each GPU's evidence against the challenge's nonce; returns the `gpu:` selectors.
    /// - Throws: `EvidenceRefusal` when any GPU's evidence does not pass.
    func attestGPUs(_ evidence: [AgentAPI_GPUEvidence], nonce: [UInt8]) async throws -> (selectors: [Selector], detail: String) {
        guard !evidence.isEmpty else { return ([], "") }
        guard let gpu = config.gpu else {
            throw RPCError(code: .invalidArgument, message: "attestation: the agent sent GPU evidence but GPU attestation is not configured (--gpu-root)")
        }
        var selectors: [Selector] = []
        var details: [String] = []
        for (index, item) in evidence.enumerated() {
            let report: SPDMReport
            let chain: [Certificate]
            do {
                report = try SPDMReport(bytes: Array(item.report))
                chain = try X509SVID.certificates(pem: item.chainPem)
            } catch {
                throw EvidenceRefusal("GPU \(index): \(error)")
            }
            let result = await gpu.verifier.verify(
                report: report, chain: chain, nonce: nonce, rims: gpu.rims.map { ($0.name, $0.xml) }, at: now()
            )
            // The evidence itself must hold; the RIMs decide only gpu:rim:verified.
            for name in GPUCheck.Name.evidence {
                if let check = result.check(name), check.outcome == .failed {
                    throw EvidenceRefusal("GPU \(index): \(name.rawValue): \(check.detail)")
                }
            }
            guard let claims = result.claims else {
                throw EvidenceRefusal("GPU \(index): the evidence does not pass (\(result.checks.filter { $0.outcome == .failed }.map(\.detail).joined(separator: "; ")))")
            }
            selectors += [
                try Selector(type: "gpu", value: "model:\(claims.model)"), try Selector(type: "gpu", value: "driver:\(claims.driverVersion)"),
                try Selector(type: "gpu", value: "vbios:\(claims.vbiosVersion)"), try Selector(type: "gpu", value: "ueid:\(claims.ueid)"),
            ]
            if result.rimVerified { selectors.append(try Selector(type: "gpu", value: "rim:verified")) }
            let rimFailures = result.checks.filter { $0.name.hasPrefix("rim") && $0.outcome != .passed }.map { "\($0.name): \($0.detail)" }
            details.append("gpu \(claims.ueid) \(claims.model) rim \(result.rimVerified ? "verified" : "not verified" + (rimFailures.isEmpty ? "" : " (\(rimFailures.joined(separator: "; ")))"))")
            if !result.rimVerified {
                logger.notice("GPU RIM checks did not pass; gpu:rim:verified withheld", metadata: ["ueid": "\(claims.ueid)", "checks": "\(rimFailures)"])
            }
        }
        return (Array(Set(selectors)).sorted(), details.joined(separator: "; "))
    }

    private func spend(_ nonce: [UInt8], for id: SPIFFEID) async throws {
        do { try await nonces.consume(nonce, for: id.description) } catch let error as NonceError {
            throw RPCError(code: .permissionDenied, message: "attestation: \(error.description)")
        }
    }

    // MARK: Re-attestation

    /// A node re-attests when its attestation left something to present again: a TPM quote, GPU evidence.
    private func reattestable(_ node: AttestedNode) throws {
        guard EvidenceAge(config).limit(for: node) != nil else {
            throw RPCError(code: .failedPrecondition, message: "reattest: \(node.spiffeID) attested with neither a TPM nor GPUs; nothing to present again")
        }
    }

    func reattestChallenge(request: ServerRequest<AgentAPI_ReattestChallengeRequest>, context: ServerContext) async throws -> ServerResponse<AgentAPI_TPMChallenge> {
        try await guarded("agent.reattest", context) {
            let node = try await callingAgent(context)
            try reattestable(node)
            let nonce = await nonces.issue(for: node.spiffeID.description)
            return ServerResponse(message: AgentAPI_TPMChallenge.with {
                $0.nonce = Data(nonce)
                if node.attestationType == TPMAttestation.method, let tpm = config.tpm { $0.pcrs = TPMAttestation.message(tpm.policy.selection) }
            })
        }
    }

    func reattest(request: ServerRequest<AgentAPI_ReattestRequest>, context: ServerContext) async throws -> ServerResponse<AgentAPI_ReattestResponse> {
        try await guarded("agent.reattest", context) {
            let read = try await callingAgent(context)
            try reattestable(read)
            let nonce = Array(request.message.nonce)
            try await spend(nonce, for: read.spiffeID)
            var selectors = read.selectors.filter { !($0.type == "tpm" && $0.value.hasPrefix("pcr:")) && $0.type != "gpu" }
            var changes: [String] = []
            do {
                if read.attestationType == TPMAttestation.method {
                    guard let tpm = config.tpm else { throw TPMError(.configuration, "tpm: TPM attestation is no longer configured on this server") }
                    let ak = try TPMVerifier.attestationKey(read.attestationData)
                    let pcrSelectors = try TPMVerifier.verifyQuote(
                        attest: Array(request.message.quote.attest), signature: Array(request.message.quote.signature),
                        pcrValues: try TPMAttestation.values(request.message.quote.values), ak: ak, nonce: nonce, selection: tpm.policy.selection,
                        policy: tpm.policy
                    )
                    selectors += pcrSelectors
                }
                let heldGPUs = Set(read.selectors.filter { $0.type == "gpu" && $0.value.hasPrefix("ueid:") })
                if !heldGPUs.isEmpty {
                    // GPU evidence is verified again every time: the GPUs must still be there and still pass.
                    guard !request.message.gpus.isEmpty else { throw EvidenceRefusal("gpu: the node attested GPUs but sent no GPU evidence") }
                    let gpu = try await attestGPUs(request.message.gpus, nonce: nonce)
                    let presented = Set(gpu.selectors.filter { $0.type == "gpu" && $0.value.hasPrefix("ueid:") })
                    guard presented == heldGPUs else {
                        throw EvidenceRefusal("gpu: the node's GPUs changed (\(presented.map(\.value).sorted()) instead of \(heldGPUs.map(\.value).sorted())); attest again")
                    }
                    selectors += gpu.selectors
                    changes.append(gpu.detail)
                }
            } catch let error as TPMError {
                throw try await evict(read, reason: error.message)
            } catch let refusal as EvidenceRefusal {
                throw try await evict(read, reason: refusal.reason)
            }
            var node = read
            node.selectors = selectors.sorted()
            node.evidenceAt = now()
            let detail = (Set(node.selectors) == Set(read.selectors) ? ["evidence passed"] : ["selectors changed"]) + changes
            try await updateNode(node, read: read, audit: AuditEvent(time: node.evidenceAt, actor: .agent(node.spiffeID), action: "agent.reattest", target: node.spiffeID.description, detail: detail.joined(separator: "; ")))
            if Set(node.selectors) != Set(read.selectors) { events.notify() }
            return ServerResponse(message: AgentAPI_ReattestResponse.with {
                $0.selectors = node.selectors.map { selector in AgentAPI_Selector.with { $0.type = selector.type; $0.value = selector.value } }
            })
        }
    }

    /// The node no longer is what it proved: it loses its identity at once, and the audit log says why.
    private func evict(_ node: AttestedNode, reason: String) async throws -> RPCError {
        _ = try await store.deleteAttestedNode(
            node.spiffeID,
            audit: AuditEvent(time: now(), actor: .server, action: "agent.evict", target: node.spiffeID.description, result: "re-attestation failed", detail: reason)
        )
        events.notify()
        logger.error("re-attestation failed; agent evicted", metadata: ["agent": "\(node.spiffeID)", "reason": "\(reason)"])
        return RPCError(code: .permissionDenied, message: "reattest: \(reason); the agent is evicted")
    }
}
