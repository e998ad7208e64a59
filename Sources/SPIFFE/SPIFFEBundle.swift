// The SPIFFE bundle format (SPIFFE Trust Domain and Bundle, section 4): a JWK Set holding a trust
// domain's X.509 authorities (`use: x509-svid`) and JWT authorities (`use: jwt-svid`).

public import X509
public import Crypto
public import _CryptoExtras
public import Foundation

/// A trust domain's bundle in the SPIFFE bundle format.
public struct SPIFFEBundle: Sendable {
    /// The trust domain of the bundle (the format itself does not carry it).
    public let trustDomain: TrustDomain
    /// The X.509 authorities.
    public var x509Authorities: [Certificate]
    /// The JWT authorities.
    public var jwtAuthorities: [JWTAuthority]
    /// `spiffe_sequence`: increases whenever the bundle changes.
    public var sequenceNumber: UInt64?
    /// `spiffe_refresh_hint`, in seconds.
    public var refreshHint: Int?

    public init(
        trustDomain: TrustDomain, x509Authorities: [Certificate] = [], jwtAuthorities: [JWTAuthority] = [],
        sequenceNumber: UInt64? = nil, refreshHint: Int? = nil
    ) {
        self.trustDomain = trustDomain
        self.x509Authorities = x509Authorities
        self.jwtAuthorities = jwtAuthorities
        self.sequenceNumber = sequenceNumber
        self.refreshHint = refreshHint
    }

    /// Parses a bundle. Keys of an unknown `kty` or `use` are ignored, as the format requires.
    ///
    /// - Throws: ``SPIFFEError`` with `malformedBundle`, `invalidBundleKey` (naming the key's index
    ///   and the rule) or `duplicateBundleKey`.
    public init(trustDomain: TrustDomain, json: some DataProtocol) throws {
        let document: JWKSet
        do {
            document = try JSONDecoder().decode(JWKSet.self, from: Data(json))
        } catch {
            throw SPIFFEError(.malformedBundle, "spiffebundle: not a JWK Set with a 'keys' array: \(Self.describe(error))")
        }
        self.init(trustDomain: trustDomain, sequenceNumber: document.spiffe_sequence, refreshHint: document.spiffe_refresh_hint)
        var jwtBundle = try JWTBundle(trustDomain: trustDomain)
        for (index, key) in document.keys.enumerated() {
            func invalid(_ rule: String) -> SPIFFEError {
                SPIFFEError(.invalidBundleKey, "spiffebundle: key \(index): \(rule)")
            }
            switch key.use {
            case "x509-svid":
                guard let kty = key.kty, ["EC", "RSA"].contains(kty) else { continue }
                guard key.kid == nil else { throw invalid("an x509-svid key must not have a 'kid'") }
                guard let x5c = key.x5c, x5c.count == 1 else {
                    throw invalid("an x509-svid key must hold exactly one certificate in 'x5c'")
                }
                guard let der = Data(base64Encoded: x5c[0]), let certificate = try? Certificate(derEncoded: Array(der)) else {
                    throw invalid("'x5c' is not a base64 DER certificate")
                }
                guard !x509Authorities.contains(certificate) else {
                    throw SPIFFEError(.duplicateBundleKey, "spiffebundle: key \(index) repeats an X.509 authority")
                }
                x509Authorities.append(certificate)
            case "jwt-svid":
                guard let kty = key.kty, ["EC", "RSA"].contains(kty) else { continue }
                guard let kid = key.kid, !kid.isEmpty else { throw invalid("a jwt-svid key must have a 'kid'") }
                let authority = try JWTAuthority(keyID: kid, key: Self.publicKey(key, invalid: invalid))
                do {
                    try jwtBundle.add(authority)
                } catch let error as SPIFFEError where error.code == .duplicateBundleKey {
                    throw SPIFFEError(.duplicateBundleKey, "spiffebundle: key \(index) repeats key ID '\(kid)'")
                }
                jwtAuthorities.append(authority)
            default:
                continue
            }
        }
    }

    /// The bundle as JSON, keys sorted, X.509 authorities first.
    public func json() throws -> [UInt8] {
        var keys: [JWK] = []
        for certificate in x509Authorities {
            var key = try Self.jwk(for: certificate.publicKey)
            key.use = "x509-svid"
            key.x5c = [Data(DERCertificates.der(certificate)).base64EncodedString()]
            keys.append(key)
        }
        for authority in jwtAuthorities {
            var key = try Self.jwk(for: authority.key)
            key.use = "jwt-svid"
            key.kid = authority.keyID
            keys.append(key)
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
        return Array(try encoder.encode(JWKSet(keys: keys, spiffe_sequence: sequenceNumber, spiffe_refresh_hint: refreshHint)))
    }

    /// The X.509 part as an ``X509Bundle``.
    public var x509Bundle: X509Bundle { X509Bundle(trustDomain: trustDomain, authorities: x509Authorities) }

    /// The JWT part as a ``JWTBundle``.
    public var jwtBundle: JWTBundle {
        // Keys were checked for duplicates when added to the bundle; a caller that appended
        // duplicates by hand gets the first of each.
        var bundle = try! JWTBundle(trustDomain: trustDomain)
        for authority in jwtAuthorities where bundle.authorities[authority.keyID] == nil {
            try! bundle.add(authority)
        }
        return bundle
    }

    // MARK: JWK encoding

    private struct JWKSet: Codable {
        var keys: [JWK]
        var spiffe_sequence: UInt64?
        var spiffe_refresh_hint: Int?
    }

    private struct JWK: Codable {
        var kty: String?
        var use: String?
        var kid: String?
        var crv: String?
        var x: String?
        var y: String?
        var n: String?
        var e: String?
        var x5c: [String]?
    }

    private static func describe(_ error: any Error) -> String {
        if let error = error as? DecodingError {
            switch error {
            case .dataCorrupted(let context), .keyNotFound(_, let context), .typeMismatch(_, let context),
                .valueNotFound(_, let context):
                let path = context.codingPath.map(\.stringValue).joined(separator: ".")
                return path.isEmpty ? context.debugDescription : "\(path): \(context.debugDescription)"
            @unknown default:
                return "\(error)"
            }
        }
        return "\(error)"
    }

    private static func publicKey(_ key: JWK, invalid: (String) -> SPIFFEError) throws -> JWTAuthority.Key {
        if key.kty == "RSA" {
            guard let n = key.n.flatMap(Base64URL.decode), let e = key.e.flatMap(Base64URL.decode) else {
                throw invalid("an RSA key needs base64url 'n' and 'e'")
            }
            guard let rsa = try? _RSA.Signing.PublicKey(n: n, e: e) else {
                throw invalid("'n' and 'e' are not an RSA public key of at least 2048 bits")
            }
            return .rsa(rsa)
        }
        guard let x = key.x.flatMap(Base64URL.decode), let y = key.y.flatMap(Base64URL.decode) else {
            throw invalid("an EC key needs base64url 'x' and 'y'")
        }
        let raw = x + y
        do {
            switch key.crv {
            case "P-256": return .p256(try P256.Signing.PublicKey(rawRepresentation: raw))
            case "P-384": return .p384(try P384.Signing.PublicKey(rawRepresentation: raw))
            case "P-521": return .p521(try P521.Signing.PublicKey(rawRepresentation: raw))
            default: throw invalid("EC curve '\(key.crv ?? "")' is not P-256, P-384 or P-521")
            }
        } catch let error as SPIFFEError {
            throw error
        } catch {
            throw invalid("'x' and 'y' are not a point on \(key.crv ?? "")")
        }
    }

    private static func jwk(for key: JWTAuthority.Key) throws -> JWK {
        func ec(_ curve: String, _ raw: Data) -> JWK {
            let half = raw.count / 2
            return JWK(kty: "EC", crv: curve, x: Base64URL.encode(raw.prefix(half)), y: Base64URL.encode(raw.suffix(half)))
        }
        switch key {
        case .p256(let key): return ec("P-256", key.rawRepresentation)
        case .p384(let key): return ec("P-384", key.rawRepresentation)
        case .p521(let key): return ec("P-521", key.rawRepresentation)
        case .rsa(let key):
            let primitives = try key.getKeyPrimitives()
            return JWK(kty: "RSA", n: Base64URL.encode(primitives.modulus), e: Base64URL.encode(primitives.publicExponent))
        }
    }

    private static func jwk(for key: Certificate.PublicKey) throws -> JWK {
        if let p256 = P256.Signing.PublicKey(key) { return try jwk(for: .p256(p256)) }
        if let p384 = P384.Signing.PublicKey(key) { return try jwk(for: .p384(p384)) }
        if let p521 = P521.Signing.PublicKey(key) { return try jwk(for: .p521(p521)) }
        if let rsa = _RSA.Signing.PublicKey(key) { return try jwk(for: .rsa(rsa)) }
        throw SPIFFEError(.invalidBundleKey, "spiffebundle: an X.509 authority's key is not EC or RSA")
    }
}
