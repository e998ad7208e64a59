// NVIDIA reference integrity manifests: SWID tags (ISO/IEC 19770-2) whose Payload lists golden
// measurements, signed with an enveloped XML signature that libxmlsec1 verifies.

import CHallmarkRIM
import Foundation
import HallmarkAttestation
#if canImport(FoundationXML)
import FoundationXML
import SPIFFE
#endif

enum RIMSignature {
    /// Nil when the signature verifies to the root at `time`; otherwise the reason.
    static func verify(_ xml: [UInt8], rootPEM: String, at time: Date) -> String? {
        var message = [CChar](repeating: 0, count: 512)
        let status = hm_rim_verify(xml, xml.count, rootPEM, Int64(time.timeIntervalSince1970), &message, message.count)
        let text = String(decoding: message.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return status == 0 ? nil : text
    }
}

/// A RIM's version and golden measurements.
struct RIMManifest {
    struct Measurement {
        let index: Int
        let active: Bool
        let alternatives: [[UInt8]]
    }

    let version: String
    let measurements: [Measurement]

    init(xml: [UInt8]) throws {
        let document = try XMLDocument(data: Data(xml), options: [])
        guard let root = document.rootElement(), root.localName == "SoftwareIdentity" else {
            throw GPUEvidenceError(.malformed, "rim: the document is not a SWID tag (SoftwareIdentity)")
        }
        guard let meta = root.children?.compactMap({ $0 as? XMLElement }).first(where: { $0.localName == "Meta" }),
            let version = meta.attributes?.first(where: { $0.localName == "colloquialVersion" })?.stringValue
        else {
            throw GPUEvidenceError(.malformed, "rim: Meta@colloquialVersion is missing")
        }
        self.version = version
        guard let payload = root.children?.compactMap({ $0 as? XMLElement }).first(where: { $0.localName == "Payload" }) else {
            throw GPUEvidenceError(.malformed, "rim: Payload is missing")
        }
        var measurements: [Measurement] = []
        for resource in payload.children?.compactMap({ $0 as? XMLElement }) ?? [] where resource.localName == "Resource" {
            let attributes = resource.attributes ?? []
            func attribute(_ name: String) -> String? { attributes.first { $0.localName == name }?.stringValue }
            guard attribute("type") == "Measurement" else { continue }
            guard let indexText = attribute("index"), let index = Int(indexText) else {
                throw GPUEvidenceError(.malformed, "rim: a Resource has no numeric index")
            }
            let count = Int(attribute("alternatives") ?? "1") ?? 1
            var alternatives: [[UInt8]] = []
            for alternative in 0..<count {
                guard let hex = attribute("Hash\(alternative)"), let digest = Hex.decode(hex) else {
                    throw GPUEvidenceError(.malformed, "rim: Resource \(index) lacks Hash\(alternative)")
                }
                alternatives.append(digest)
            }
            measurements.append(Measurement(index: index, active: attribute("active")?.lowercased() == "true", alternatives: alternatives))
        }
        self.measurements = measurements
    }
}
