// The agent's TPM: the EK certificate and public area, the attestation key, credential activation
// and quotes, through the tpm2-tss ESYS library (device or swtpm TCTI). One open TPM context;
// calls are serialised.

public import Foundation
import CHallmarkTPM
import Synchronization

public final class TPMDevice: Sendable {
    /// Which endorsement key to attest with: the RSA-2048 or the ECC (P-384 on swtpm) one, at
    /// their TCG-registered persistent handle and certificate NV index.
    public enum EndorsementKey: String, Sendable, CaseIterable {
        case rsa, ecc

        var handle: UInt32 { self == .rsa ? 0x8101_0001 : 0x8101_0016 }
        var certificateIndex: UInt32 { self == .rsa ? 0x01C0_0002 : 0x01C0_0016 }
    }

    private final class Context: @unchecked Sendable {
        let pointer: OpaquePointer
        init(_ pointer: OpaquePointer) { self.pointer = pointer }
        deinit { hm_tpm_close(pointer) }
    }

    private let context: Mutex<Context>
    public let tcti: String

    /// Opens the TPM: `tcti` is a tpm2-tss TCTI string such as `device:/dev/tpmrm0` or `swtpm:path=/run/swtpm.sock`.
    public init(tcti: String) throws {
        var error = hm_tpm_error()
        guard let pointer = hm_tpm_open(tcti, &error) else { throw TPMError(.device, Self.message(error) + " (TCTI \(tcti))") }
        self.tcti = tcti
        context = Mutex(Context(pointer))
    }

    private static func message(_ error: hm_tpm_error) -> String {
        withUnsafeBytes(of: error.message) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
    }

    private func call(_ capacity: Int, _ body: (OpaquePointer, UnsafeMutablePointer<UInt8>, Int, UnsafeMutablePointer<Int>, UnsafeMutablePointer<hm_tpm_error>) -> Int32) throws -> [UInt8] {
        try context.withLock { context in
            var buffer = [UInt8](repeating: 0, count: capacity)
            var length = 0
            var error = hm_tpm_error()
            let status = buffer.withUnsafeMutableBufferPointer { body(context.pointer, $0.baseAddress!, capacity, &length, &error) }
            guard status == 0 else { throw TPMError(.device, Self.message(error)) }
            return Array(buffer.prefix(length))
        }
    }

    public func ekCertificate(_ key: EndorsementKey) throws -> [UInt8] {
        try call(4096) { hm_tpm_nv_read($0, key.certificateIndex, $1, $2, $3, $4) }
    }

    public func ekPublic(_ key: EndorsementKey) throws -> [UInt8] {
        try call(1024) { hm_tpm_read_public($0, key.handle, $1, $2, $3, $4) }
    }

    public func attestationKeyPublic() throws -> [UInt8] {
        try call(1024) { hm_tpm_ak_public($0, $1, $2, $3, $4) }
    }

    /// Answers the server's credential-activation challenge; returns the credential.
    public func activateCredential(_ key: EndorsementKey, blob: [UInt8], secret: [UInt8]) throws -> [UInt8] {
        try call(128) { hm_tpm_activate($0, key.handle, blob, blob.count, secret, secret.count, $1, $2, $3, $4) }
    }

    /// Quotes the selected PCRs with `nonce`; returns the TPMS_ATTEST, the TPMT_SIGNATURE and the values quoted.
    public func quote(_ selection: [TPMHash: [Int]], nonce: [UInt8]) throws -> (attest: [UInt8], signature: [UInt8], pcrs: [TPMHash: [Int: [UInt8]]]) {
        let banks = selection.keys.sorted { $0.rawValue < $1.rawValue }
        let algorithms = banks.map(\.rawValue)
        let masks = banks.map { bank in selection[bank]!.reduce(UInt32(0)) { $0 | (1 << UInt32($1)) } }
        return try context.withLock { context in
            var attest = [UInt8](repeating: 0, count: 2048)
            var signature = [UInt8](repeating: 0, count: 1024)
            var values = [UInt8](repeating: 0, count: 24 * 64 * max(1, banks.count))
            var lengths = (0, 0, 0)
            var error = hm_tpm_error()
            let (attestCapacity, signatureCapacity, valuesCapacity) = (attest.count, signature.count, values.count)
            let status = hm_tpm_quote(
                context.pointer, algorithms, masks, banks.count, nonce, nonce.count, &attest, attestCapacity, &lengths.0,
                &signature, signatureCapacity, &lengths.1, &values, valuesCapacity, &lengths.2, &error
            )
            guard status == 0 else { throw TPMError(.device, Self.message(error)) }
            var pcrs: [TPMHash: [Int: [UInt8]]] = [:]
            var offset = 0
            for bank in banks {
                for pcr in selection[bank]!.sorted() {
                    guard offset + bank.digestSize <= lengths.2 else { throw TPMError(.device, "tpm: fewer PCR values came back than were quoted") }
                    pcrs[bank, default: [:]][pcr] = Array(values[offset..<offset + bank.digestSize])
                    offset += bank.digestSize
                }
            }
            return (Array(attest.prefix(lengths.0)), Array(signature.prefix(lengths.1)), pcrs)
        }
    }
}
