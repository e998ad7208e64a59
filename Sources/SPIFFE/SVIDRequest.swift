// A fresh key pair and the CSR an SVID is requested with. The CSR carries no name: the SPIFFE ID
// is the issuer's to decide, from its registrations.

public import X509
import Crypto
import SwiftASN1

/// A new P-256 key and a DER PKCS#10 CSR for it.
public struct SVIDRequest: Sendable {
    public let privateKey: Certificate.PrivateKey
    public let csr: [UInt8]

    public init() throws {
        let key = Certificate.PrivateKey(P256.Signing.PrivateKey())
        let request = try CertificateSigningRequest(
            version: .v1, subject: DistinguishedName(), privateKey: key, attributes: CertificateSigningRequest.Attributes(),
            signatureAlgorithm: .ecdsaWithSHA256
        )
        var serializer = DER.Serializer()
        try serializer.serialize(request)
        privateKey = key
        csr = serializer.serializedBytes
    }
}
