// swift-tools-version:6.0
// libFuzzer targets for every parser Hallmark runs on untrusted bytes. A package of its own, so
// the main build never carries the sanitizers: scripts/fuzz builds it with
// `swift build --sanitize=fuzzer --sanitize=address` and runs each target over its seed corpus
// in Fuzz/Corpus/<target>.

import Foundation
import PackageDescription

/// The main package is the parent directory; its identity is that directory's name.
let main = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
let identity = main.lastPathComponent.lowercased()

func target(_ name: String, _ products: [String]) -> Target {
    .executableTarget(
        name: name,
        dependencies: ["FuzzSupport"] + products.map { .product(name: $0, package: identity) }
    )
}

let package = Package(
    name: "HallmarkFuzz",
    dependencies: [.package(path: main.path)],
    targets: [
        .target(name: "FuzzSupport", dependencies: [.product(name: "SPIFFE", package: identity)]),
        target("FuzzSPIFFEID", ["SPIFFE"]),
        target("FuzzX509SVID", ["SPIFFE"]),
        target("FuzzCSR", ["SPIFFE", "HallmarkCA"]),
        target("FuzzBundle", ["SPIFFE"]),
        target("FuzzJWTSVID", ["SPIFFE"]),
        target("FuzzSPDMReport", ["HallmarkGPU"]),
        target("FuzzTPMStructures", ["HallmarkTPM"]),
        target("FuzzAPIMessages", ["SPIFFE", "HallmarkCA", "HallmarkProto", "HallmarkServer"]),
    ]
)
