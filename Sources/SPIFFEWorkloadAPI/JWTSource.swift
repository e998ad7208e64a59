// A JWTSource holds the JWT bundles, kept up to date from the Workload API's stream (reconnecting
// with backoff), and fetches JWT-SVIDs for an audience: go-spiffe's jwtsvid.Source and
// jwtbundle.Source. It is a bundle source for validating JWT-SVIDs.

public import Foundation
public import SPIFFE

public final class JWTSource: JWTBundleSource, Sendable {
    public typealias Backoff = WorkloadAPIBackoff

    private let client: WorkloadAPIClient
    private let watched: WatchedValue<JWTBundleSet>

    public init(client: WorkloadAPIClient, backoff: Backoff = Backoff()) {
        self.client = client
        watched = WatchedValue(backoff: backoff)
    }

    /// A source on `endpoint` (`unix:///path` or a path), or on `SPIFFE_ENDPOINT_SOCKET` when nil.
    public convenience init(endpoint: String? = nil, backoff: Backoff = Backoff()) throws {
        self.init(client: try endpoint.map(WorkloadAPIClient.init(endpoint:)) ?? WorkloadAPIClient.fromEnvironment(), backoff: backoff)
    }

    deinit { close() }

    /// Starts watching the JWT bundles (once).
    public func start() {
        let client = self.client
        watched.start { publish in _ = try await client.watchJWTBundles { publish($0) } }
    }

    /// Stops watching.
    public func close() { watched.close() }

    /// The latest JWT bundles, if they have arrived.
    public var bundles: JWTBundleSet? { watched.value }

    /// The last error from the Workload API, while the source is reconnecting.
    public var lastError: String? { watched.lastError }

    /// Every update of the bundles from now on, starting with the current ones when there are any.
    public func updates() -> AsyncStream<JWTBundleSet> { watched.updates() }

    /// Waits for the first bundles (starting the source if needed), or throws after `timeout`.
    @discardableResult
    public func waitForFirstUpdate(timeout: Duration) async throws -> JWTBundleSet {
        start()
        return try await watched.first(timeout: timeout, what: "JWT bundles")
    }

    /// A JWT-SVID for `audience`: the default identity's, or `spiffeID`'s.
    /// - Throws: ``WorkloadAPIClientError`` when the agent issues none.
    public func fetchJWTSVID(audience: [String], spiffeID: SPIFFEID? = nil) async throws -> FetchedJWTSVID {
        guard let first = try await client.fetchJWTSVIDs(audience: audience, spiffeID: spiffeID).first else {
            throw WorkloadAPIClientError(.noIdentity, "workloadapi: the agent issued no JWT-SVID for \(spiffeID?.description ?? "this workload")")
        }
        return first
    }

    public func jwtBundle(for trustDomain: TrustDomain) throws -> JWTBundle {
        guard let bundles else {
            throw SPIFFEError(.bundleNotFound, "jwtsource: no JWT bundles have arrived yet, so none for \(trustDomain)")
        }
        return try bundles.jwtBundle(for: trustDomain)
    }
}
