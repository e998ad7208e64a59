// An X509Source holds a workload's current X509-SVIDs and bundles, kept up to date from the
// Workload API's stream; it reconnects with backoff when the agent goes away and yields every
// update to whoever is listening. It is an SVID source for TLS and a bundle source for verifying
// peers (go-spiffe's x509svid.Source and x509bundle.Source).

public import Foundation
public import SPIFFE

public final class X509Source: X509BundleSource, Sendable {
    public typealias Backoff = WorkloadAPIBackoff

    private let client: WorkloadAPIClient
    private let watched: WatchedValue<X509Context>

    public init(client: WorkloadAPIClient, backoff: Backoff = Backoff()) {
        self.client = client
        watched = WatchedValue(backoff: backoff)
    }

    /// A source on `endpoint` (`unix:///path` or a path), or on `SPIFFE_ENDPOINT_SOCKET` when nil.
    public convenience init(endpoint: String? = nil, backoff: Backoff = Backoff()) throws {
        self.init(client: try endpoint.map(WorkloadAPIClient.init(endpoint:)) ?? WorkloadAPIClient.fromEnvironment(), backoff: backoff)
    }

    deinit { close() }

    /// Starts watching (once); updates arrive on ``updates()``.
    public func start() {
        let client = self.client
        watched.start { publish in _ = try await client.watchX509Contexts { publish($0) } }
    }

    /// Stops watching and ends every update stream.
    public func close() { watched.close() }

    /// The latest context, if one has arrived.
    public var context: X509Context? { watched.value }

    /// The default SVID (the first), if any.
    public var svid: X509SVID? { context?.defaultSVID }

    /// The last error from the Workload API, while the source is reconnecting.
    public var lastError: String? { watched.lastError }

    /// Every update from now on, starting with the current context when there is one.
    public func updates() -> AsyncStream<X509Context> { watched.updates() }

    /// Waits for the first context (starting the source if needed), or throws after `timeout`.
    public func waitForFirstUpdate(timeout: Duration) async throws -> X509Context {
        start()
        return try await watched.first(timeout: timeout, what: "X.509 context")
    }

    public func x509Bundle(for trustDomain: TrustDomain) throws -> X509Bundle {
        guard let context else {
            throw SPIFFEError(.bundleNotFound, "x509source: no X.509 context has arrived yet, so no bundle for \(trustDomain)")
        }
        return try context.bundles.x509Bundle(for: trustDomain)
    }
}
