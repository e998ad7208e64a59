// `hallmark server run`: flags and an optional JSON config file onto ServerConfig, then run.

import ArgumentParser
import Foundation
import HallmarkCA
import HallmarkGPU
import HallmarkSupport
import HallmarkServer
import HallmarkTPM
import Logging
import SPIFFE
import ServiceLifecycle
import X509

struct ServerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "server", abstract: "Run the CA server.", subcommands: [Run.self]
    )

    struct Run: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Run the server: the CA, registrations in SQLite, and the admin API.",
            discussion: "A fresh data directory is initialised on first start (database, CA keys); later starts reuse it."
        )

        @Option(name: .customLong("data-dir"), help: "Where the database and keys live.")
        var dataDir: String?

        @Option(name: .customLong("trust-domain"), help: "The trust domain this server is the authority of.")
        var trustDomain: String?

        @Option(help: "HOST:PORT for the agent API (default 127.0.0.1:8081).")
        var listen: String?

        @Option(name: .customLong("admin-socket"), help: "The admin API's Unix socket (default DATA_DIR/admin.sock).")
        var adminSocket: String?

        @Option(name: .customLong("admin-uid"), help: "A uid besides root allowed to use the admin API (repeatable).")
        var adminUIDs: [UInt32] = []

        @Option(name: .customLong("ca-key-type"), help: "p256 or p384.")
        var caKeyType: String?

        @Option(name: .customLong("ca-ttl"), help: "CA key life in seconds (default 86400).")
        var caTTL: Int?

        @Option(name: .customLong("default-x509-ttl"), help: "X509-SVID TTL for entries that set none (default 3600).")
        var defaultX509TTL: Int?

        @Option(name: .customLong("default-jwt-ttl"), help: "JWT-SVID TTL for entries that set none (default 300).")
        var defaultJWTTTL: Int?

        @Option(name: .customLong("agent-svid-ttl"), help: "Agents' own SVID TTL in seconds (default 3600).")
        var agentSVIDTTL: Int?

        @Option(name: .customLong("upstream-ca-cert"), help: "An upstream CA certificate (PEM) that signs this server's CA.")
        var upstreamCACert: String?

        @Option(name: .customLong("upstream-ca-key"), help: "The upstream CA's private key (PEM).")
        var upstreamCAKey: String?

        @Option(name: .customLong("tpm-ek-ca-dir"), help: "Accept TPM agents whose EK certificate chains to a CA certificate in this directory.")
        var tpmEKCADir: String?

        @Option(name: .customLong("tpm-ek-intermediate-dir"), help: "Manufacturers' intermediate CA certificates, used to reach a --tpm-ek-ca-dir root (never trusted alone).")
        var tpmEKIntermediateDir: String?

        @Option(name: .customLong("tpm-ek-hash"), help: "Accept the TPM with this EK (hex SHA-256 of its SubjectPublicKeyInfo); repeatable.")
        var tpmEKHashes: [String] = []

        @Option(name: .customLong("tpm-pcr-policy"), help: "A JSON file of required PCR values: {\"sha256\": {\"7\": \"HEX\"}}.")
        var tpmPCRPolicy: String?

        @Option(name: .customLong("tpm-reattest-max-age"), help: "Seconds a TPM node's last passing quote counts (default 900, 3× the agents' default interval); older, the node is evicted.")
        var tpmReattestMaxAge: Int?

        @Option(name: .customLong("gpu-reattest-max-age"), help: "Seconds a node's last passing GPU evidence counts (default 900); older, the node is evicted.")
        var gpuReattestMaxAge: Int?

        @Option(name: .customLong("audit-checkpoint-every"), help: "Sign an audit checkpoint with every N records (default 100) and at shutdown.")
        var auditCheckpointEvery: Int?

        @Option(name: .customLong("agent-x509-rate"), help: "X509-SVIDs each agent may have signed a second (default 500).")
        var agentX509Rate: Double?

        @Option(name: .customLong("agent-x509-burst"), help: "X509-SVIDs each agent may have signed at once (default 10000: a node's first sync).")
        var agentX509Burst: Int?

        @Option(name: .customLong("agent-jwt-rate"), help: "JWT-SVIDs each agent may have signed a second (default 100).")
        var agentJWTRate: Double?

        @Option(name: .customLong("agent-jwt-burst"), help: "JWT-SVIDs each agent may have signed at once (default 1000).")
        var agentJWTBurst: Int?

        @Option(name: .customLong("gpu-root"), help: "Attest NVIDIA GPUs beside the host attestor: the pinned device identity root (PEM).")
        var gpuRoot: String?

        @Option(name: .customLong("gpu-rim-root"), help: "The pinned root of NVIDIA RIM signing certificates (PEM).")
        var gpuRIMRoot: String?

        @Option(name: .customLong("gpu-rim"), help: "A reference integrity manifest (SWID tag) to compare GPU measurements with; repeatable.")
        var gpuRIMs: [String] = []

        @Option(help: "A JSON file with any of these settings (snake_case keys); flags win.")
        var config: String?

        @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error.")
        var logLevel: String = "info"

        func run() async throws {
            let file = try config.map(ServerConfigFile.load) ?? ServerConfigFile()
            guard let dataDir = dataDir ?? file.data_dir else { throw ValidationError("--data-dir is required (or data_dir in --config)") }
            guard let domainText = trustDomain ?? file.trust_domain else {
                throw ValidationError("--trust-domain is required (or trust_domain in --config)")
            }
            let domain: TrustDomain
            do { domain = try TrustDomain(domainText) } catch let error as SPIFFEError {
                throw ValidationError("--trust-domain: \(error.message)")
            }
            var settings = ServerConfig(dataDir: dataDir, trustDomain: domain)
            if let listen = listen ?? file.listen {
                let (host, port) = try HostPort.parse(listen, flag: "--listen", allowAnyPort: true)
                settings.listenHost = host
                settings.listenPort = port
            }
            settings.adminSocket = adminSocket ?? file.admin_socket
            settings.adminUIDs = Set(adminUIDs + (file.admin_uids ?? []))
            if let type = caKeyType ?? file.ca_key_type {
                guard let keyType = X509CA.KeyType(rawValue: type) else { throw ValidationError("--ca-key-type: must be p256 or p384, not '\(type)'") }
                settings.caKeyType = keyType
            }
            if let ttl = caTTL ?? file.ca_ttl {
                guard ttl >= 12 else { throw ValidationError("--ca-ttl: must be at least 12 seconds (lives that short are for tests)") }
                settings.caTTL = TimeInterval(ttl)
            }
            if let ttl = defaultX509TTL ?? file.default_x509_svid_ttl {
                guard (1...ServerConfig.maximumX509SVIDTTL).contains(ttl) else {
                    throw ValidationError("--default-x509-ttl: must be 1 to \(ServerConfig.maximumX509SVIDTTL) seconds")
                }
                settings.defaultX509SVIDTTL = TimeInterval(ttl)
            }
            if let ttl = defaultJWTTTL ?? file.default_jwt_svid_ttl {
                guard (1...ServerConfig.maximumJWTSVIDTTL).contains(ttl) else {
                    throw ValidationError("--default-jwt-ttl: must be 1 to \(ServerConfig.maximumJWTSVIDTTL) seconds")
                }
                settings.defaultJWTSVIDTTL = TimeInterval(ttl)
            }
            if let ttl = agentSVIDTTL ?? file.agent_svid_ttl {
                guard (2...ServerConfig.maximumX509SVIDTTL).contains(ttl) else {
                    throw ValidationError("--agent-svid-ttl: must be 2 to \(ServerConfig.maximumX509SVIDTTL) seconds")
                }
                settings.agentSVIDTTL = TimeInterval(ttl)
            }
            settings.upstreamCACert = upstreamCACert ?? file.upstream_ca_cert
            settings.upstreamCAKey = upstreamCAKey ?? file.upstream_ca_key
            guard (settings.upstreamCACert == nil) == (settings.upstreamCAKey == nil) else {
                throw ValidationError("--upstream-ca-cert and --upstream-ca-key go together")
            }
            for (value, flag, keyPath) in [
                (tpmReattestMaxAge ?? file.tpm_reattest_max_age, "--tpm-reattest-max-age", \ServerConfig.tpmReattestMaxAge),
                (gpuReattestMaxAge ?? file.gpu_reattest_max_age, "--gpu-reattest-max-age", \ServerConfig.gpuReattestMaxAge),
            ] {
                guard let value else { continue }
                guard value >= 1 else { throw ValidationError("\(flag): must be at least 1 second") }
                settings[keyPath: keyPath] = TimeInterval(value)
            }
            if let every = auditCheckpointEvery ?? file.audit_checkpoint_every {
                guard every >= 1 else { throw ValidationError("--audit-checkpoint-every: must be at least 1 record") }
                settings.auditCheckpointInterval = Int64(every)
            }
            settings.agentX509Limit = try Self.limit(
                rate: agentX509Rate ?? file.agent_x509_rate, burst: agentX509Burst ?? file.agent_x509_burst, default: settings.agentX509Limit, flags: "--agent-x509"
            )
            settings.agentJWTLimit = try Self.limit(
                rate: agentJWTRate ?? file.agent_jwt_rate, burst: agentJWTBurst ?? file.agent_jwt_burst, default: settings.agentJWTLimit, flags: "--agent-jwt"
            )
            settings.tpm = try tpmSettings(file)
            settings.gpu = try gpuSettings()
            let logger = try LogSetup.make(label: "hallmark.server", level: logLevel)
            let group = ServiceGroup(
                configuration: .init(
                    services: [.init(service: HallmarkServer(config: settings, logger: logger))],
                    gracefulShutdownSignals: [.sigterm, .sigint], logger: logger
                )
            )
            do {
                try await group.run()
            } catch {
                throw CLIOutput.fail("server: \(error)")
            }
        }
    }
}

extension ServerCommand.Run {
    /// A rate limit from its two flags, each defaulting on its own.
    static func limit(rate: Double?, burst: Int?, default limit: RateLimiter<String>.Limit, flags: String) throws -> RateLimiter<String>.Limit {
        if let rate, !(rate > 0) { throw ValidationError("\(flags)-rate: must be more than 0 a second, not \(rate)") }
        if let burst, burst < 1 { throw ValidationError("\(flags)-burst: must be at least 1, not \(burst)") }
        return .init(rate: rate ?? limit.rate, burst: burst.map(Double.init) ?? limit.burst)
    }

    /// GPU attestation is on when a device root is given; RIMs need their root.
    func gpuSettings() throws -> ServerConfig.GPUSettings? {
        guard let gpuRoot else {
            if gpuRIMRoot != nil || !gpuRIMs.isEmpty { throw ValidationError("--gpu-rim-root and --gpu-rim need --gpu-root") }
            return nil
        }
        guard gpuRIMs.isEmpty || gpuRIMRoot != nil else { throw ValidationError("--gpu-rim needs --gpu-rim-root") }
        func read(_ path: String, _ flag: String) throws -> [UInt8] {
            guard let data = FileManager.default.contents(atPath: path) else { throw ValidationError("\(flag): cannot read \(path)") }
            return Array(data)
        }
        let roots: [Certificate]
        do { roots = try X509SVID.certificates(pem: String(decoding: try read(gpuRoot, "--gpu-root"), as: UTF8.self)) } catch let error as SPIFFEError {
            throw ValidationError("--gpu-root: \(error.message)")
        }
        guard let root = roots.first else { throw ValidationError("--gpu-root: \(gpuRoot) holds no certificate") }
        let rimRoot = try gpuRIMRoot.map { String(decoding: try read($0, "--gpu-rim-root"), as: UTF8.self) }
        let rims = try gpuRIMs.map { ServerConfig.GPUSettings.RIM(name: ($0 as NSString).lastPathComponent, xml: try read($0, "--gpu-rim")) }
        return ServerConfig.GPUSettings(verifier: GPUVerifier(deviceRoot: root, rimRootPEM: rimRoot), rims: rims)
    }

    /// TPM attestation is on when a CA directory or an EK hash is given.
    func tpmSettings(_ file: ServerConfigFile) throws -> ServerConfig.TPMSettings? {
        let caDir = tpmEKCADir ?? file.tpm_ek_ca_dir
        let hashes = tpmEKHashes + (file.tpm_ek_hashes ?? [])
        for hash in hashes where hash.count != 64 || !hash.allSatisfy(\.isHexDigit) {
            throw ValidationError("--tpm-ek-hash: '\(hash)' is not 64 hex digits (SHA-256 of the EK's SubjectPublicKeyInfo)")
        }
        let policyPath = tpmPCRPolicy ?? file.tpm_pcr_policy
        guard caDir != nil || !hashes.isEmpty else {
            if policyPath != nil { throw ValidationError("--tpm-pcr-policy needs --tpm-ek-ca-dir or --tpm-ek-hash") }
            return nil
        }
        let intermediateDir = tpmEKIntermediateDir ?? file.tpm_ek_intermediate_dir
        guard intermediateDir == nil || caDir != nil else { throw ValidationError("--tpm-ek-intermediate-dir needs --tpm-ek-ca-dir") }
        let trust: TPMTrust
        do { trust = try TPMTrust(caDirectory: caDir, intermediateDirectory: intermediateDir, allowedEKHashes: Set(hashes)) } catch let error as TPMError {
            throw ValidationError(error.message)
        } catch {
            throw ValidationError("--tpm-ek-ca-dir / --tpm-ek-intermediate-dir: cannot read \(caDir ?? "") or \(intermediateDir ?? ""): \(error.localizedDescription)")
        }
        var policy = TPMPCRPolicy()
        if let policyPath {
            guard let data = FileManager.default.contents(atPath: policyPath) else { throw ValidationError("--tpm-pcr-policy: cannot read \(policyPath)") }
            do { policy = try TPMPCRPolicy(json: data) } catch let error as TPMError {
                throw ValidationError("--tpm-pcr-policy: \(error.message)")
            }
        }
        return ServerConfig.TPMSettings(trust: trust, policy: policy)
    }
}

/// The server's --config file: the flags' settings, snake_case.
struct ServerConfigFile: Decodable {
    var data_dir: String?
    var trust_domain: String?
    var listen: String?
    var admin_socket: String?
    var admin_uids: [UInt32]?
    var ca_key_type: String?
    var ca_ttl: Int?
    var default_x509_svid_ttl: Int?
    var default_jwt_svid_ttl: Int?
    var agent_svid_ttl: Int?
    var tpm_ek_ca_dir: String?
    var tpm_ek_hashes: [String]?
    var tpm_ek_intermediate_dir: String?
    var tpm_pcr_policy: String?
    var tpm_reattest_max_age: Int?
    var audit_checkpoint_every: Int?
    var gpu_reattest_max_age: Int?
    var agent_x509_rate: Double?
    var agent_x509_burst: Int?
    var agent_jwt_rate: Double?
    var agent_jwt_burst: Int?
    var upstream_ca_cert: String?
    var upstream_ca_key: String?

    static func load(_ path: String) throws -> ServerConfigFile {
        let data = try CLIOutput.readFile(path, flag: "--config")
        do {
            let decoder = JSONDecoder()
            return try decoder.decode(ServerConfigFile.self, from: data)
        } catch {
            throw ValidationError("--config \(path): not a JSON object of server settings: \(error)")
        }
    }
}

enum HostPort {
    /// Parses HOST:PORT; `allowAnyPort` accepts port 0 (listen on any free port).
    static func parse(_ text: String, flag: String, allowAnyPort: Bool = false) throws -> (String, Int) {
        let lowest = allowAnyPort ? 0 : 1
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]), (lowest...65535).contains(port) else {
            throw ValidationError("\(flag): '\(text)' is not HOST:PORT with a port from \(lowest) to 65535")
        }
        let host = String(text[..<colon]).trimmingCharacters(in: CharacterSet(charactersIn: "[]"))
        guard !host.isEmpty else { throw ValidationError("\(flag): '\(text)' has no host") }
        return (host, port)
    }
}

enum LogSetup {
    static func make(label: String, level: String) throws -> Logger {
        guard let parsed = Logger.Level(rawValue: level) else {
            throw ValidationError("--log-level: must be one of \(Logger.Level.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = parsed
            return handler
        }
        var logger = Logger(label: label)
        logger.logLevel = parsed
        return logger
    }
}
