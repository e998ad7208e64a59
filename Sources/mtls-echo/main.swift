// mtls-echo: two services that authenticate each other with SVIDs from the SPIFFE Workload API and
// authorise each other by SPIFFE ID. A template to copy:
//
//   mtls-echo serve --listen 127.0.0.1:9443 --allow spiffe://example.org/gateway
//   mtls-echo call --server 127.0.0.1:9443 --expect spiffe://example.org/model --message hello
//
// Both find the agent through SPIFFE_ENDPOINT_SOCKET (or --socket). The server's SVID rotates in
// place: new connections present the new certificate, open ones keep going.

import ArgumentParser
import Foundation
import NIOCore
import NIOPosix
import NIOSSL
import SPIFFE
import SPIFFETLS
import SPIFFEWorkloadAPI
import X509

@main
struct MTLSEcho: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mtls-echo", abstract: "An echo service and its client, authenticated with SPIFFE mTLS.", subcommands: [Serve.self, Call.self]
    )
}

struct Endpoint: ParsableArguments {
    @Option(help: "The Workload API socket (default: SPIFFE_ENDPOINT_SOCKET).")
    var socket: String?

    func source() async throws -> X509Source {
        let source = try X509Source(endpoint: socket)
        _ = try await source.waitForFirstUpdate(timeout: .seconds(10))
        return source
    }
}

func hostPort(_ text: String) throws -> (String, Int) {
    guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]) else {
        throw ValidationError("expected HOST:PORT, not '\(text)'")
    }
    return (String(text[..<colon]), port)
}

/// A line on standard output, written at once (a pipe would buffer print's output).
func say(_ line: String) {
    FileHandle.standardOutput.write(Data((line + "\n").utf8))
}

func log(_ line: String) {
    FileHandle.standardError.write(Data((line + "\n").utf8))
}

func parseIDs(_ texts: [String], flag: String) throws -> Set<SPIFFEID> {
    try Set(texts.map { text in
        do { return try SPIFFEID(parsing: text) } catch let error as SPIFFEError { throw ValidationError("\(flag): \(error.message)") }
    })
}

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Accept mTLS connections from the allowed SPIFFE IDs and echo each line.")
    @OptionGroup var endpoint: Endpoint
    @Option(help: "HOST:PORT to listen on (port 0 picks one).") var listen: String = "127.0.0.1:0"
    @Option(help: "A SPIFFE ID allowed to call; repeatable.") var allow: [String] = []

    func run() async throws {
        let allowed = try parseIDs(allow, flag: "--allow")
        guard !allowed.isEmpty else { throw ValidationError("--allow: name at least one SPIFFE ID") }
        let source = try await endpoint.source()
        let tls = try SPIFFETLSContext(source: source, authorizer: .oneOf(allowed), server: true) { log("refused a caller: \($0)") }
        let (host, port) = try hostPort(listen)
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandlers([tls.serverHandler(), ByteToMessageHandler(LineDecoder()), EchoHandler(tls: tls)])
                }
            }
            .bind(host: host, port: port).get()
        let bound = channel.localAddress?.port ?? port
        say("mtls-echo listening on \(host):\(bound) as \(source.svid?.id.description ?? "?")")
        try await channel.closeFuture.get()
    }
}

/// Splits the stream into lines.
struct LineDecoder: ByteToMessageDecoder {
    typealias InboundOut = String
    mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let newline = buffer.readableBytesView.firstIndex(of: UInt8(ascii: "\n")) else { return .needMoreData }
        let length = newline - buffer.readerIndex
        let line = buffer.readString(length: length) ?? ""
        buffer.moveReaderIndex(forwardBy: 1)
        context.fireChannelRead(Self.wrapInboundOut(line))
        return .continue
    }
}

/// Answers each line with who called, who answered, and the line.
final class EchoHandler: ChannelInboundHandler, Sendable {
    typealias InboundIn = String
    typealias OutboundOut = ByteBuffer
    let tls: SPIFFETLSContext
    init(tls: SPIFFETLSContext) { self.tls = tls }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let line = Self.unwrapInboundIn(data)
        let channel = context.channel
        let own = tls.reloader.current
        channel.nioSSL_peerValidatedCertificateChain().whenComplete { result in
            let peer = (try? result.get())?.flatMap { $0.first }.flatMap { try? SPIFFEID(x509SVIDLeaf: Certificate(derEncoded: $0.toDERBytes())) }
            let reply = "echo to \(peer?.description ?? "?") from \(own.id): \(line)\n"
            channel.writeAndFlush(ByteBuffer(string: reply), promise: nil)
        }
    }
}

struct Call: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Call an mtls-echo server that must present one of the expected SPIFFE IDs.")
    @OptionGroup var endpoint: Endpoint
    @Option(help: "HOST:PORT of the server.") var server: String
    @Option(help: "A SPIFFE ID the server may have; repeatable.") var expect: [String] = []
    @Option(help: "The line to send.") var message: String = "hello"
    @Option(help: "How many times to send it on the same connection.") var count: Int = 1
    @Option(help: "Seconds between sends.") var interval: Double = 1

    func run() async throws {
        let expected = try parseIDs(expect, flag: "--expect")
        guard !expected.isEmpty else { throw ValidationError("--expect: name the server's SPIFFE ID") }
        let source = try await endpoint.source()
        let tls = try SPIFFETLSContext(source: source, authorizer: .oneOf(expected), server: false) { log("refused the server: \($0)") }
        let (host, port) = try hostPort(server)
        let replies = AsyncStream<String>.makeStream()
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandlers([try tls.clientHandler(), ByteToMessageHandler(LineDecoder()), ReplyHandler(replies.continuation)])
                }
            }
            .connect(host: host, port: port).get()
        var iterator = replies.stream.makeAsyncIterator()
        for index in 0..<count {
            if index > 0 { try await Task.sleep(for: .milliseconds(Int(interval * 1000))) }
            try await channel.writeAndFlush(ByteBuffer(string: message + "\n"))
            guard let reply = await iterator.next() else { throw ExitCode(1) }
            if index == 0, let leaf = try await channel.nioSSL_peerValidatedCertificateChain().get()?.first {
                // Who answered, from the certificate this connection's handshake verified.
                let certificate = try Certificate(derEncoded: try leaf.toDERBytes())
                say("connected to \(try SPIFFEID(x509SVIDLeaf: certificate)) serial \(certificate.serialNumber)")
            }
            say(reply)
        }
        try? await channel.close()
    }
}

/// Hands replies to the caller; a closed or failed connection ends them.
final class ReplyHandler: ChannelInboundHandler, Sendable {
    typealias InboundIn = String
    let continuation: AsyncStream<String>.Continuation
    init(_ continuation: AsyncStream<String>.Continuation) { self.continuation = continuation }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) { continuation.yield(Self.unwrapInboundIn(data)) }
    func channelInactive(context: ChannelHandlerContext) { continuation.finish() }
    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        log("mtls-echo: \(error)")
        continuation.finish()
        context.close(promise: nil)
    }
}
