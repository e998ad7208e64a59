// MakeCredential, the verifier's half of credential activation (TPM 2.0 Library Part 1, 24):
// the credential can be recovered only by the TPM that holds both the EK and the key named.
// RSA EKs: the seed travels RSA-OAEP encrypted with the label "IDENTITY"; ECC EKs: it is derived
// with KDFe from an ECDH exchange with an ephemeral key.

import CHallmarkCrypto
import Crypto
import _CryptoExtras
import Foundation

public enum TPMCredential {
    /// KDFa (SP 800-108 counter mode with HMAC): bits of key from `key`, a label and two contexts.
    static func kdfa(_ hash: TPMHash, key: [UInt8], label: String, contextU: [UInt8], contextV: [UInt8], bits: Int) -> [UInt8] {
        var output: [UInt8] = []
        var counter: UInt32 = 1
        while output.count * 8 < bits {
            var block: [UInt8] = []
            block.appendU32(counter)
            block += Array(label.utf8) + [0] + contextU + contextV
            block.appendU32(UInt32(bits))
            output += hash.hmac(key: key, block)
            counter += 1
        }
        return Array(output.prefix((bits + 7) / 8))
    }

    /// KDFe (SP 800-56A concatenation KDF): bits of key from a shared secret Z.
    static func kdfe(_ hash: TPMHash, z: [UInt8], label: String, partyU: [UInt8], partyV: [UInt8], bits: Int) -> [UInt8] {
        var output: [UInt8] = []
        var counter: UInt32 = 1
        while output.count * 8 < bits {
            var block: [UInt8] = []
            block.appendU32(counter)
            block += z + Array(label.utf8) + [0] + partyU + partyV
            output += hash.digest(block)
            counter += 1
        }
        return Array(output.prefix((bits + 7) / 8))
    }

    /// A challenge for the TPM holding `ek`: activating it with the key named `objectName` yields `credential`.
    /// - Returns: the TPM2B_ID_OBJECT's contents (integrity ‖ encIdentity) and the encrypted secret's contents.
    public static func make(ek: TPMPublic, objectName: [UInt8], credential: [UInt8]) throws -> (blob: [UInt8], secret: [UInt8]) {
        let hash = ek.nameAlg
        guard ek.attributes.contains(.restricted), ek.attributes.contains(.decrypt) else {
            throw TPMError(.invalidKey, "tpm: the EK is not a restricted decryption key")
        }
        guard ek.symmetricKeyBits == 128 || ek.symmetricKeyBits == 256 else {
            throw TPMError(.invalidKey, "tpm: the EK's symmetric algorithm is not AES-128 or AES-256 CFB")
        }
        guard credential.count <= hash.digestSize else { throw TPMError(.invalidArgument, "tpm: a credential may be at most \(hash.digestSize) bytes") }
        let seed: [UInt8]
        let secret: [UInt8]
        switch ek.key {
        case .rsa(let modulus, let exponent):
            seed = (0..<hash.digestSize).map { _ in UInt8.random(in: 0...255) }
            secret = try oaep(seed, modulus: modulus, exponent: exponent, hash: hash, label: Array("IDENTITY".utf8) + [0])
        case .ecc(let curve, let x, let y):
            let (ephemeralX, ephemeralY, z) = try ecdh(curve: curve, x: x, y: y)
            seed = kdfe(hash, z: z, label: "IDENTITY", partyU: ephemeralX, partyV: x, bits: hash.digestSize * 8)
            var point: [UInt8] = []
            point.appendSized(ephemeralX)
            point.appendSized(ephemeralY)
            secret = point
        }
        let symmetricKey = kdfa(hash, key: seed, label: "STORAGE", contextU: objectName, contextV: [], bits: ek.symmetricKeyBits)
        let hmacKey = kdfa(hash, key: seed, label: "INTEGRITY", contextU: [], contextV: [], bits: hash.digestSize * 8)
        var plain: [UInt8] = []
        plain.appendSized(credential)
        let encIdentity = try Array(AES._CFB.encrypt(plain, using: SymmetricKey(data: symmetricKey), iv: AES._CFB.IV(ivBytes: [UInt8](repeating: 0, count: 16))))
        let integrity = hash.hmac(key: hmacKey, encIdentity + objectName)
        var blob: [UInt8] = []
        blob.appendSized(integrity)
        return (blob + encIdentity, secret)
    }

    private static func oaep(_ input: [UInt8], modulus: [UInt8], exponent: UInt32, hash: TPMHash, label: [UInt8]) throws -> [UInt8] {
        guard hash == .sha256 || hash == .sha384 else { throw TPMError(.unsupported, "tpm: RSA-OAEP with \(hash) is not supported") }
        var output = [UInt8](repeating: 0, count: modulus.count)
        var length = 0
        let status = hm_rsa_oaep_encrypt(
            modulus, modulus.count, exponent, Int32(hash.digestSize * 8), label, label.count, input, input.count, &output, output.count, &length
        )
        guard status == 0 else { throw TPMError(.invalidKey, "tpm: RSA-OAEP encryption to the EK failed") }
        return Array(output.prefix(length))
    }

    /// An ephemeral key on the EK's curve; returns its point and the shared x-coordinate with the EK.
    private static func ecdh(curve: UInt16, x: [UInt8], y: [UInt8]) throws -> ([UInt8], [UInt8], [UInt8]) {
        let raw = x + y
        switch curve {
        case TPMPublic.curveP256:
            let peer = try P256.KeyAgreement.PublicKey(rawRepresentation: raw)
            let ephemeral = P256.KeyAgreement.PrivateKey()
            let z = try ephemeral.sharedSecretFromKeyAgreement(with: peer).withUnsafeBytes { Array($0) }
            let point = Array(ephemeral.publicKey.rawRepresentation)
            return (Array(point.prefix(32)), Array(point.suffix(32)), z)
        case TPMPublic.curveP384:
            let peer = try P384.KeyAgreement.PublicKey(rawRepresentation: raw)
            let ephemeral = P384.KeyAgreement.PrivateKey()
            let z = try ephemeral.sharedSecretFromKeyAgreement(with: peer).withUnsafeBytes { Array($0) }
            let point = Array(ephemeral.publicKey.rawRepresentation)
            return (Array(point.prefix(48)), Array(point.suffix(48)), z)
        default:
            throw TPMError(.unsupported, "tpm: the EK's curve 0x\(String(curve, radix: 16)) is not P-256 or P-384")
        }
    }
}
