// Where an agent gets GPU evidence: NVIDIA's NVML (libnvidia-ml.so.1, loaded at run time, so
// that agents on nodes without a GPU need no NVIDIA software), or a command that prints it (a
// simulator in tests, or a site's own collector): `COMMAND ARGS… --nonce HEX` writing
// `[{"report": HEX, "chain": PEM}, …]`, one object per GPU.

public import Foundation
import HallmarkAttestation
import SPIFFE

public enum GPUEvidenceSource: Sendable {
    case nvml
    case command([String])

    public struct Evidence: Sendable {
        public let report: [UInt8]
        public let chainPEM: String
    }

    /// Evidence from every GPU, each made with `nonce`.
    public func evidence(nonce: [UInt8]) throws -> [Evidence] {
        switch self {
        case .nvml: try NVML.load().evidence(nonce: nonce)
        case .command(let command): try Self.run(command, nonce: nonce)
        }
    }

    /// Checks that the source can be used at all (the agent refuses the gpu attestor otherwise).
    public func check() throws {
        switch self {
        case .nvml: _ = try NVML.load()
        case .command(let command):
            guard let executable = command.first, FileManager.default.isExecutableFile(atPath: executable) else {
                throw GPUEvidenceError(.collection, "gpu: the evidence command \(command.first ?? "(empty)") is not an executable file")
            }
        }
    }

    private static func run(_ command: [String], nonce: [UInt8]) throws -> [Evidence] {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: command[0])
        process.arguments = Array(command.dropFirst()) + ["--nonce", Hex.encode(nonce)]
        let output = Pipe()
        let errors = Pipe()
        process.standardOutput = output
        process.standardError = errors
        try process.run()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        let message = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw GPUEvidenceError(.collection, "gpu: the evidence command failed (\(process.terminationStatus)): \(message)")
        }
        guard let list = try? JSONSerialization.jsonObject(with: data) as? [[String: String]] else {
            throw GPUEvidenceError(.collection, "gpu: the evidence command did not print a JSON list of {report, chain}")
        }
        return try list.map { item in
            guard let hex = item["report"], let report = Hex.decode(hex), let chain = item["chain"] else {
                throw GPUEvidenceError(.collection, "gpu: an evidence object lacks a hex report or a PEM chain")
            }
            return Evidence(report: report, chainPEM: chain)
        }
    }
}

/// NVML's confidential-computing attestation calls, bound at run time.
struct NVML {
    private typealias Status = Int32
    private let getCount: @convention(c) (UnsafeMutablePointer<UInt32>) -> Status
    private let getHandle: @convention(c) (UInt32, UnsafeMutablePointer<OpaquePointer?>) -> Status
    private let getReport: @convention(c) (OpaquePointer?, UnsafeMutableRawPointer) -> Status
    private let getCertificate: @convention(c) (OpaquePointer?, UnsafeMutableRawPointer) -> Status

    // nvmlConfComputeGpuAttestationReport_t: three u32, nonce[32], attestationReport[8192],
    // cecAttestationReport[4096]. nvmlConfComputeGpuCertificate_t: two u32, certChain[4096],
    // attestationCertChain[5120].
    private static let reportSize = 12 + 32 + 8192 + 4096
    private static let certificateSize = 8 + 4096 + 5120

    static func load() throws -> NVML {
        guard let library = dlopen("libnvidia-ml.so.1", RTLD_NOW) else {
            let reason = dlerror().map { String(cString: $0) } ?? "not found"
            throw GPUEvidenceError(.unavailable, "gpu: no NVIDIA driver on this node (libnvidia-ml.so.1 could not be loaded: \(reason)); the gpu attestor is unavailable")
        }
        func symbol<T>(_ name: String, as type: T.Type) throws -> T {
            guard let pointer = dlsym(library, name) else { throw GPUEvidenceError(.unavailable, "gpu: this NVIDIA driver lacks \(name) (confidential computing needs driver 535 or later)") }
            return unsafeBitCast(pointer, to: type)
        }
        let initialise = try symbol("nvmlInit_v2", as: (@convention(c) () -> Status).self)
        let status = initialise()
        guard status == 0 else { throw GPUEvidenceError(.unavailable, "gpu: nvmlInit failed with NVML status \(status)") }
        return NVML(
            getCount: try symbol("nvmlDeviceGetCount_v2", as: (@convention(c) (UnsafeMutablePointer<UInt32>) -> Status).self),
            getHandle: try symbol("nvmlDeviceGetHandleByIndex_v2", as: (@convention(c) (UInt32, UnsafeMutablePointer<OpaquePointer?>) -> Status).self),
            getReport: try symbol("nvmlDeviceGetConfComputeGpuAttestationReport", as: (@convention(c) (OpaquePointer?, UnsafeMutableRawPointer) -> Status).self),
            getCertificate: try symbol("nvmlDeviceGetConfComputeGpuCertificate", as: (@convention(c) (OpaquePointer?, UnsafeMutableRawPointer) -> Status).self)
        )
    }

    func evidence(nonce: [UInt8]) throws -> [GPUEvidenceSource.Evidence] {
        guard nonce.count == 32 else { throw GPUEvidenceError(.invalidArgument, "gpu: the nonce must be 32 bytes") }
        var count: UInt32 = 0
        guard getCount(&count) == 0, count > 0 else { throw GPUEvidenceError(.unavailable, "gpu: NVML reports no GPU") }
        return try (0..<count).map { index in
            var device: OpaquePointer?
            guard getHandle(index, &device) == 0 else { throw GPUEvidenceError(.collection, "gpu: NVML could not open GPU \(index)") }
            let report = UnsafeMutableRawPointer.allocate(byteCount: Self.reportSize, alignment: 4)
            defer { report.deallocate() }
            report.initializeMemory(as: UInt8.self, repeating: 0, count: Self.reportSize)
            nonce.withUnsafeBytes { report.advanced(by: 12).copyMemory(from: $0.baseAddress!, byteCount: 32) }
            let reportStatus = getReport(device, report)
            guard reportStatus == 0 else { throw GPUEvidenceError(.collection, "gpu: GPU \(index): the attestation report call failed (NVML status \(reportStatus)); is confidential computing on?") }
            let reportLength = Int(report.load(fromByteOffset: 4, as: UInt32.self))
            let certificate = UnsafeMutableRawPointer.allocate(byteCount: Self.certificateSize, alignment: 4)
            defer { certificate.deallocate() }
            certificate.initializeMemory(as: UInt8.self, repeating: 0, count: Self.certificateSize)
            let certificateStatus = getCertificate(device, certificate)
            guard certificateStatus == 0 else { throw GPUEvidenceError(.collection, "gpu: GPU \(index): the certificate call failed (NVML status \(certificateStatus))") }
            let chainLength = Int(certificate.load(fromByteOffset: 4, as: UInt32.self))
            guard reportLength <= 8192, chainLength <= 5120 else { throw GPUEvidenceError(.collection, "gpu: GPU \(index): NVML returned inconsistent sizes") }
            let reportBytes = Array(UnsafeRawBufferPointer(start: report.advanced(by: 44), count: reportLength))
            let chainBytes = Array(UnsafeRawBufferPointer(start: certificate.advanced(by: 8 + 4096), count: chainLength))
            return GPUEvidenceSource.Evidence(report: reportBytes, chainPEM: String(decoding: chainBytes, as: UTF8.self))
        }
    }
}
