// TPM attestation: the EK certificate and public key, and the AK, are the evidence; the challenge
// is answered by activating the credential the server made for the EK and AK, quoting the PCRs
// it asks for with its nonce, and signing the nonce with the CSR's key. While attested, the TPM
// quotes again on its interval.

import Foundation
import HallmarkProto
import HallmarkTPM
import X509

struct TPMAttestor: NodeAttestor {
    let config: AgentConfig.TPM
    let device: TPMDevice

    init(_ config: AgentConfig.TPM) throws {
        self.config = config
        device = try TPMDevice(tcti: config.tcti)
    }

    var name: String { "tpm" }

    var reattestInterval: TimeInterval? { config.reattestInterval }

    func payload() throws -> Data {
        try AgentAPI_TPMEvidence.with {
            $0.ekCertificate = Data(try device.ekCertificate(config.endorsementKey))
            $0.ekPublic = Data(try device.ekPublic(config.endorsementKey))
            $0.akPublic = Data(try device.attestationKeyPublic())
        }.serializedData()
    }

    func answer(challenge bytes: [UInt8], key: Certificate.PrivateKey) throws -> (answer: [UInt8], nonce: [UInt8]) {
        let challenge = try AgentAPI_TPMChallenge(serializedBytes: bytes)
        let credential = try device.activateCredential(config.endorsementKey, blob: Array(challenge.credentialBlob), secret: Array(challenge.encryptedSecret))
        let answer: [UInt8] = try AgentAPI_TPMChallengeResponse.with {
            $0.credential = Data(credential)
            $0.quote = try quote(challenge)
            $0.csrSignature = Data(try key.signChallenge(Array(challenge.nonce)))
        }.serializedBytes()
        return (answer, Array(challenge.nonce))
    }

    func reattest(_ challenge: AgentAPI_TPMChallenge, into request: inout AgentAPI_ReattestRequest) throws {
        request.quote = try quote(challenge)
    }

    /// Quotes what a challenge asks for, with its nonce.
    func quote(_ challenge: AgentAPI_TPMChallenge) throws -> AgentAPI_TPMQuote {
        var selection: [TPMHash: [Int]] = [:]
        for bank in challenge.pcrs {
            selection[try TPMHash(UInt16(truncatingIfNeeded: bank.hash), field: "challenge.pcrs.hash")] = bank.pcrs.map(Int.init)
        }
        let quoted = try device.quote(selection, nonce: Array(challenge.nonce))
        return AgentAPI_TPMQuote.with { message in
            message.attest = Data(quoted.attest)
            message.signature = Data(quoted.signature)
            message.values = quoted.pcrs.sorted { $0.key.rawValue < $1.key.rawValue }.flatMap { bank, values in
                values.sorted { $0.key < $1.key }.map { index, digest in
                    AgentAPI_TPMPCRValue.with {
                        $0.hash = UInt32(bank.rawValue)
                        $0.index = UInt32(index)
                        $0.digest = Data(digest)
                    }
                }
            }
        }
    }
}
