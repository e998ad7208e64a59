// The SPIFFE Workload API, as its specification defines it: every call needs the
// `workload.spiffe.io: true` header (else InvalidArgument); a caller with no identity gets
// PermissionDenied; streams send the full current state at once and again on every change.
// What each method answers lives here; WorkloadAPIServer carries it over gRPC.

import Foundation
import GRPCCore
import HallmarkAttestation
import HallmarkPeerCredentials
import HallmarkProto
import HallmarkSupport
import Logging
import SPIFFE
import SPIFFEWorkloadAPI
import SwiftProtobuf

/// What the Workload API reads of the agent's cache: the SVIDs a caller's selectors are issued,
/// the bundle, the JWT-SVIDs already minted, and a broadcast of every change.
protocol WorkloadIdentityView: Sendable {
    var changes: Broadcast { get }
    var bundle: SPIFFEBundle? { get }
    /// The bundle's X.509 authorities, DER concatenated (empty before the first bundle).
    var x509BundleDER: Data { get }
    func identities(matching selectors: Set<Selector>) -> [CachedIdentity]
    func jwt(entryID: String, audience: [String], at time: Date) -> String?
    func storeJWT(entryID: String, audience: [String], token: String, issuedAt: Date, expiresAt: Date)
}

extension AgentCache: WorkloadIdentityView {}

/// Signs JWT-SVIDs the cache does not hold: the server, through the agent's current session.
protocol JWTMinter: Sendable {
    /// - Throws: RPCError(.unavailable) when the server cannot be reached now.
    func mintJWTSVID(entryID: String, audience: [String]) async throws -> (token: String, expiresAt: Date)
}

struct WorkloadAPIService: Sendable {
    /// The two methods that answer once.
    enum UnaryMethod: String, Sendable {
        case fetchJWTSVID = "FetchJWTSVID"
        case validateJWTSVID = "ValidateJWTSVID"
    }

    /// The three methods that answer with a stream following changes.
    enum StreamingMethod: String, Sendable {
        case fetchX509SVID = "FetchX509SVID"
        case fetchX509Bundles = "FetchX509Bundles"
        case fetchJWTBundles = "FetchJWTBundles"
    }

    /// The five methods, by their names in the gRPC path `/SpiffeWorkloadAPI/NAME`.
    enum Method: Equatable, Sendable, CustomStringConvertible {
        case unary(UnaryMethod)
        case streaming(StreamingMethod)

        init?(path: String) {
            let prefix = "/SpiffeWorkloadAPI/"
            guard path.hasPrefix(prefix) else { return nil }
            let name = String(path.dropFirst(prefix.count))
            if let method = UnaryMethod(rawValue: name) {
                self = .unary(method)
            } else if let method = StreamingMethod(rawValue: name) {
                self = .streaming(method)
            } else {
                return nil
            }
        }

        var description: String {
            switch self {
            case .unary(let method): method.rawValue
            case .streaming(let method): method.rawValue
            }
        }
    }

    let cache: any WorkloadIdentityView
    let attestor: UnixWorkloadAttestor
    let minter: any JWTMinter
    let logger: Logger
    /// Signatures the server is asked for on behalf of each uid (JWT-SVIDs not in the cache).
    let jwtMints: RateLimiter<UInt32>
    /// The time JWT-SVIDs are cached by (the agent's clock; tests move it).
    var clock: @Sendable () -> Date = { Date() }

    /// Refuses a call without the security header.
    func checkSecurityHeader(_ values: some Sequence<String>, _ method: Method) throws(RPCError) {
        guard values.contains(WorkloadAPI.securityHeaderValue) else {
            logger.notice("workload call refused", metadata: ["method": "\(method)", "reason": "security header missing"])
            throw RPCError(code: .invalidArgument, message: "security header missing from request")
        }
    }

    /// Attests the caller from what is known without reading its executable; nil when the
    /// executable has to be hashed first (``hashedSelectors(of:_:)``, off the event loop).
    func cachedSelectors(of peer: PeerCredentials, _ method: Method) throws(RPCError) -> Set<Selector>? {
        do {
            return try attestor.cachedSelectors(for: peer)
        } catch {
            throw refused(error, peer, method)
        }
    }

    /// Attests the caller, hashing its executable if it has not been hashed yet.
    func hashedSelectors(of peer: PeerCredentials, _ method: Method) async throws(RPCError) -> Set<Selector> {
        do {
            return try await attestor.hashedSelectors(for: peer)
        } catch {
            throw refused(error, peer, method)
        }
    }

    private func refused(_ error: any Error, _ peer: PeerCredentials, _ method: Method) -> RPCError {
        let reason = (error as? AgentError)?.message ?? "\(error)"
        logger.notice("workload call refused", metadata: ["method": "\(method)", "caller": "\(peer)", "reason": "\(reason)"])
        return RPCError(code: .permissionDenied, message: reason)
    }

    private func identities(_ selectors: Set<Selector>, _ peer: PeerCredentials, _ method: Method) throws(RPCError) -> [CachedIdentity] {
        let identities = cache.identities(matching: selectors)
        guard !identities.isEmpty else {
            logger.notice("workload call refused", metadata: ["method": "\(method)", "caller": "\(peer)", "reason": "no identity issued"])
            throw RPCError(code: .permissionDenied, message: "no identity issued")
        }
        return identities
    }

    /// The request message of a call, or InvalidArgument naming the message type.
    static func request<Request: SwiftProtobuf.Message>(_ type: Request.Type, _ bytes: [UInt8]) throws(RPCError) -> Request {
        do {
            return try Request(serializedBytes: bytes)
        } catch {
            throw RPCError(code: .invalidArgument, message: "the request is not a valid \(Request.protoMessageName) message: \(error)")
        }
    }

    /// Deterministic, so that an unchanged state serializes to the same bytes and is not sent again.
    private static let encoding = {
        var options = BinaryEncodingOptions()
        options.useDeterministicOrdering = true
        return options
    }()

    private static func serialized(_ message: some SwiftProtobuf.Message) throws(RPCError) -> [UInt8] {
        do {
            return try message.serializedBytes(options: encoding)
        } catch {
            throw RPCError(code: .internalError, message: "the response could not be encoded: \(error)")
        }
    }

    /// Checks a streaming method's request message.
    func checkStreamRequest(_ method: StreamingMethod, _ bytes: [UInt8]) throws(RPCError) {
        switch method {
        case .fetchX509SVID: _ = try Self.request(WorkloadAPI_X509SVIDRequest.self, bytes)
        case .fetchX509Bundles: _ = try Self.request(WorkloadAPI_X509BundlesRequest.self, bytes)
        case .fetchJWTBundles: _ = try Self.request(WorkloadAPI_JWTBundlesRequest.self, bytes)
        }
    }

    /// What a stream of `method` sends now, serialized: sent at once, and again whenever it changes.
    ///
    /// - Throws: PermissionDenied when the caller has no identity (any more): the stream ends.
    func streamMessage(_ method: StreamingMethod, selectors: Set<Selector>, peer: PeerCredentials) throws(RPCError) -> [UInt8] {
        let identities = try identities(selectors, peer, .streaming(method))
        switch method {
        case .fetchX509SVID:
            let bundle = cache.x509BundleDER
            return try Self.serialized(WorkloadAPI_X509SVIDResponse.with { response in
                response.svids = identities.map { identity in
                    WorkloadAPI_X509SVID.with {
                        $0.spiffeID = identity.spiffeID.description
                        $0.x509Svid = Data(identity.svid.chainDER)
                        $0.x509SvidKey = Data(identity.svid.privateKeyDER)
                        $0.bundle = bundle
                        $0.hint = identity.hint
                    }
                }
            })
        case .fetchX509Bundles:
            return try Self.serialized(WorkloadAPI_X509BundlesResponse.with { $0.bundles = bundleDER() })
        case .fetchJWTBundles:
            return try Self.serialized(WorkloadAPI_JWTBundlesResponse.with { $0.bundles = jwtBundles() })
        }
    }

    /// The one answer of a unary method, serialized.
    func unary(_ method: UnaryMethod, _ bytes: [UInt8], selectors: Set<Selector>, peer: PeerCredentials) async throws -> [UInt8] {
        switch method {
        case .fetchJWTSVID:
            try Self.serialized(try await fetchJWTSVID(Self.request(WorkloadAPI_JWTSVIDRequest.self, bytes), selectors, peer))
        case .validateJWTSVID:
            try Self.serialized(try validateJWTSVID(Self.request(WorkloadAPI_ValidateJWTSVIDRequest.self, bytes)))
        }
    }

    private func bundleDER() -> [String: Data] {
        guard let bundle = cache.bundle else { return [:] }
        return [bundle.trustDomain.name: cache.x509BundleDER]
    }

    private func jwtBundles() -> [String: Data] {
        guard let bundle = cache.bundle else { return [:] }
        // Only the JWT authorities: JWT bundle parsers require a kid on every key.
        let jwtOnly = SPIFFEBundle(trustDomain: bundle.trustDomain, jwtAuthorities: bundle.jwtAuthorities, sequenceNumber: bundle.sequenceNumber)
        return [bundle.trustDomain.name: Data((try? jwtOnly.json()) ?? [])]
    }

    private func fetchJWTSVID(
        _ request: WorkloadAPI_JWTSVIDRequest, _ selectors: Set<Selector>, _ peer: PeerCredentials
    ) async throws -> WorkloadAPI_JWTSVIDResponse {
        let audience = request.audience
        guard !audience.isEmpty, audience.allSatisfy({ !$0.isEmpty }) else {
            throw RPCError(code: .invalidArgument, message: "audience must be specified")
        }
        var chosen = try identities(selectors, peer, .unary(.fetchJWTSVID))
        if !request.spiffeID.isEmpty {
            chosen = chosen.filter { $0.spiffeID.description == request.spiffeID }
            guard !chosen.isEmpty else {
                throw RPCError(code: .permissionDenied, message: "no identity issued for \(request.spiffeID)")
            }
        }
        var svids: [WorkloadAPI_JWTSVID] = []
        for identity in chosen {
            let now = clock()
            let token: String
            if let cached = cache.jwt(entryID: identity.entryID, audience: audience, at: now) {
                token = cached
            } else {
                if let wait = jwtMints.take(peer.uid) {
                    logger.notice("workload call refused", metadata: ["method": "FetchJWTSVID", "caller": "\(peer)", "reason": "JWT-SVID rate limit"])
                    throw RPCError(
                        code: .resourceExhausted,
                        message: "new JWT-SVIDs for uid \(peer.uid) are limited to \(jwtMints.limit) (--workload-jwt-mint-rate, --workload-jwt-mint-burst); cached ones are still served; retry in \(RateLimiter<UInt32>.describe(wait: wait))"
                    )
                }
                let minted = try await minter.mintJWTSVID(entryID: identity.entryID, audience: audience)
                token = minted.token
                cache.storeJWT(entryID: identity.entryID, audience: audience, token: token, issuedAt: now, expiresAt: minted.expiresAt)
            }
            svids.append(WorkloadAPI_JWTSVID.with {
                $0.spiffeID = identity.spiffeID.description
                $0.svid = token
                $0.hint = identity.hint
            })
        }
        return WorkloadAPI_JWTSVIDResponse.with { $0.svids = svids }
    }

    private func validateJWTSVID(_ request: WorkloadAPI_ValidateJWTSVIDRequest) throws(RPCError) -> WorkloadAPI_ValidateJWTSVIDResponse {
        guard !request.audience.isEmpty else { throw RPCError(code: .invalidArgument, message: "audience must be specified") }
        guard !request.svid.isEmpty else { throw RPCError(code: .invalidArgument, message: "svid must be specified") }
        guard let bundle = cache.bundle else { throw RPCError(code: .unavailable, message: "the agent has no bundle yet") }
        let svid: JWTSVID
        do {
            svid = try JWTSVID(parsing: request.svid, bundles: bundle.jwtBundle, audience: request.audience)
        } catch let error as SPIFFEError {
            throw RPCError(code: .invalidArgument, message: error.message)
        } catch {
            throw RPCError(code: .invalidArgument, message: "\(error)")
        }
        return WorkloadAPI_ValidateJWTSVIDResponse.with {
            $0.spiffeID = svid.id.description
            $0.claims = Google_Protobuf_Struct(fields: svid.claims.mapValues(Self.protobufValue))
        }
    }

    static func protobufValue(_ value: JSONValue) -> Google_Protobuf_Value {
        switch value {
        case .null: Google_Protobuf_Value(nilLiteral: ())
        case .bool(let bool): Google_Protobuf_Value(boolValue: bool)
        case .number(let number): Google_Protobuf_Value(numberValue: number)
        case .string(let string): Google_Protobuf_Value(stringValue: string)
        case .array(let array): Google_Protobuf_Value(listValue: Google_Protobuf_ListValue(values: array.map(protobufValue)))
        case .object(let object): Google_Protobuf_Value(structValue: Google_Protobuf_Struct(fields: object.mapValues(protobufValue)))
        }
    }
}
