// The join-token attestor in memory: its payload is the token, a missing token is refused naming the
// data directory, and its answer to the server's nonce is an ECDSA signature by the CSR's key that
// the key's public half verifies (and no other key's does). The configuration picks the attestor.

import Crypto
import Foundation
@testable import HallmarkAgent
import SPIFFE
import Testing
import X509

@Suite("node attestors")
struct NodeAttestorTests {
    static func config(token: String?) -> AgentConfig {
        var config = AgentConfig(dataDir: "/var/lib/hallmark-agent", serverHost: "127.0.0.1", serverPort: 1, socketPath: "/nonexistent/api.sock")
        config.joinToken = token
        return config
    }

    @Test("a join token: the payload is the token; the answer is the nonce signed by the CSR's key")
    func joinToken() throws {
        let attestor = try Self.config(token: "0123abcd").nodeAttestor()
        #expect(attestor.name == "join-token")
        #expect(attestor.reattestInterval == nil)
        #expect(try attestor.payload() == Data("0123abcd".utf8))

        let request = try SVIDRequest()
        let nonce = (0..<32).map { _ in UInt8.random(in: 0...255) }
        let (answer, echoed) = try attestor.answer(challenge: nonce, key: request.privateKey)
        #expect(echoed == nonce)
        let publicKey = try P256.Signing.PublicKey(pemRepresentation: request.privateKey.publicKey.serializeAsPEM().pemString)
        let signature = try P256.Signing.ECDSASignature(derRepresentation: answer)
        #expect(publicKey.isValidSignature(signature, for: SHA256.hash(data: nonce)))
        #expect(!publicKey.isValidSignature(signature, for: SHA256.hash(data: nonce.reversed())))
        let other = P256.Signing.PrivateKey().publicKey
        #expect(!other.isValidSignature(signature, for: SHA256.hash(data: nonce)))
    }

    @Test("no join token and no TPM: attestation is refused, naming the data directory")
    func noToken() throws {
        for token in [nil, ""] {
            let attestor = try Self.config(token: token).nodeAttestor()
            #expect(throws: AgentError.self) { try attestor.payload() }
            do {
                _ = try attestor.payload()
            } catch let error as AgentError {
                #expect(error.message == "agent: no usable SVID in /var/lib/hallmark-agent and no --join-token to attest with")
                #expect(error.code == .noIdentity)
            }
        }
        #expect(Self.config(token: "t").evidenceContributors.isEmpty)
    }
}
