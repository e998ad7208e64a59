// The agent's configuration: plain values, filled in by the executable.

public import Foundation
public import HallmarkGPU
public import HallmarkTPM
public import SPIFFE

public struct AgentConfig: Sendable {
    public var dataDir: String
    /// The servers of the trust domain's agent API, in the order to try them: the agent keeps to
    /// one while it answers and moves to the next when a connection to it fails.
    public var servers: [ServerAddress]
    /// The trust domain's CA certificates (PEM) to trust the server with on first contact.
    public var trustBundlePath: String?
    /// Skip verifying the server on first contact (development only).
    public var insecureBootstrap = false
    /// The Workload API's Unix socket.
    public var socketPath: String
    public var joinToken: String?
    /// TPM attestation instead of a join token: the TPM's TCTI, which EK, and how often to quote again.
    public var tpm: TPM?
    /// The gpu attestor beside the host attestor: where GPU evidence comes from (nil: no GPUs attested).
    public var gpu: GPUEvidenceSource?
    /// How often GPU evidence is presented again on a node without a TPM (with one, GPU evidence
    /// goes with every quote, on the TPM's interval).
    public var gpuReattestInterval: TimeInterval = 300
    /// The trust domain, when known up front (from the bundle file it is learned at attestation).
    public var trustDomain: TrustDomain?
    /// What one local user may take of the Workload API.
    public var workloadAPI = WorkloadAPILimits()

    public struct TPM: Sendable {
        public var tcti: String
        public var endorsementKey: TPMDevice.EndorsementKey
        public var reattestInterval: TimeInterval

        public init(tcti: String, endorsementKey: TPMDevice.EndorsementKey = .rsa, reattestInterval: TimeInterval = 300) {
            self.tcti = tcti
            self.endorsementKey = endorsementKey
            self.reattestInterval = reattestInterval
        }
    }

    public struct ServerAddress: Hashable, Sendable, CustomStringConvertible {
        public var host: String
        public var port: Int

        public init(host: String, port: Int) {
            self.host = host
            self.port = port
        }

        public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
    }

    /// - Parameter servers: at least one.
    public init(dataDir: String, servers: [ServerAddress], socketPath: String) {
        precondition(!servers.isEmpty, "an agent needs at least one server")
        self.dataDir = dataDir
        self.servers = servers
        self.socketPath = socketPath
    }

    public init(dataDir: String, serverHost: String, serverPort: Int, socketPath: String) {
        self.init(dataDir: dataDir, servers: [ServerAddress(host: serverHost, port: serverPort)], socketPath: socketPath)
    }

    var agentSVIDPath: String { (dataDir as NSString).appendingPathComponent("agent-svid.pem") }
    var agentKeyPath: String { (dataDir as NSString).appendingPathComponent("agent-svid.key") }
    var bundlePath: String { (dataDir as NSString).appendingPathComponent("bundle.json") }
    var trustDomainPath: String { (dataDir as NSString).appendingPathComponent("trust-domain") }
}

/// A failure of the agent: a stable code, and a message naming the cause.
///
/// Match on ``code``; read ``message`` for the cause. New codes may be added, so a `switch` over
/// codes needs a `default`.
public struct AgentError: Error, Hashable, Sendable, CustomStringConvertible {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        fileprivate enum Base: String, Hashable, Sendable {
            case noIdentity, files, configuration, serverClosed, callerChanged
        }

        fileprivate let base: Base
        fileprivate init(_ base: Base) { self.base = base }

        public var description: String { base.rawValue }

        /// The agent holds no usable SVID and has nothing to attest with.
        public static let noIdentity = Code(.noIdentity)
        /// A file, directory or socket of the agent cannot be used.
        public static let files = Code(.files)
        /// A setting the agent was given cannot be used (its trust bundle, its trust domain).
        public static let configuration = Code(.configuration)
        /// The server ended a stream the agent needs before it was done.
        public static let serverClosed = Code(.serverClosed)
        /// The workload process that connected is no longer the one running.
        public static let callerChanged = Code(.callerChanged)
    }

    public let code: Code
    /// A sentence naming the cause, prefixed by the area (`agent:`, `workload:`).
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
