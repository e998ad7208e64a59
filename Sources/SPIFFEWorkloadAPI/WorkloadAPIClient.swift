// A client of the SPIFFE Workload API over a Unix socket: what a workload uses to get its SVIDs,
// bundles and JWT-SVIDs from the local agent.

public import Foundation
public import GRPCCore
public import GRPCNIOTransportHTTP2
public import SPIFFE
import X509

/// The X.509 identities of a workload and the bundles to verify peers with.
public struct X509Context: Sendable {
    /// The workload's SVIDs; the first is the default.
    public let svids: [X509SVID]
    /// The bundle of the workload's trust domain (and any federated ones).
    public let bundles: X509BundleSet

    public var defaultSVID: X509SVID? { svids.first }
}

/// A JWT-SVID as the Workload API hands it out.
public struct FetchedJWTSVID: Sendable {
    public let spiffeID: SPIFFEID
    public let token: String
    public let hint: String
}

public struct WorkloadAPIClient: Sendable {
    /// The socket path.
    public let socketPath: String

    /// - Parameter endpoint: `unix:///path`, or a plain absolute path.
    /// - Throws: ``SPIFFEError``-free ``WorkloadAPIClientError`` when the address is not a Unix socket.
    public init(endpoint: String) throws {
        if endpoint.hasPrefix("unix://") {
            let path = String(endpoint.dropFirst("unix://".count))
            guard path.hasPrefix("/") else {
                throw WorkloadAPIClientError(.invalidEndpoint, "workloadapi: '\(endpoint)' must be unix:///absolute/path")
            }
            socketPath = path
        } else if endpoint.hasPrefix("/") {
            socketPath = endpoint
        } else {
            throw WorkloadAPIClientError(.invalidEndpoint, "workloadapi: '\(endpoint)' is not unix:///path or an absolute path")
        }
    }

    /// The endpoint from `SPIFFE_ENDPOINT_SOCKET`.
    public static func fromEnvironment() throws -> WorkloadAPIClient {
        guard let value = ProcessInfo.processInfo.environment[WorkloadAPI.endpointSocketVariable], !value.isEmpty else {
            throw WorkloadAPIClientError(.invalidEndpoint, "workloadapi: no socket given and \(WorkloadAPI.endpointSocketVariable) is not set")
        }
        return try WorkloadAPIClient(endpoint: value)
    }

    /// The metadata every Workload API call must carry (the security header).
    public static let securityMetadata: Metadata = {
        var metadata = Metadata()
        metadata.addString(WorkloadAPI.securityHeaderValue, forKey: WorkloadAPI.securityHeaderKey)
        return metadata
    }()

    /// Runs `body` with a connected client.
    public func withClient<Result: Sendable>(
        _ body: @Sendable @escaping (WorkloadAPI_SpiffeWorkloadAPI.Client<HTTP2ClientTransport.Posix>) async throws -> Result
    ) async throws -> Result {
        let transport = try HTTP2ClientTransport.Posix(target: .unixDomainSocket(path: socketPath), transportSecurity: .plaintext)
        return try await withGRPCClient(transport: transport) { client in
            try await body(WorkloadAPI_SpiffeWorkloadAPI.Client(wrapping: client))
        }
    }

    /// The current X.509 context (the stream's first message).
    public func fetchX509Context() async throws -> X509Context {
        try await watchX509Contexts { _ in false }
    }

    /// Calls `handler` with every X.509 context the agent sends until it returns false; returns the last one.
    @discardableResult
    public func watchX509Contexts(_ handler: @Sendable @escaping (X509Context) async throws -> Bool) async throws -> X509Context {
        try await withClient { client in
            try await client.fetchX509SVID(WorkloadAPI_X509SVIDRequest(), metadata: Self.securityMetadata) { response in
                var last: X509Context?
                for try await message in response.messages {
                    let context = try Self.context(message)
                    last = context
                    if try await !handler(context) { break }
                }
                guard let last else { throw WorkloadAPIClientError(.streamEnded, "workloadapi: the stream ended before any X.509 context") }
                return last
            }
        }
    }

    static func context(_ message: WorkloadAPI_X509SVIDResponse) throws -> X509Context {
        var bundles = X509BundleSet()
        let svids = try message.svids.map { item -> X509SVID in
            let svid = try X509SVID(chainDER: Array(item.x509Svid), privateKeyDER: Array(item.x509SvidKey), hint: item.hint)
            guard svid.id.description == item.spiffeID else {
                throw WorkloadAPIClientError(.invalidResponse, "workloadapi: the SVID's certificate names \(svid.id), the message \(item.spiffeID)")
            }
            bundles.set(try X509Bundle(trustDomain: svid.id.trustDomain, der: Array(item.bundle)))
            return svid
        }
        for (name, der) in message.federatedBundles {
            let domain = try TrustDomain(name)
            bundles.set(try X509Bundle(trustDomain: domain, der: Array(der)))
        }
        return X509Context(svids: svids, bundles: bundles)
    }

    /// JWT-SVIDs for an audience: one for each identity, or only `spiffeID`'s.
    public func fetchJWTSVIDs(audience: [String], spiffeID: SPIFFEID? = nil) async throws -> [FetchedJWTSVID] {
        try await withClient { client in
            let response = try await client.fetchJWTSVID(
                WorkloadAPI_JWTSVIDRequest.with {
                    $0.audience = audience
                    $0.spiffeID = spiffeID?.description ?? ""
                },
                metadata: Self.securityMetadata
            )
            return try response.svids.map { FetchedJWTSVID(spiffeID: try SPIFFEID(parsing: $0.spiffeID), token: $0.svid, hint: $0.hint) }
        }
    }

    /// The JWT bundles (the stream's first message).
    public func fetchJWTBundles() async throws -> JWTBundleSet {
        try await watchJWTBundles { _ in false }
    }

    /// Calls `handler` with every JWT bundle set the agent sends until it returns false; returns the last one.
    @discardableResult
    public func watchJWTBundles(_ handler: @Sendable @escaping (JWTBundleSet) async throws -> Bool) async throws -> JWTBundleSet {
        try await withClient { client in
            try await client.fetchJWTBundles(WorkloadAPI_JWTBundlesRequest(), metadata: Self.securityMetadata) { response in
                var last: JWTBundleSet?
                for try await message in response.messages {
                    var set = JWTBundleSet()
                    for (name, json) in message.bundles {
                        let domain = try TrustDomain(name)
                        set.set(try SPIFFEBundle(trustDomain: domain, json: json).jwtBundle)
                    }
                    last = set
                    if try await !handler(set) { break }
                }
                guard let last else { throw WorkloadAPIClientError(.streamEnded, "workloadapi: the stream ended before any JWT bundle") }
                return last
            }
        }
    }

    /// The X.509 bundles of every trust domain the workload trusts (the stream's first message).
    public func fetchX509Bundles() async throws -> X509BundleSet {
        try await watchX509Bundles { _ in false }
    }

    /// Calls `handler` with every X.509 bundle set the agent sends until it returns false; returns the last one.
    @discardableResult
    public func watchX509Bundles(_ handler: @Sendable @escaping (X509BundleSet) async throws -> Bool) async throws -> X509BundleSet {
        try await withClient { client in
            try await client.fetchX509Bundles(WorkloadAPI_X509BundlesRequest(), metadata: Self.securityMetadata) { response in
                var last: X509BundleSet?
                for try await message in response.messages {
                    var set = X509BundleSet()
                    for (name, der) in message.bundles {
                        set.set(try X509Bundle(trustDomain: try TrustDomain(name), der: Array(der)))
                    }
                    last = set
                    if try await !handler(set) { break }
                }
                guard let last else { throw WorkloadAPIClientError(.streamEnded, "workloadapi: the stream ended before any X.509 bundle") }
                return last
            }
        }
    }

    /// Asks the agent to validate a JWT-SVID for an audience; returns its SPIFFE ID.
    public func validateJWTSVID(_ token: String, audience: String) async throws -> SPIFFEID {
        try await withClient { client in
            let response = try await client.validateJWTSVID(
                WorkloadAPI_ValidateJWTSVIDRequest.with {
                    $0.audience = audience
                    $0.svid = token
                },
                metadata: Self.securityMetadata
            )
            return try SPIFFEID(parsing: response.spiffeID)
        }
    }
}

/// A failure of the Workload API client: a stable code, and a message naming the cause.
///
/// Match on ``code``; read ``message`` for the cause. New codes may be added, so a `switch` over
/// codes needs a `default`.
public struct WorkloadAPIClientError: Error, Hashable, Sendable, CustomStringConvertible {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        fileprivate enum Base: String, Hashable, Sendable {
            case invalidEndpoint, streamEnded, invalidResponse, noIdentity, timeout
        }

        fileprivate let base: Base
        fileprivate init(_ base: Base) { self.base = base }

        public var description: String { base.rawValue }

        /// The socket address is not a Unix socket path, or none was given.
        public static let invalidEndpoint = Code(.invalidEndpoint)
        /// The agent ended a stream before it sent what was asked for.
        public static let streamEnded = Code(.streamEnded)
        /// The agent sent something that contradicts itself.
        public static let invalidResponse = Code(.invalidResponse)
        /// The agent issued no SVID of the kind asked for.
        public static let noIdentity = Code(.noIdentity)
        /// Nothing arrived within the time given.
        public static let timeout = Code(.timeout)
    }

    public let code: Code
    /// A sentence naming the cause, prefixed `workloadapi:`.
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
