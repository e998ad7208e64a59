// `hallmark agent run`: flags onto AgentConfig, then run the agent.

import ArgumentParser
import Foundation
import HallmarkAgent
import HallmarkGPU
import HallmarkTPM
import Logging
import SPIFFE
import ServiceLifecycle

struct AgentRunCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run", abstract: "Run the node agent: attest, follow the server, serve the Workload API."
    )

    @Option(name: .customLong("data-dir"), help: "Where the agent keeps its own SVID and the bundle.")
    var dataDir: String

    @Option(help: "The server's agent API, HOST:PORT. Repeat it for several servers of one trust domain: the agent uses the first that answers and moves to the next when a connection fails.")
    var server: [String] = []

    @Option(name: .customLong("trust-bundle"), help: "PEM CA certificates of the trust domain, to verify the server on first contact.")
    var trustBundle: String?

    @Flag(name: .customLong("insecure-bootstrap"), help: "Do not verify the server on first contact (development only).")
    var insecureBootstrap = false

    @Option(help: "The Workload API's Unix socket.")
    var socket: String

    @Option(help: "The node attestor: join-token or tpm.")
    var attestor: String = "join-token"

    @Option(name: .customLong("tpm-device"), help: "The TPM device for --attestor tpm (default /dev/tpmrm0).")
    var tpmDevice: String?

    @Option(name: .customLong("tpm-tcti"), help: "A tpm2-tss TCTI instead of the device, such as swtpm:path=/run/swtpm.sock.")
    var tpmTCTI: String?

    @Option(name: .customLong("tpm-ek"), help: "Which endorsement key: rsa (default) or ecc.")
    var tpmEK: String = "rsa"

    @Flag(name: .customLong("gpu"), help: "Also attest the node's NVIDIA GPUs (through NVML, libnvidia-ml.so.1).")
    var gpu = false

    @Option(name: .customLong("gpu-evidence-command"), help: "Get GPU evidence from this command instead of NVML (\"PATH ARG…\"; it is given --nonce HEX).")
    var gpuEvidenceCommand: String?

    @Option(name: .customLong("tpm-reattest-interval"), help: "Seconds between TPM re-attestations (default 300); GPU evidence goes with each quote.")
    var tpmReattestInterval: Int = 300

    @Option(name: .customLong("gpu-reattest-interval"), help: "Seconds between GPU re-attestations on a node without a TPM (default 300).")
    var gpuReattestInterval: Int = 300

    @Option(
        name: .customLong("join-token"),
        help: "The join token (from `hallmark token generate`). Every local user can read it in /proc/PID/cmdline: for tests; use --join-token-file."
    )
    var joinToken: String?

    @Option(name: .customLong("join-token-file"), help: "Read the join token from this file, or from standard input with '-'.")
    var joinTokenFile: String?

    @Option(name: .customLong("trust-domain"), help: "The trust domain (default: read from the trust bundle).")
    var trustDomain: String?

    @Option(name: .customLong("workload-connections-per-uid"), help: "Workload API connections one uid may hold open (default 256).")
    var workloadConnectionsPerUID: Int = WorkloadAPILimits().connectionsPerUID

    @Option(name: .customLong("workload-connections"), help: "Workload API connections open in all (default 2048).")
    var workloadConnections: Int = WorkloadAPILimits().connections

    @Option(name: .customLong("workload-preface-timeout"), help: "Seconds a new Workload API connection has to begin HTTP/2 (default 10).")
    var workloadPrefaceTimeout: Double = WorkloadAPILimits().prefaceTimeout

    @Option(name: .customLong("workload-idle-timeout"), help: "Seconds a Workload API connection may stay open with no call (default 300).")
    var workloadIdleTimeout: Double = WorkloadAPILimits().idleTimeout

    @Option(name: .customLong("workload-streams-per-connection"), help: "Calls open at once on one Workload API connection (default 100).")
    var workloadStreamsPerConnection: Int = WorkloadAPILimits().streamsPerConnection

    @Option(name: .customLong("workload-buffered-bytes"), help: "Bytes one Workload API connection may hold unread or unfinished (default 4194304).")
    var workloadBufferedBytes: Int = WorkloadAPILimits().bufferedBytesPerConnection

    @Option(name: .customLong("workload-jwt-mint-rate"), help: "New JWT-SVIDs signed a second for one uid (default 10; cached ones are free).")
    var workloadJWTMintRate: Double = WorkloadAPILimits().jwtMintsPerUID.rate

    @Option(name: .customLong("workload-jwt-mint-burst"), help: "New JWT-SVIDs one uid may have signed at once (default 50).")
    var workloadJWTMintBurst: Int = Int(WorkloadAPILimits().jwtMintsPerUID.burst)

    @Option(name: .customLong("log-level")) var logLevel: String = "info"

    func validate() throws {
        guard !server.isEmpty else { throw ValidationError("--server: give the server's agent API as HOST:PORT (at least one)") }
        let duplicates = Dictionary(grouping: server, by: { $0 }).filter { $0.value.count > 1 }.keys.sorted()
        guard duplicates.isEmpty else { throw ValidationError("--server: \(duplicates.joined(separator: ", ")) is given more than once") }
        guard attestor == "join-token" || attestor == "tpm" else {
            throw ValidationError("--attestor: '\(attestor)' is not available; this agent supports join-token and tpm")
        }
        guard TPMDevice.EndorsementKey(rawValue: tpmEK) != nil else { throw ValidationError("--tpm-ek: must be rsa or ecc, not '\(tpmEK)'") }
        guard tpmReattestInterval >= 1 else { throw ValidationError("--tpm-reattest-interval: must be at least 1 second") }
        guard gpuReattestInterval >= 1 else { throw ValidationError("--gpu-reattest-interval: must be at least 1 second") }
        guard tpmDevice == nil || tpmTCTI == nil else { throw ValidationError("--tpm-device and --tpm-tcti: give one, not both") }
        guard trustBundle != nil || insecureBootstrap else {
            throw ValidationError("give --trust-bundle FILE, or --insecure-bootstrap to skip verifying the server (development only)")
        }
        guard socket.hasPrefix("/") else { throw ValidationError("--socket: must be an absolute path") }
        guard joinToken == nil || joinTokenFile == nil else { throw ValidationError("--join-token and --join-token-file: give one, not both") }
        for (value, flag) in [
            (workloadConnectionsPerUID, "--workload-connections-per-uid"), (workloadConnections, "--workload-connections"),
            (workloadStreamsPerConnection, "--workload-streams-per-connection"), (workloadJWTMintBurst, "--workload-jwt-mint-burst"),
        ] where value < 1 {
            throw ValidationError("\(flag): must be at least 1, not \(value)")
        }
        guard workloadBufferedBytes >= WorkloadAPILimits.minimumBufferedBytes else {
            throw ValidationError("--workload-buffered-bytes: must be at least \(WorkloadAPILimits.minimumBufferedBytes) (one full request), not \(workloadBufferedBytes)")
        }
        for (value, flag) in [(workloadPrefaceTimeout, "--workload-preface-timeout"), (workloadIdleTimeout, "--workload-idle-timeout")] where !(value > 0) {
            throw ValidationError("\(flag): must be more than 0 seconds, not \(value)")
        }
        guard workloadJWTMintRate > 0 else { throw ValidationError("--workload-jwt-mint-rate: must be more than 0 a second, not \(workloadJWTMintRate)") }
    }

    func run() async throws {
        let servers = try server.map { try HostPort.parse($0, flag: "--server") }.map { AgentConfig.ServerAddress(host: $0.0, port: $0.1) }
        var config = AgentConfig(dataDir: dataDir, servers: servers, socketPath: socket)
        config.trustBundlePath = trustBundle
        config.insecureBootstrap = insecureBootstrap
        config.joinToken = try joinToken ?? joinTokenFile.map(Self.readJoinToken)
        config.gpuReattestInterval = TimeInterval(gpuReattestInterval)
        config.workloadAPI.connectionsPerUID = workloadConnectionsPerUID
        config.workloadAPI.connections = workloadConnections
        config.workloadAPI.prefaceTimeout = workloadPrefaceTimeout
        config.workloadAPI.idleTimeout = workloadIdleTimeout
        config.workloadAPI.streamsPerConnection = workloadStreamsPerConnection
        config.workloadAPI.bufferedBytesPerConnection = workloadBufferedBytes
        config.workloadAPI.jwtMintsPerUID = .init(rate: workloadJWTMintRate, burst: Double(workloadJWTMintBurst))
        if let command = gpuEvidenceCommand {
            config.gpu = .command(command.split(separator: " ").map(String.init))
        } else if gpu {
            config.gpu = .nvml
        }
        if attestor == "tpm" {
            config.tpm = AgentConfig.TPM(
                tcti: tpmTCTI ?? "device:\(tpmDevice ?? "/dev/tpmrm0")", endorsementKey: TPMDevice.EndorsementKey(rawValue: tpmEK)!,
                reattestInterval: TimeInterval(tpmReattestInterval)
            )
        }
        if let trustDomain {
            do { config.trustDomain = try TrustDomain(trustDomain) } catch let error as SPIFFEError {
                throw ValidationError("--trust-domain: \(error.message)")
            }
        }
        let logger = try LogSetup.make(label: "hallmark.agent", level: logLevel)
        let group = ServiceGroup(
            configuration: .init(
                services: [.init(service: HallmarkAgent(config: config, logger: logger))],
                gracefulShutdownSignals: [.sigterm, .sigint], logger: logger
            )
        )
        do {
            try await group.run()
        } catch {
            throw CLIOutput.fail("agent: \(error)")
        }
    }
}

extension AgentRunCommand {
    /// The token from a file or standard input ('-'), without surrounding white space.
    static func readJoinToken(_ path: String) throws -> String {
        let data: Data
        if path == "-" {
            data = FileHandle.standardInput.readDataToEndOfFile()
        } else {
            guard let contents = FileManager.default.contents(atPath: path) else { throw ValidationError("--join-token-file: cannot read \(path)") }
            data = contents
        }
        let token = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        guard !token.isEmpty else { throw ValidationError("--join-token-file: \(path == "-" ? "standard input" : path) holds no token") }
        return token
    }
}

