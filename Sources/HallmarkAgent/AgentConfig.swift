// The agent's configuration: plain values, filled in by the executable.

public import Foundation
public import HallmarkGPU
public import HallmarkTPM
public import SPIFFE

public struct AgentConfig: Sendable {
    public var dataDir: String
    public var serverHost: String
    public var serverPort: Int
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

    public init(dataDir: String, serverHost: String, serverPort: Int, socketPath: String) {
        self.dataDir = dataDir
        self.serverHost = serverHost
        self.serverPort = serverPort
        self.socketPath = socketPath
    }

    var agentSVIDPath: String { (dataDir as NSString).appendingPathComponent("agent-svid.pem") }
    var agentKeyPath: String { (dataDir as NSString).appendingPathComponent("agent-svid.key") }
    var bundlePath: String { (dataDir as NSString).appendingPathComponent("bundle.json") }
    var trustDomainPath: String { (dataDir as NSString).appendingPathComponent("trust-domain") }
}

/// An agent failure; the message names the cause.
public struct AgentError: Error, CustomStringConvertible, Sendable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
