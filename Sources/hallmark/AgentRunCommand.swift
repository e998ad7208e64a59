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

    @Option(help: "The server's agent API, HOST:PORT.")
    var server: String

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

    @Option(name: .customLong("log-level")) var logLevel: String = "info"

    func validate() throws {
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
    }

    func run() async throws {
        let (host, port) = try HostPort.parse(server, flag: "--server")
        var config = AgentConfig(dataDir: dataDir, serverHost: host, serverPort: port, socketPath: socket)
        config.trustBundlePath = trustBundle
        config.insecureBootstrap = insecureBootstrap
        config.joinToken = try joinToken ?? joinTokenFile.map(Self.readJoinToken)
        config.gpuReattestInterval = TimeInterval(gpuReattestInterval)
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

