// swift-tools-version:6.1
// Hallmark: a SPIFFE workload identity authority for AI systems.
import PackageDescription

let strict: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("InternalImportsByDefault"),
]

let package = Package(
    name: "Hallmark",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "SPIFFE", targets: ["SPIFFE"]),
        .library(name: "SPIFFEWorkloadAPI", targets: ["SPIFFEWorkloadAPI"]),
        .executable(name: "hallmark", targets: ["hallmark"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-crypto", from: "4.0.0"),
        .package(url: "https://github.com/apple/swift-asn1", from: "1.3.0"),
        .package(url: "https://github.com/apple/swift-certificates", from: "1.21.1"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-protobuf", from: "1.39.0"),
        .package(url: "https://github.com/grpc/grpc-swift-2", from: "2.4.0"),
        .package(url: "https://github.com/grpc/grpc-swift-protobuf", from: "2.4.0"),
    ],
    targets: [
        // The SPIFFE core: IDs, bundles, SVIDs, verification, authorizers. Parsing only, no I/O.
        .target(
            name: "SPIFFE",
            dependencies: [
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "_CryptoExtras", package: "swift-crypto"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
                .product(name: "X509", package: "swift-certificates"),
            ],
            swiftSettings: strict
        ),
        // The SPIFFE Workload API: generated wire code, and the client built on it.
        .target(
            name: "SPIFFEWorkloadAPI",
            dependencies: [
                "SPIFFE",
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCProtobuf", package: "grpc-swift-protobuf"),
            ],
            swiftSettings: strict
        ),
        .executableTarget(
            name: "hallmark",
            dependencies: [
                "SPIFFE",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "X509", package: "swift-certificates"),
            ],
            swiftSettings: strict
        ),
        .target(
            name: "HallmarkTestSupport",
            dependencies: [
                "SPIFFE",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "_CryptoExtras", package: "swift-crypto"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
                .product(name: "X509", package: "swift-certificates"),
            ],
            path: "Tests/HallmarkTestSupport",
            swiftSettings: strict
        ),
        .testTarget(
            name: "SPIFFETests",
            dependencies: ["SPIFFE", "HallmarkTestSupport"],
            swiftSettings: strict
        ),
        .testTarget(
            name: "HallmarkCLITests",
            dependencies: ["SPIFFE", "HallmarkTestSupport", "hallmark"],
            swiftSettings: strict
        ),
        .testTarget(
            name: "SPIFFEWorkloadAPITests",
            dependencies: ["SPIFFEWorkloadAPI"],
            swiftSettings: strict
        ),
    ]
)
