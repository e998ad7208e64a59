// The SPIFFE Workload API, as its specification defines it: every call needs the
// `workload.spiffe.io: true` header (else InvalidArgument); a caller with no identity gets
// PermissionDenied; streams send the full current state at once and again on every change.

import Foundation
import GRPCCore
import HallmarkAttestation
import HallmarkPeerCredentials
import HallmarkProto
import Logging
import SPIFFE
import SPIFFEWorkloadAPI
import SwiftProtobuf

struct WorkloadAPIService: WorkloadAPI_SpiffeWorkloadAPI.ServiceProtocol {
    let cache: AgentCache
    let attestor: UnixWorkloadAttestor
    let link: ServerLink
    let logger: Logger

    /// Checks the header and attests the caller; returns its selectors.
    private func caller(_ metadata: Metadata, _ method: String) throws -> (PeerCredentials, Set<Selector>) {
        guard metadata[stringValues: WorkloadAPI.securityHeaderKey].contains(WorkloadAPI.securityHeaderValue) else {
            logger.notice("workload call refused", metadata: ["method": "\(method)", "reason": "security header missing"])
            throw RPCError(code: .invalidArgument, message: "security header missing from request")
        }
        let peer = try PeerCredentials(metadata: metadata)
        do {
            return (peer, try attestor.selectors(for: peer))
        } catch let error as AgentError {
            logger.notice("workload call refused", metadata: ["method": "\(method)", "caller": "\(peer)", "reason": "\(error.message)"])
            throw RPCError(code: .permissionDenied, message: error.message)
        }
    }

    private func identities(_ selectors: Set<Selector>, _ peer: PeerCredentials, _ method: String) throws -> [CachedIdentity] {
        let identities = cache.identities(matching: selectors)
        guard !identities.isEmpty else {
            logger.notice("workload call refused", metadata: ["method": "\(method)", "caller": "\(peer)", "reason": "no identity issued"])
            throw RPCError(code: .permissionDenied, message: "no identity issued")
        }
        return identities
    }

    private func bundleDER() -> [String: Data] {
        guard let bundle = cache.bundle else { return [:] }
        return [bundle.trustDomain.name: cache.x509BundleDER]
    }

    /// A stream that sends `message(identities)` at once and again whenever it changes, and ends
    /// with PermissionDenied when the caller no longer has any identity.
    private func changeStream<Message: SwiftProtobuf.Message & Equatable>(
        _ method: String, _ metadata: Metadata, message: @escaping @Sendable ([CachedIdentity]) -> Message
    ) throws -> StreamingServerResponse<Message> {
        let (peer, selectors) = try caller(metadata, method)
        _ = try identities(selectors, peer, method)
        return StreamingServerResponse { writer in
            var last: Message?
            logger.debug("stream opened", metadata: ["method": "\(method)", "caller": "\(peer)"])
            defer { logger.debug("stream ended", metadata: ["method": "\(method)", "caller": "\(peer)"]) }
            try await cache.changes.forEachChange {
                let next = message(try identities(selectors, peer, method))
                if next != last {
                    try await writer.write(next)
                    last = next
                }
            }
            return [:]
        }
    }

    func fetchX509SVID(
        request: ServerRequest<WorkloadAPI_X509SVIDRequest>, context: ServerContext
    ) async throws -> StreamingServerResponse<WorkloadAPI_X509SVIDResponse> {
        try changeStream("FetchX509SVID", request.metadata) { [cache] identities in
            let bundle = cache.x509BundleDER
            return WorkloadAPI_X509SVIDResponse.with { response in
                response.svids = identities.map { identity in
                    WorkloadAPI_X509SVID.with {
                        $0.spiffeID = identity.spiffeID.description
                        $0.x509Svid = Data(identity.svid.chainDER)
                        $0.x509SvidKey = Data(identity.svid.privateKeyDER)
                        $0.bundle = bundle
                        $0.hint = identity.hint
                    }
                }
            }
        }
    }

    func fetchX509Bundles(
        request: ServerRequest<WorkloadAPI_X509BundlesRequest>, context: ServerContext
    ) async throws -> StreamingServerResponse<WorkloadAPI_X509BundlesResponse> {
        try changeStream("FetchX509Bundles", request.metadata) { [self] _ in
            WorkloadAPI_X509BundlesResponse.with { $0.bundles = bundleDER() }
        }
    }

    func fetchJWTSVID(request: ServerRequest<WorkloadAPI_JWTSVIDRequest>, context: ServerContext) async throws -> ServerResponse<WorkloadAPI_JWTSVIDResponse> {
        let (peer, selectors) = try caller(request.metadata, "FetchJWTSVID")
        let audience = request.message.audience
        guard !audience.isEmpty, audience.allSatisfy({ !$0.isEmpty }) else {
            throw RPCError(code: .invalidArgument, message: "audience must be specified")
        }
        var chosen = try identities(selectors, peer, "FetchJWTSVID")
        if !request.message.spiffeID.isEmpty {
            chosen = chosen.filter { $0.spiffeID.description == request.message.spiffeID }
            guard !chosen.isEmpty else {
                throw RPCError(code: .permissionDenied, message: "no identity issued for \(request.message.spiffeID)")
            }
        }
        var svids: [WorkloadAPI_JWTSVID] = []
        for identity in chosen {
            let now = Date()
            let token: String
            if let cached = cache.jwt(entryID: identity.entryID, audience: audience, at: now) {
                token = cached
            } else {
                guard let client = link.client else {
                    throw RPCError(code: .unavailable, message: "the agent cannot reach the server to sign a JWT-SVID; retry")
                }
                let response = try await client.newJWTSVID(AgentAPI_NewJWTSVIDRequest.with {
                    $0.entryID = identity.entryID
                    $0.audience = audience
                })
                token = response.token
                cache.storeJWT(
                    entryID: identity.entryID, audience: audience, token: token, issuedAt: now,
                    expiresAt: Date(timeIntervalSince1970: TimeInterval(response.expiresAt))
                )
            }
            svids.append(WorkloadAPI_JWTSVID.with {
                $0.spiffeID = identity.spiffeID.description
                $0.svid = token
                $0.hint = identity.hint
            })
        }
        return ServerResponse(message: WorkloadAPI_JWTSVIDResponse.with { $0.svids = svids })
    }

    private func jwtBundles() -> [String: Data] {
        guard let bundle = cache.bundle else { return [:] }
        // Only the JWT authorities: JWT bundle parsers require a kid on every key.
        let jwtOnly = SPIFFEBundle(trustDomain: bundle.trustDomain, jwtAuthorities: bundle.jwtAuthorities, sequenceNumber: bundle.sequenceNumber)
        return [bundle.trustDomain.name: Data((try? jwtOnly.json()) ?? [])]
    }

    func fetchJWTBundles(
        request: ServerRequest<WorkloadAPI_JWTBundlesRequest>, context: ServerContext
    ) async throws -> StreamingServerResponse<WorkloadAPI_JWTBundlesResponse> {
        try changeStream("FetchJWTBundles", request.metadata) { [self] _ in
            WorkloadAPI_JWTBundlesResponse.with { $0.bundles = jwtBundles() }
        }
    }

    func validateJWTSVID(
        request: ServerRequest<WorkloadAPI_ValidateJWTSVIDRequest>, context: ServerContext
    ) async throws -> ServerResponse<WorkloadAPI_ValidateJWTSVIDResponse> {
        _ = try caller(request.metadata, "ValidateJWTSVID")
        guard !request.message.audience.isEmpty else { throw RPCError(code: .invalidArgument, message: "audience must be specified") }
        guard !request.message.svid.isEmpty else { throw RPCError(code: .invalidArgument, message: "svid must be specified") }
        guard let bundle = cache.bundle else { throw RPCError(code: .unavailable, message: "the agent has no bundle yet") }
        let svid: JWTSVID
        do {
            svid = try JWTSVID(parsing: request.message.svid, bundles: bundle.jwtBundle, audience: request.message.audience)
        } catch let error as SPIFFEError {
            throw RPCError(code: .invalidArgument, message: error.message)
        }
        return ServerResponse(message: WorkloadAPI_ValidateJWTSVIDResponse.with {
            $0.spiffeID = svid.id.description
            $0.claims = Google_Protobuf_Struct(fields: svid.claims.mapValues(Self.protobufValue))
        })
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
