// The one error type of the SPIFFE core: a stable code to match on, and a message naming the cause.

/// An error raised by the SPIFFE core.
///
/// Match on ``code``; read ``message`` for the cause. New codes may be added in any release, so a
/// `switch` over codes needs a `default`.
public struct SPIFFEError: Error, Hashable, Sendable, CustomStringConvertible {
    /// What went wrong, as a stable, comparable value.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        fileprivate enum Base: String, Hashable, Sendable {
            // SPIFFE ID and trust domain syntax
            case emptyID, invalidScheme, missingTrustDomain, invalidTrustDomainCharacter, trustDomainTooLong
            case userInfoNotAllowed, portNotAllowed, queryNotAllowed, fragmentNotAllowed
            case percentEncodingNotAllowed, emptyPathSegment, dotPathSegment, invalidPathCharacter
            case trailingSlash, pathNotAbsolute, idTooLong
            // Encodings of certificates, keys and bundles
            case malformedCertificate, malformedPrivateKey, privateKeyMismatch, emptyChain
            case malformedBundle, duplicateBundleKey, invalidBundleKey
            // X509-SVID rules
            case missingURISAN, multipleURISANs, invalidURISAN, leafIDWithoutPath, leafIsCA
            case missingKeyUsage, keyUsageNotCritical, missingDigitalSignature, leafHasKeyCertSign
            case leafHasCRLSign, extendedKeyUsageMismatch, signingCertificateNotCA
            case signingCertificateMissingKeyCertSign, certificateExpired, certificateNotYetValid
            case bundleNotFound, chainNotTrusted
            // JWT-SVID rules
            case malformedJWT, unsupportedAlgorithm, invalidTokenType, missingKeyID, unknownKeyID
            case invalidSignature, invalidSubject, missingAudience, audienceMismatch, missingExpiry, tokenExpired
            case tokenNotYetValid, issuedInFuture
            // Authorisation
            case unauthorized
        }

        fileprivate let base: Base
        fileprivate init(_ base: Base) { self.base = base }

        public var description: String { base.rawValue }

        public static let emptyID = Code(.emptyID)
        public static let invalidScheme = Code(.invalidScheme)
        public static let missingTrustDomain = Code(.missingTrustDomain)
        public static let invalidTrustDomainCharacter = Code(.invalidTrustDomainCharacter)
        public static let trustDomainTooLong = Code(.trustDomainTooLong)
        public static let userInfoNotAllowed = Code(.userInfoNotAllowed)
        public static let portNotAllowed = Code(.portNotAllowed)
        public static let queryNotAllowed = Code(.queryNotAllowed)
        public static let fragmentNotAllowed = Code(.fragmentNotAllowed)
        public static let percentEncodingNotAllowed = Code(.percentEncodingNotAllowed)
        public static let emptyPathSegment = Code(.emptyPathSegment)
        public static let dotPathSegment = Code(.dotPathSegment)
        public static let invalidPathCharacter = Code(.invalidPathCharacter)
        public static let trailingSlash = Code(.trailingSlash)
        public static let pathNotAbsolute = Code(.pathNotAbsolute)
        public static let idTooLong = Code(.idTooLong)

        public static let malformedCertificate = Code(.malformedCertificate)
        public static let malformedPrivateKey = Code(.malformedPrivateKey)
        public static let privateKeyMismatch = Code(.privateKeyMismatch)
        public static let emptyChain = Code(.emptyChain)
        public static let malformedBundle = Code(.malformedBundle)
        public static let duplicateBundleKey = Code(.duplicateBundleKey)
        public static let invalidBundleKey = Code(.invalidBundleKey)

        public static let missingURISAN = Code(.missingURISAN)
        public static let multipleURISANs = Code(.multipleURISANs)
        public static let invalidURISAN = Code(.invalidURISAN)
        public static let leafIDWithoutPath = Code(.leafIDWithoutPath)
        public static let leafIsCA = Code(.leafIsCA)
        public static let missingKeyUsage = Code(.missingKeyUsage)
        public static let keyUsageNotCritical = Code(.keyUsageNotCritical)
        public static let missingDigitalSignature = Code(.missingDigitalSignature)
        public static let leafHasKeyCertSign = Code(.leafHasKeyCertSign)
        public static let leafHasCRLSign = Code(.leafHasCRLSign)
        public static let extendedKeyUsageMismatch = Code(.extendedKeyUsageMismatch)
        public static let signingCertificateNotCA = Code(.signingCertificateNotCA)
        public static let signingCertificateMissingKeyCertSign = Code(.signingCertificateMissingKeyCertSign)
        public static let certificateExpired = Code(.certificateExpired)
        public static let certificateNotYetValid = Code(.certificateNotYetValid)
        public static let bundleNotFound = Code(.bundleNotFound)
        public static let chainNotTrusted = Code(.chainNotTrusted)

        public static let malformedJWT = Code(.malformedJWT)
        public static let unsupportedAlgorithm = Code(.unsupportedAlgorithm)
        public static let invalidTokenType = Code(.invalidTokenType)
        public static let missingKeyID = Code(.missingKeyID)
        public static let unknownKeyID = Code(.unknownKeyID)
        public static let invalidSignature = Code(.invalidSignature)
        public static let invalidSubject = Code(.invalidSubject)
        public static let missingAudience = Code(.missingAudience)
        public static let audienceMismatch = Code(.audienceMismatch)
        public static let missingExpiry = Code(.missingExpiry)
        public static let tokenExpired = Code(.tokenExpired)
        public static let tokenNotYetValid = Code(.tokenNotYetValid)
        public static let issuedInFuture = Code(.issuedInFuture)

        public static let unauthorized = Code(.unauthorized)
    }

    /// The kind of failure.
    public let code: Code
    /// A sentence naming the cause, prefixed by the area it came from (`spiffeid:`, `x509svid:`, …).
    public let message: String
    /// The error this one came from, described, when another error caused it.
    public let underlying: String?

    public init(_ code: Code, _ message: String, underlying: (any Error)? = nil) {
        self.code = code
        self.message = message
        self.underlying = underlying.map { "\($0)" }
    }

    public var description: String { message }
}
