// JWT-SVIDs by the JWT-SVID specification: compact JWS, a restricted set of algorithms, a SPIFFE ID
// subject, a required audience and expiry, and (as go-spiffe requires) a key ID.

public import Foundation

/// A parsed, validated JWT-SVID.
public struct JWTSVID: Sendable {
    /// The token as received.
    public let token: String
    /// The SPIFFE ID in `sub`.
    public let id: SPIFFEID
    /// The audiences in `aud`.
    public let audience: [String]
    /// The expiry from `exp`.
    public let expiresAt: Date
    /// `iat`, if present.
    public let issuedAt: Date?
    /// The `kid` of the signing key.
    public let keyID: String
    /// The JWS `alg`.
    public let algorithm: String
    /// Every claim of the payload.
    public let claims: [String: JSONValue]
    /// An operator-chosen label (not part of the token).
    public var hint: String = ""

    /// How far `nbf` and `iat` may lie ahead of the validation time (clock skew between hosts).
    public static let allowedClockSkew: TimeInterval = 60

    /// Parses a JWT-SVID and validates its signature against the bundle of its trust domain.
    ///
    /// - Parameters:
    ///   - token: the compact JWS.
    ///   - bundles: where to find the JWT bundle of the subject's trust domain.
    ///   - audience: an audience the token must name.
    ///   - time: the validation time.
    /// - Throws: ``SPIFFEError`` naming the first rule broken.
    public init(parsing token: String, bundles: some JWTBundleSource, audience: String, at time: Date = Date()) throws {
        let parts = try Self.split(token)
        self = try Self.claims(token: token, parts: parts, audience: audience, at: time)
        let bundle = try bundles.jwtBundle(for: id.trustDomain)
        let authority = try bundle.authority(keyID: keyID)
        guard let signature = Base64URL.decode(parts.signature), !signature.isEmpty else {
            throw SPIFFEError(.malformedJWT, "jwtsvid: the signature is not base64url")
        }
        let signingInput = Array(token.utf8.prefix(parts.header.utf8.count + 1 + parts.payload.utf8.count))
        guard let algorithm = JWTAlgorithm(rawValue: algorithm),
            authority.isValidSignature(signature, algorithm: algorithm, signingInput: signingInput)
        else {
            throw SPIFFEError(.invalidSignature, "jwtsvid: the signature does not verify with key '\(keyID)' (\(self.algorithm))")
        }
    }

    /// Parses a JWT-SVID and checks its header and claims but not its signature: for a token that
    /// was already validated elsewhere (the Workload API's ValidateJWTSVID, say).
    ///
    /// - Throws: ``SPIFFEError`` naming the first rule broken.
    public init(parsingWithoutSignatureCheck token: String, audience: String, at time: Date = Date()) throws {
        self = try Self.claims(token: token, parts: Self.split(token), audience: audience, at: time)
    }

    private init(
        token: String, id: SPIFFEID, audience: [String], expiresAt: Date, issuedAt: Date?, keyID: String,
        algorithm: String, claims: [String: JSONValue]
    ) {
        self.token = token
        self.id = id
        self.audience = audience
        self.expiresAt = expiresAt
        self.issuedAt = issuedAt
        self.keyID = keyID
        self.algorithm = algorithm
        self.claims = claims
    }

    private struct Parts {
        let header: Substring
        let payload: Substring
        let signature: Substring
    }

    private struct Header: Decodable {
        let alg: String?
        let typ: String?
        let kid: String?
    }

    private static func split(_ token: String) throws -> Parts {
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3 else {
            throw SPIFFEError(.malformedJWT, "jwtsvid: a JWT-SVID is a compact JWS of three parts; this has \(parts.count)")
        }
        return Parts(header: parts[0], payload: parts[1], signature: parts[2])
    }

    private static func decodeJSON<T: Decodable>(_ part: Substring, as type: T.Type, what: String) throws -> T {
        guard let bytes = Base64URL.decode(part) else {
            throw SPIFFEError(.malformedJWT, "jwtsvid: the \(what) is not base64url")
        }
        do {
            return try JSONDecoder().decode(T.self, from: Data(bytes))
        } catch {
            throw SPIFFEError(.malformedJWT, "jwtsvid: the \(what) is not a JSON object")
        }
    }

    private static func claims(token: String, parts: Parts, audience expected: String, at time: Date) throws -> JWTSVID {
        let header = try decodeJSON(parts.header, as: Header.self, what: "header")
        guard let alg = header.alg else {
            throw SPIFFEError(.unsupportedAlgorithm, "jwtsvid: the header has no 'alg'")
        }
        guard JWTAlgorithm(rawValue: alg) != nil else {
            throw SPIFFEError(
                .unsupportedAlgorithm,
                "jwtsvid: algorithm '\(alg)' is not allowed; JWT-SVIDs use RS, ES or PS with 256, 384 or 512"
            )
        }
        if let typ = header.typ, typ != "JWT", typ != "JOSE" {
            throw SPIFFEError(.invalidTokenType, "jwtsvid: header 'typ' is '\(typ)'; only 'JWT' or 'JOSE' are allowed")
        }
        guard let kid = header.kid, !kid.isEmpty else {
            throw SPIFFEError(.missingKeyID, "jwtsvid: the header has no 'kid'")
        }
        let claims = try decodeJSON(parts.payload, as: [String: JSONValue].self, what: "payload")
        guard let subject = claims["sub"]?.stringValue else {
            throw SPIFFEError(.invalidSubject, "jwtsvid: the token has no 'sub' claim")
        }
        let id: SPIFFEID
        do {
            id = try SPIFFEID(parsing: subject)
        } catch let error as SPIFFEError {
            throw SPIFFEError(.invalidSubject, "jwtsvid: 'sub' is not a SPIFFE ID: \(error.message)", underlying: error)
        }
        let audience: [String]
        switch claims["aud"] {
        case .string(let value): audience = [value]
        case .array(let values): audience = values.compactMap(\.stringValue)
        default: audience = []
        }
        guard !audience.isEmpty else {
            throw SPIFFEError(.missingAudience, "jwtsvid: the token has no 'aud' claim")
        }
        guard audience.contains(expected) else {
            throw SPIFFEError(
                .audienceMismatch,
                "jwtsvid: the audience \(audience) does not contain '\(expected)'"
            )
        }
        guard let exp = claims["exp"]?.numberValue else {
            throw SPIFFEError(.missingExpiry, "jwtsvid: the token has no numeric 'exp' claim")
        }
        let expiresAt = Date(timeIntervalSince1970: exp)
        guard expiresAt > time else {
            throw SPIFFEError(.tokenExpired, "jwtsvid: the token expired at \(expiresAt.rfc3339) (checked at \(time.rfc3339))")
        }
        // Clocks differ a little between issuer and validator; past that, a token from the future
        // was made to be used later, or by a clock that cannot be trusted.
        let skewed = time.addingTimeInterval(Self.allowedClockSkew)
        if let value = claims["nbf"] {
            guard let nbf = value.numberValue else { throw SPIFFEError(.malformedJWT, "jwtsvid: the 'nbf' claim is not a number") }
            let notBefore = Date(timeIntervalSince1970: nbf)
            guard notBefore <= skewed else {
                throw SPIFFEError(.tokenNotYetValid, "jwtsvid: the token is not valid before \(notBefore.rfc3339) (checked at \(time.rfc3339), \(Int(Self.allowedClockSkew)) s skew allowed)")
            }
        }
        if let value = claims["iat"] {
            guard let iat = value.numberValue else { throw SPIFFEError(.malformedJWT, "jwtsvid: the 'iat' claim is not a number") }
            let issuedAt = Date(timeIntervalSince1970: iat)
            guard issuedAt <= skewed else {
                throw SPIFFEError(.issuedInFuture, "jwtsvid: the token was issued in the future, at \(issuedAt.rfc3339) (checked at \(time.rfc3339), \(Int(Self.allowedClockSkew)) s skew allowed)")
            }
        }
        return JWTSVID(
            token: token, id: id, audience: audience, expiresAt: expiresAt,
            issuedAt: claims["iat"]?.numberValue.map(Date.init(timeIntervalSince1970:)), keyID: kid,
            algorithm: alg, claims: claims
        )
    }
}
