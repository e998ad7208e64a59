// SPIFFE mTLS as grpc-swift-2 transport security, with SVIDs from a real agent: an authorised
// client reaches the service, which reads the caller's SPIFFE ID; a refused ID does not.

import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import HallmarkTestSupport
import SPIFFE
import SPIFFETLS
import SPIFFEWorkloadAPI
import Testing
import X509

/// Answers FetchJWTSVID with the caller's verified SPIFFE ID, and nothing else.
struct WhoAmIService: WorkloadAPI_SpiffeWorkloadAPI.SimpleServiceProtocol {
    func fetchJWTSVID(request: WorkloadAPI_JWTSVIDRequest, context: ServerContext) async throws -> WorkloadAPI_JWTSVIDResponse {
        guard let tls = context.transportSpecific as? HTTP2ServerTransport.Posix.Context, let leaf = tls.peerCertificateChain?.first else {
            throw RPCError(code: .unauthenticated, message: "no client certificate")
        }
        let id = try SPIFFEID(x509SVIDLeaf: leaf)
        return WorkloadAPI_JWTSVIDResponse.with { $0.svids = [WorkloadAPI_JWTSVID.with { $0.spiffeID = id.description }] }
    }

    func fetchX509SVID(request: WorkloadAPI_X509SVIDRequest, response: RPCWriter<WorkloadAPI_X509SVIDResponse>, context: ServerContext) async throws {
        throw RPCError(code: .unimplemented, message: "")
    }
    func fetchX509Bundles(request: WorkloadAPI_X509BundlesRequest, response: RPCWriter<WorkloadAPI_X509BundlesResponse>, context: ServerContext) async throws {
        throw RPCError(code: .unimplemented, message: "")
    }
    func fetchJWTBundles(request: WorkloadAPI_JWTBundlesRequest, response: RPCWriter<WorkloadAPI_JWTBundlesResponse>, context: ServerContext) async throws {
        throw RPCError(code: .unimplemented, message: "")
    }
    func validateJWTSVID(request: WorkloadAPI_ValidateJWTSVIDRequest, context: ServerContext) async throws -> WorkloadAPI_ValidateJWTSVIDResponse {
        throw RPCError(code: .unimplemented, message: "")
    }
}

@Suite("gRPC with SPIFFE transport security", .serialized)
struct GRPCTransportSecurityTests {
    static let svc = try! SPIFFEID(parsing: "spiffe://example.org/svc")

    /// Serves WhoAmI with `serverAllows`, calls it with a client that expects `clientExpects`.
    static func call(_ source: X509Source, serverAllows: Authorizer, clientExpects: Authorizer) async throws -> String {
        let server = GRPCServer(
            transport: .http2NIOPosix(
                address: .ipv4(host: "127.0.0.1", port: 0), transportSecurity: try SPIFFETLSContext.grpcServer(source: source, authorizer: serverAllows)
            ),
            services: [WhoAmIService()]
        )
        return try await withThrowingDiscardingTaskGroup { group in
            group.addTask { try await server.serve() }
            defer { server.beginGracefulShutdown() }
            let port = try #require(try await server.listeningAddress?.ipv4?.port)
            let transport = try HTTP2ClientTransport.Posix(
                target: .ipv4(host: "127.0.0.1", port: port), transportSecurity: try SPIFFETLSContext.grpcClient(source: source, authorizer: clientExpects),
                config: .defaults { $0.http2.authority = "svc" }
            )
            // A refused handshake must fail the call, not leave it waiting for a connection.
            var options = CallOptions.defaults
            options.timeout = .seconds(10)
            options.waitForReady = false
            return try await withGRPCClient(transport: transport) { grpc in
                let response = try await WorkloadAPI_SpiffeWorkloadAPI.Client(wrapping: grpc).fetchJWTSVID(WorkloadAPI_JWTSVIDRequest(), options: options)
                return response.svids.first?.spiffeID ?? ""
            }
        }
    }

    @Test("an allowed caller is served and seen by its SPIFFE ID; a refused caller or an unexpected server fails")
    func grpc() async throws {
        let server = try TestServer()
        let agent = try TestAgent(server: server)
        try agent.register("/svc", selectors: ["unix:uid:0"])
        _ = try agent.waitForSVID("spiffe://example.org/svc")
        let source = try X509Source(endpoint: agent.socket)
        defer { source.close() }
        _ = try await source.waitForFirstUpdate(timeout: .seconds(10))

        let seen = try await Self.call(source, serverAllows: .id(Self.svc), clientExpects: .id(Self.svc))
        #expect(seen == "spiffe://example.org/svc")
        await #expect(throws: (any Error).self) {
            try await Self.call(source, serverAllows: .id(try SPIFFEID(parsing: "spiffe://example.org/someone-else")), clientExpects: .id(Self.svc))
        }
        await #expect(throws: (any Error).self) {
            try await Self.call(source, serverAllows: .id(Self.svc), clientExpects: .id(try SPIFFEID(parsing: "spiffe://example.org/other-server")))
        }
    }
}
