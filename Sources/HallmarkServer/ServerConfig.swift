// The server's configuration: plain values with SPIRE's defaults, filled in by the executable.

public import Foundation
public import HallmarkCA
public import HallmarkGPU
public import HallmarkSupport
public import HallmarkTPM
public import SPIFFE

public struct ServerConfig: Sendable {
    public var dataDir: String
    public var trustDomain: TrustDomain
    /// Where agents connect (the agent API).
    public var listenHost: String = "127.0.0.1"
    public var listenPort: Int = 8081
    /// The admin API's Unix socket; default `DATA_DIR/admin.sock`.
    public var adminSocket: String?
    /// Uids besides root that may use the admin API.
    public var adminUIDs: Set<UInt32> = []
    public var caKeyType: X509CA.KeyType = .p256
    /// The life of a CA key (SPIRE: 24 h).
    public var caTTL: TimeInterval = 24 * 3600
    /// How long an expired CA key stays in the bundle, for peers whose clocks lag.
    public var bundleGracePeriod: TimeInterval = 3600
    /// The X509-SVID TTL for entries that set none (SPIRE: 1 h).
    public var defaultX509SVIDTTL: TimeInterval = 3600
    /// The JWT-SVID TTL for entries that set none (SPIRE: 5 min).
    public var defaultJWTSVIDTTL: TimeInterval = 300
    /// The life of an agent's own SVID.
    public var agentSVIDTTL: TimeInterval = 3600
    /// Join tokens' default life (SPIRE: 10 min).
    public var joinTokenTTL: TimeInterval = 600
    /// An upstream CA (certificate and key PEM files) that makes the server's CA an intermediate.
    public var upstreamCACert: String?
    public var upstreamCAKey: String?

    /// TPM node attestation: whom to trust for EKs and which PCR values to require. Nil: refused.
    public var tpm: TPMSettings?
    /// GPU attestation beside the host attestor: the pinned roots and the RIMs. Nil: refused.
    public var gpu: GPUSettings?

    public struct GPUSettings: Sendable {
        public var verifier: GPUVerifier
        /// Reference integrity manifests (name, XML) to compare measurements with.
        public var rims: [RIM]

        public struct RIM: Sendable {
            public var name: String
            public var xml: [UInt8]
            public init(name: String, xml: [UInt8]) {
                self.name = name
                self.xml = xml
            }
        }

        public init(verifier: GPUVerifier, rims: [RIM] = []) {
            self.verifier = verifier
            self.rims = rims
        }
    }

    /// A signed audit checkpoint is written with every this many records (and at shutdown).
    public var auditCheckpointInterval: Int64 = 100

    /// X509-SVIDs each agent may have signed: a burst as large as a node's first sync of many
    /// entries, then a steady rate far above rotation's, so that a compromised agent cannot make
    /// the server sign (and audit) without end.
    public var agentX509Limit = RateLimiter<String>.Limit(rate: 500, burst: 10_000)
    /// JWT-SVIDs each agent may have signed (its workloads' cache misses).
    public var agentJWTLimit = RateLimiter<String>.Limit(rate: 100, burst: 1_000)

    /// How long an attestation nonce may be answered.
    public var nonceTTL: TimeInterval = 60

    /// How old a TPM node's last passing quote, and a GPU node's last passing GPU evidence, may be
    /// before the node loses its identity: three of the agents' default re-attestation intervals.
    public var tpmReattestMaxAge: TimeInterval = 900
    public var gpuReattestMaxAge: TimeInterval = 900

    public struct TPMSettings: Sendable {
        public var trust: TPMTrust
        public var policy: TPMPCRPolicy

        public init(trust: TPMTrust, policy: TPMPCRPolicy = TPMPCRPolicy()) {
            self.trust = trust
            self.policy = policy
        }
    }

    public init(dataDir: String, trustDomain: TrustDomain) {
        self.dataDir = dataDir
        self.trustDomain = trustDomain
    }

    public var adminSocketPath: String { adminSocket ?? (dataDir as NSString).appendingPathComponent("admin.sock") }
    var databasePath: String { (dataDir as NSString).appendingPathComponent("hallmark.db") }
    var keyDirectory: String { (dataDir as NSString).appendingPathComponent("keys") }

    /// The largest X509-SVID TTL an entry may ask for.
    public static let maximumX509SVIDTTL = 30 * 86400
    /// The largest JWT-SVID TTL an entry may ask for.
    public static let maximumJWTSVIDTTL = 86400
}
