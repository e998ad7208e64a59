// The Workload API's gRPC server on the agent's Unix socket. gRPC over HTTP/2 is answered at the
// frame level: each connection's HTTP/2 frames reach one handler that keeps a small record per
// call, instead of a channel, a pipeline and a task per stream (most of a call's cost under a
// general-purpose gRPC server). A FetchX509SVID answer is a few frames written from the cached
// state. The protocol is the one any gRPC client speaks (PROTOCOL-HTTP2 in gRPC's docs):
// request HEADERS (POST, :path /SpiffeWorkloadAPI/NAME, content-type application/grpc), one
// length-prefixed message, END_STREAM; response HEADERS, length-prefixed messages, and trailers
// carrying grpc-status and grpc-message — or, for a call refused before answering, one HEADERS
// frame holding both (trailers-only).

import Foundation
import GRPCCore
import HallmarkAttestation
import HallmarkPeerCredentials
import HallmarkSupport
import Logging
import NIOCore
import NIOHPACK
import NIOHTTP2
import NIOPosix
import SPIFFEWorkloadAPI
import Synchronization

final class WorkloadAPIServer: Sendable {
    private let serverChannel: any Channel

    /// Listens on `socketPath` (which must not exist) and serves `service` until
    /// ``beginGracefulShutdown()``; connections end their streams when `service.cache.changes` finishes.
    static func bind(
        socketPath: String, service: WorkloadAPIService, limits: WorkloadAPILimits = WorkloadAPILimits(),
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) async throws -> WorkloadAPIServer {
        let registry = Registry()
        let counter = WorkloadConnectionCounter(limits: limits)
        // One line per limit every ten seconds at most: a flood is reported, not echoed.
        let reported = RateLimiter<String>(.init(rate: 0.1, burst: 1))
        let channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 256)
            .childChannelInitializer { channel in
                registry.add(channel)
                // The kernel's credentials, once per connection: they are fixed when the client connects.
                return PeerCredentials.of(channel).flatMapThrowing { peer in
                    var refusal: CallStatus?
                    switch counter.admit(uid: peer?.uid) {
                    case .admitted:
                        channel.closeFuture.whenComplete { _ in counter.release(uid: peer?.uid) }
                    case .refused(let flag, let message):
                        refusal = CallStatus(code: .resourceExhausted, message: message)
                        channel.closeFuture.whenComplete { _ in counter.releaseRefused() }
                        if reported.take(flag) == nil {
                            service.logger.notice("Workload API connection refused", metadata: ["caller": "\(peer.map { "\($0)" } ?? "?")", "reason": "\(message)"])
                        }
                    case .closed:
                        channel.close(promise: nil)
                        return
                    }
                    let settings = [
                        HTTP2Setting(parameter: .maxConcurrentStreams, value: limits.streamsPerConnection),
                        HTTP2Setting(parameter: .maxHeaderListSize, value: HPACKDecoder.defaultMaxHeaderListSize),
                    ]
                    try channel.pipeline.syncOperations.addHandlers([
                        NIOHTTP2Handler(mode: .server, initialSettings: settings),
                        WorkloadAPIConnection(service: service, peer: peer, limits: limits, refusal: refusal),
                    ])
                }
            }
            .bind(unixDomainSocketPath: socketPath)
            .get()
        return WorkloadAPIServer(channel: channel, registry: registry)
    }

    /// The connections accepted and not yet closed, so that shutdown can wait for them.
    private final class Registry: Sendable {
        let channels = Mutex<[ObjectIdentifier: any Channel]>([:])

        func add(_ channel: any Channel) {
            let key = ObjectIdentifier(channel)
            channels.withLock { $0[key] = channel }
            channel.closeFuture.whenComplete { [self] _ in channels.withLock { _ = $0.removeValue(forKey: key) } }
        }
    }

    private let registry: Registry

    private init(channel: any Channel, registry: Registry) {
        self.serverChannel = channel
        self.registry = registry
    }

    /// Serves until shut down and every connection has closed.
    func run() async throws {
        try await serverChannel.closeFuture.get()
        while let open = registry.channels.withLock({ $0.values.first }) {
            try? await open.closeFuture.get()
        }
    }

    /// Stops accepting connections; open ones finish once their calls have (see ``bind``).
    func beginGracefulShutdown() {
        serverChannel.close(promise: nil)
    }
}

/// gRPC's status for a call, as the trailers carry it.
struct CallStatus: Equatable {
    var code: RPCError.Code?
    var message: String

    static let ok = CallStatus(code: nil, message: "")

    init(code: RPCError.Code?, message: String) {
        self.code = code
        self.message = message
    }

    init(_ error: any Error) {
        if let error = error as? RPCError {
            self.init(code: error.code, message: error.message)
        } else {
            self.init(code: .unknown, message: "\(error)")
        }
    }

    var headers: [(String, String)] {
        var headers = [("grpc-status", String(code?.rawValue ?? 0))]
        if !message.isEmpty { headers.append(("grpc-message", Self.percentEncoded(message))) }
        return headers
    }

    /// grpc-message is percent-encoded UTF-8: every byte outside printable ASCII, and `%` itself.
    static func percentEncoded(_ message: String) -> String {
        var encoded = ""
        for byte in message.utf8 {
            if byte >= 0x20 && byte <= 0x7e && byte != UInt8(ascii: "%") {
                encoded.unicodeScalars.append(Unicode.Scalar(byte))
            } else {
                encoded += "%" + String(byte >> 4, radix: 16, uppercase: true) + String(byte & 0xf, radix: 16, uppercase: true)
            }
        }
        return encoded
    }
}

