// A GPU that is not there, for end-to-end tests on machines without one: evidence in NVIDIA
// Hopper's real format (SPDM 1.1 GET_MEASUREMENTS request and signed MEASUREMENTS response),
// signed by a test device key under a test root, with whatever nonce it is asked for; and RIMs
// signed with xmlsec1 under a test RIM root, whose golden values match the simulated
// measurements unless the state says the GPU is tampered with.

public import Foundation
import Crypto

public enum GPUSimulator {
    public static let driverVersion = "545.00"
    /// As the opaque field carries it: 96.00.5E.00.01.
    public static let vbiosValue: UInt64 = 0x0000_0001_9600_5E00
    public static let vbiosVersion = "96.00.5E.00.01"
    /// RIM indices (block = index + 1) each RIM describes.
    static let driverIndices = [7] + Array(21...24)
    static let vbiosIndices = Array(0...6)

    /// The state directory's files.
    public struct State: Sendable {
        public let dir: String
        public var deviceRoot: String { "\(dir)/device-root.pem" }
        public var rimRoot: String { "\(dir)/rim-root.pem" }
        public var driverRIM: String { "\(dir)/driver.swidtag" }
        public var vbiosRIM: String { "\(dir)/vbios.swidtag" }
        var chain: String { "\(dir)/chain.pem" }
        var deviceKey: String { "\(dir)/device.key" }
        /// When this file exists, block 2's measurement differs from the RIM.
        public var tamperedFlag: String { "\(dir)/tampered" }

        public init(dir: String) { self.dir = dir }
    }

    /// Makes the device PKI, the RIM PKI and two signed RIMs in `dir`: a GPU whose UEID is
    /// `serial`. With `sharing`, another GPU of the same maker: the roots and RIMs are that one's.
    @discardableResult
    public static func create(in dir: String, serial: String = "SIM0000000001", sharing: State? = nil) throws -> State {
        let state = State(dir: dir)
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        if let sharing {
            for file in ["device-root.pem", "device-root.key", "rim-root.pem", "rim-root.key", "driver.swidtag", "vbios.swidtag"] {
                try FileManager.default.copyItem(atPath: "\(sharing.dir)/\(file)", toPath: "\(dir)/\(file)")
            }
        } else {
            try ca(dir, "device-root", subject: "/O=Hallmark Test/CN=Test Device Identity CA", issuer: nil, isCA: true)
        }
        try ca(dir, "device-id", subject: "/serialNumber=\(serial)/O=Hallmark Test/CN=GH100 A01 GSP BROM", issuer: "device-root", isCA: true)
        try ca(dir, "device", subject: "/O=Hallmark Test/CN=GH100 A01 GSP FMC LF", issuer: "device-id", isCA: false)
        let chain = try ["device", "device-id", "device-root"].map { try String(contentsOfFile: "\(dir)/\($0).pem", encoding: .utf8) }.joined()
        try chain.write(toFile: state.chain, atomically: true, encoding: .utf8)
        guard sharing == nil else { return state }
        try ca(dir, "rim-root", subject: "/O=Hallmark Test/CN=Test RIM Root CA", issuer: nil, isCA: true)
        try ca(dir, "rim-signer", subject: "/O=Hallmark Test/CN=Test RIM Signer", issuer: "rim-root", isCA: false)
        try signRIM(state, name: "driver", version: driverVersion, indices: driverIndices, to: state.driverRIM)
        try signRIM(state, name: "vbios", version: vbiosVersion, indices: vbiosIndices, to: state.vbiosRIM)
        return state
    }

    /// The measurement of SPDM block `index` (1-based).
    static func measurement(_ index: Int) -> [UInt8] { Array(SHA384.hash(data: Array("hallmark simulated block \(index)".utf8))) }

    /// Block 2's measurement as the RIM has it (hex), and as a tampered GPU reports it.
    public static var block2Golden: String { measurement(2).map { String(format: "%02x", $0) }.joined() }
    public static var block2Tampered: String {
        var value = measurement(2)
        value[0] ^= 0xff
        return value.map { String(format: "%02x", $0) }.joined()
    }

    /// Evidence for `nonce`: the report (request ‖ response) and the chain, leaf first, PEM.
    public static func evidence(_ state: State, nonce: [UInt8]) throws -> (report: [UInt8], chainPEM: String) {
        let tampered = FileManager.default.fileExists(atPath: state.tamperedFlag)
        var signed: [UInt8] = [0x11, 0xE0, 0x01, 0xFF] + nonce + [0x00]
        var record: [UInt8] = []
        for index in 1...64 {
            var value = measurement(index)
            if tampered, index == 2 { value[0] ^= 0xff }  // as block2Tampered
            record += [UInt8(index), 0x01] + le16(51) + [0x01] + le16(48) + value
        }
        signed += [0x11, 0x60, 0x00, 0x00, 64] + Array(le32(UInt32(record.count)).prefix(3)) + record
        signed += (0..<32).map { _ in UInt8.random(in: 0...255) }
        var opaque: [UInt8] = []
        func field(_ type: UInt16, _ value: [UInt8]) { opaque += le16(type) + le16(UInt16(value.count)) + value }
        field(6, (0..<8).map { UInt8((vbiosValue >> UInt64($0 * 8)) & 0xff) })
        field(15, Array("882".utf8) + [0])
        field(17, Array("1010".utf8) + [0])
        field(18, Array("0200".utf8) + [0])
        field(3, Array(driverVersion.utf8) + [0])
        signed += le16(UInt16(opaque.count)) + opaque
        let key = try P384.Signing.PrivateKey(pemRepresentation: try String(contentsOfFile: state.deviceKey, encoding: .utf8))
        let signature = try key.signature(for: SHA384.hash(data: signed)).rawRepresentation
        return (signed + Array(signature), try String(contentsOfFile: state.chain, encoding: .utf8))
    }

    /// OCSP responses (DER) for the simulated chain's two certificates, made with `openssl ocsp`,
    /// each signed by the certificate's issuer; `revokeLeaf` marks the leaf revoked.
    public static func ocspResponses(_ state: State, revokeLeaf: Bool = false) throws -> [[UInt8]] {
        try [("device", "device-id", revokeLeaf), ("device-id", "device-root", false)].map { name, issuer, revoked in
            let dir = state.dir
            let serial = try Run.process("/usr/bin/openssl", ["x509", "-in", "\(dir)/\(name).pem", "-noout", "-serial"]).stdout
                .trimmingCharacters(in: .whitespacesAndNewlines).replacingOccurrences(of: "serial=", with: "")
            let subject = try Run.process("/usr/bin/openssl", ["x509", "-in", "\(dir)/\(name).pem", "-noout", "-subject", "-nameopt", "compat"]).stdout
                .trimmingCharacters(in: .whitespacesAndNewlines).replacingOccurrences(of: "subject=", with: "")
            let line = revoked ? "R\t301231235959Z\t260101000000Z\t\(serial)\tunknown\t\(subject)\n" : "V\t301231235959Z\t\t\(serial)\tunknown\t\(subject)\n"
            try line.write(toFile: "\(dir)/\(name).index", atomically: true, encoding: .utf8)
            try run("/usr/bin/openssl", ["ocsp", "-issuer", "\(dir)/\(issuer).pem", "-cert", "\(dir)/\(name).pem", "-no_nonce", "-reqout", "\(dir)/\(name).ocsp-req"])
            try run("/usr/bin/openssl", [
                "ocsp", "-index", "\(dir)/\(name).index", "-rsigner", "\(dir)/\(issuer).pem", "-rkey", "\(dir)/\(issuer).key",
                "-CA", "\(dir)/\(issuer).pem", "-reqin", "\(dir)/\(name).ocsp-req", "-respout", "\(dir)/\(name).ocsp", "-ndays", "1",
            ])
            return Array(try Data(contentsOf: URL(fileURLWithPath: "\(dir)/\(name).ocsp")))
        }
    }

    static func le16(_ value: UInt16) -> [UInt8] { [UInt8(value & 0xff), UInt8(value >> 8)] }
    static func le32(_ value: UInt32) -> [UInt8] { (0..<4).map { UInt8((value >> ($0 * 8)) & 0xff) } }

    // MARK: PKI and RIMs, with openssl and xmlsec1

    private static func run(_ executable: String, _ arguments: [String]) throws {
        let result = try Run.process(executable, arguments)
        guard result.status == 0 else { throw TestFailure("\(executable) \(arguments.joined(separator: " ")): \(result.stderr)") }
    }

    /// A P-384 key and certificate `name.pem`/`name.key`, self-signed or issued by `issuer`.
    private static func ca(_ dir: String, _ name: String, subject: String, issuer: String?, isCA: Bool) throws {
        let key = "\(dir)/\(name).key"
        try run("/usr/bin/openssl", ["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384", "-out", key])
        let extensions = isCA
            ? "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\nsubjectKeyIdentifier=hash\n"
            : "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nsubjectKeyIdentifier=hash\n"
        try extensions.write(toFile: "\(dir)/\(name).ext", atomically: true, encoding: .utf8)
        if let issuer {
            try run("/usr/bin/openssl", ["req", "-new", "-key", key, "-subj", subject, "-out", "\(dir)/\(name).csr"])
            try run("/usr/bin/openssl", [
                "x509", "-req", "-in", "\(dir)/\(name).csr", "-CA", "\(dir)/\(issuer).pem", "-CAkey", "\(dir)/\(issuer).key",
                "-CAcreateserial", "-days", "30", "-sha384", "-extfile", "\(dir)/\(name).ext", "-out", "\(dir)/\(name).pem",
            ])
        } else {
            try run("/usr/bin/openssl", [
                "req", "-x509", "-new", "-key", key, "-subj", subject, "-days", "30", "-sha384",
                "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign", "-out", "\(dir)/\(name).pem",
            ])
        }
    }

    private static func signRIM(_ state: State, name: String, version: String, indices: [Int], to path: String) throws {
        let resources = indices.map { index in
            #"<Resource type="Measurement" index="\#(index)" active="True" alternatives="1" sha384:Hash0="\#(measurement(index + 1).map { String(format: "%02x", $0) }.joined())" name="Measurement_\#(index)" size="48"/>"#
        }
        // An inactive entry whose value matches nothing, to show inactive entries are not compared.
        let inactive = #"<Resource type="Measurement" index="40" active="False" alternatives="1" sha384:Hash0="\#(String(repeating: "00", count: 48))" name="Measurement_40" size="48"/>"#
        let template = """
            <?xml version="1.0" encoding="UTF-8"?>
            <SoftwareIdentity xmlns="http://standards.iso.org/iso/19770/-2/2015/schema.xsd" xmlns:sha384="http://www.w3.org/2001/04/xmlenc#sha384" name="GH100" tagId="hallmark-simulated-\(name)" version="1.0" tagVersion="0">
              <Meta colloquialVersion="\(version)" product="GH100"/>
              <Payload>
                \((resources + [inactive]).joined(separator: "\n    "))
              </Payload>
              <Signature xmlns="http://www.w3.org/2000/09/xmldsig#">
                <SignedInfo>
                  <CanonicalizationMethod Algorithm="http://www.w3.org/2006/12/xml-c14n11"/>
                  <SignatureMethod Algorithm="http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha384"/>
                  <Reference URI="">
                    <Transforms><Transform Algorithm="http://www.w3.org/2000/09/xmldsig#enveloped-signature"/></Transforms>
                    <DigestMethod Algorithm="http://www.w3.org/2001/04/xmldsig-more#sha384"/>
                    <DigestValue/>
                  </Reference>
                </SignedInfo>
                <SignatureValue/>
                <KeyInfo><X509Data/></KeyInfo>
              </Signature>
            </SoftwareIdentity>

            """
        let templatePath = "\(state.dir)/\(name).template.xml"
        try template.write(toFile: templatePath, atomically: true, encoding: .utf8)
        try run("/usr/bin/xmlsec1", [
            "--sign", "--privkey-pem", "\(state.dir)/rim-signer.key,\(state.dir)/rim-signer.pem", "--output", path, templatePath,
        ])
    }
}
