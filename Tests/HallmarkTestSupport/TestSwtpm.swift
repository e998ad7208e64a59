// A software TPM for tests: a manufacturer CA made with openssl, a TPM manufactured by swtpm_setup
// with EK certificates from that CA, and `swtpm socket` started and stopped by pid.

public import Foundation

public final class TestSwtpm: @unchecked Sendable {
    public let dir: TemporaryDirectory
    /// The manufacturer CA's certificate (PEM) and the directory holding it, for --tpm-ek-ca-dir.
    public let caCertificatePath: String
    public let caDirectory: String
    public let socketPath: String
    private var process: Process?
    public var pid: Int32 { process?.processIdentifier ?? 0 }

    public var tcti: String { "swtpm:path=\(socketPath)" }

    /// Makes the CA and manufactures the TPM, then starts it.
    public init(caName: String = "Hallmark Test TPM Manufacturer CA") throws {
        dir = try TemporaryDirectory("swtpm")
        let ca = dir.path("localca")
        caDirectory = dir.path("ek-cas")
        try FileManager.default.createDirectory(atPath: ca, withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: caDirectory, withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: dir.path("state"), withIntermediateDirectories: true)
        try Self.check(Run.process("/usr/bin/openssl", ["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "\(ca)/signkey.pem"]))
        try Self.check(Run.process("/usr/bin/openssl", [
            "req", "-x509", "-new", "-key", "\(ca)/signkey.pem", "-subj", "/CN=\(caName)", "-days", "3650", "-out", "\(ca)/issuercert.pem",
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        ]))
        try "1\n".write(toFile: "\(ca)/certserial", atomically: true, encoding: .utf8)
        caCertificatePath = "\(caDirectory)/manufacturer.pem"
        try FileManager.default.copyItem(atPath: "\(ca)/issuercert.pem", toPath: caCertificatePath)
        _ = try dir.write("localca.conf", "statedir = \(ca)\nsigningkey = \(ca)/signkey.pem\nissuercert = \(ca)/issuercert.pem\ncertserial = \(ca)/certserial\n")
        _ = try dir.write("setup.conf", """
            create_certs_tool = /usr/bin/swtpm_localca
            create_certs_tool_config = \(dir.path("localca.conf"))
            create_certs_tool_options = /etc/swtpm-localca.options
            active_pcr_banks = sha256

            """)
        try Self.check(Run.process("/usr/bin/swtpm_setup", [
            "--tpm2", "--tpmstate", dir.path("state"), "--create-ek-cert", "--create-platform-cert", "--pcr-banks", "sha256",
            "--config", dir.path("setup.conf"),
        ]))
        socketPath = dir.path("swtpm.sock")
        try start()
    }

    deinit { stop() }

    private static func check(_ result: ProcessResult) throws {
        guard result.status == 0 else { throw TestFailure("command failed (\(result.status)): \(result.stdout)\(result.stderr)") }
    }

    /// Starts `swtpm socket` on the manufactured state and waits for its socket.
    public func start() throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/swtpm")
        process.arguments = [
            "socket", "--tpm2", "--server", "type=unixio,path=\(socketPath)", "--ctrl", "type=unixio,path=\(socketPath).ctrl",
            "--tpmstate", "dir=\(dir.path("state"))", "--flags", "not-need-init,startup-clear",
        ]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        self.process = process
        let deadline = Date().addingTimeInterval(10)
        // The socket file appears at bind(2), before listen(2): wait until a connection is accepted.
        while !Self.accepts(socketPath) {
            guard Date() < deadline, process.isRunning else { throw TestFailure("swtpm did not listen on \(socketPath)") }
            usleep(10_000)
        }
    }

    private static func accepts(_ path: String) -> Bool {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else { return false }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (index, byte) in bytes.enumerated() { raw[index] = byte }
        }
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) == 0 }
        }
    }

    /// Stops swtpm by its pid.
    public func stop() {
        guard let process, process.isRunning else { return }
        // swtpm waits for its client before it exits on SIGTERM; a test's client may still be open.
        kill(process.processIdentifier, SIGTERM)
        let deadline = Date().addingTimeInterval(1)
        while process.isRunning, Date() < deadline { usleep(10_000) }
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
        self.process = nil
        try? FileManager.default.removeItem(atPath: socketPath)
        try? FileManager.default.removeItem(atPath: socketPath + ".ctrl")
    }

    /// Extends a PCR of the sha256 bank with a digest, through tpm2-tools (the test's own hand on the TPM).
    public func extend(pcr: Int, digestHex: String) throws {
        try Self.check(Run.process("/usr/bin/tpm2_pcrextend", ["\(pcr):sha256=\(digestHex)"], environment: ["TPM2TOOLS_TCTI": tcti]))
    }
}
