// Join-token attestation: the token names the node once; the challenge's nonce, signed with the
// CSR's key, proves the caller holds that key. A spent token cannot attest again, and there is
// nothing to present again while attested.

import Foundation
import X509

struct JoinTokenAttestor: NodeAttestor {
    let token: String?
    /// Named when there is no token: the agent has no saved SVID there either.
    let dataDir: String

    var name: String { "join-token" }

    func payload() throws -> Data {
        guard let token, !token.isEmpty else {
            throw AgentError(.noIdentity, "agent: no usable SVID in \(dataDir) and no --join-token to attest with")
        }
        return Data(token.utf8)
    }

    func answer(challenge nonce: [UInt8], key: Certificate.PrivateKey) throws -> (answer: [UInt8], nonce: [UInt8]) {
        (try key.signChallenge(nonce), nonce)
    }
}
