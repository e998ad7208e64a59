// Verifying the peer of a TLS handshake by the SPIFFE rules instead of web PKI: the chain must be
// an X509-SVID valid against the bundle of its own trust domain, and the authorizer must allow
// its SPIFFE ID.

public import Foundation
public import NIOCore
public import NIOSSL
public import SPIFFE
public import X509

public enum SPIFFEPeerVerification {
    public typealias Callback = @Sendable ([NIOSSLCertificate], EventLoopPromise<NIOSSLVerificationResultWithMetadata>) -> Void

    /// A custom verification callback for swift-nio-ssl (and the gRPC NIO transport).
    ///
    /// - Parameters:
    ///   - bundles: the bundles to verify against, read at each handshake (so rotation is seen).
    ///   - authorizer: which SPIFFE IDs may connect.
    ///   - onRefusal: told why a peer was refused, for the log.
    ///   - now: the verification time (injected in tests).
    public static func callback(
        bundles: @escaping @Sendable () -> any X509BundleSource, authorizer: Authorizer,
        onRefusal: @escaping @Sendable (String) -> Void = { _ in }, now: @escaping @Sendable () -> Date = { Date() }
    ) -> Callback {
        { certificates, promise in
            promise.completeWithTask {
                do {
                    let chain = try certificates.map { try Certificate(derEncoded: try $0.toDERBytes()) }
                    let verified = try await X509SVIDVerifier(bundles: bundles()).verify(chain, at: now())
                    try authorizer.authorize(verified.id)
                    return .certificateVerified(VerificationMetadata(ValidatedCertificateChain(certificates)))
                } catch let error as SPIFFEError {
                    onRefusal(error.message)
                    return .failed
                } catch {
                    onRefusal("\(error)")
                    return .failed
                }
            }
        }
    }

    /// Accepts any chain whose holder completed the handshake (so proved the key), leaving the
    /// decision to the application, which reads the chain from the connection. For endpoints
    /// where some callers have no SVID yet (node attestation).
    public static let possessionOnly: Callback = { certificates, promise in
        promise.succeed(.certificateVerified(VerificationMetadata(ValidatedCertificateChain(certificates))))
    }
}
