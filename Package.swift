// swift-tools-version:6.1
// Hallmark: a SPIFFE workload identity authority for AI systems.
import PackageDescription

let strict: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("InternalImportsByDefault"),
]

let crypto: [Target.Dependency] = [
    .product(name: "Crypto", package: "swift-crypto"),
    .product(name: "_CryptoExtras", package: "swift-crypto"),
    .product(name: "SwiftASN1", package: "swift-asn1"),
    .product(name: "X509", package: "swift-certificates"),
]

let grpc: [Target.Dependency] = [
    .product(name: "GRPCCore", package: "grpc-swift-2"),
    .product(name: "GRPCProtobuf", package: "grpc-swift-protobuf"),
    .product(name: "SwiftProtobuf", package: "swift-protobuf"),
]

let transport: [Target.Dependency] = [
    .product(name: "GRPCNIOTransportHTTP2", package: "grpc-swift-nio-transport"),
    .product(name: "NIOCore", package: "swift-nio"),
    .product(name: "NIOPosix", package: "swift-nio"),
    .product(name: "NIOHTTP2", package: "swift-nio-http2"),
]

let tls: [Target.Dependency] = [
    .product(name: "NIOSSL", package: "swift-nio-ssl"),
    .product(name: "NIOCertificateReloading", package: "swift-nio-extras"),
]

let package = Package(
    name: "Hallmark",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "SPIFFE", targets: ["SPIFFE"]),
        .library(name: "SPIFFEWorkloadAPI", targets: ["SPIFFEWorkloadAPI"]),
        .library(name: "SPIFFETLS", targets: ["SPIFFETLS"]),
        // For the fuzz targets in Fuzz/, which build as a package of their own.
        .library(name: "HallmarkProto", targets: ["HallmarkProto"]),
        .library(name: "HallmarkCA", targets: ["HallmarkCA"]),
        .library(name: "HallmarkTPM", targets: ["HallmarkTPM"]),
        .library(name: "HallmarkGPU", targets: ["HallmarkGPU"]),
        .library(name: "HallmarkServer", targets: ["HallmarkServer"]),
        .executable(name: "hallmark", targets: ["hallmark"]),
        .executable(name: "mtls-echo", targets: ["mtls-echo"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-crypto", from: "4.0.0"),
        .package(url: "https://github.com/apple/swift-asn1", from: "1.3.0"),
        .package(url: "https://github.com/apple/swift-certificates", from: "1.21.1"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-protobuf", from: "1.39.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-http2", from: "1.46.0"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.37.0"),
        .package(url: "https://github.com/apple/swift-nio-extras", from: "1.35.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/grpc/grpc-swift-2", from: "2.4.0"),
        .package(url: "https://github.com/grpc/grpc-swift-protobuf", from: "2.4.0"),
        .package(url: "https://github.com/grpc/grpc-swift-nio-transport", from: "2.9.0"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
        .package(url: "https://github.com/vapor/postgres-nio", from: "1.33.0"),
    ],
    targets: [
        // The SPIFFE core: IDs, bundles, SVIDs, verification, authorizers. Parsing only, no I/O.
        .target(name: "SPIFFE", dependencies: crypto, swiftSettings: strict),
        // TLS by the SPIFFE rules: peer verification against bundles, the local SVID rotated in place;
        // any source (files, or the Workload API's), no gRPC.
        .target(name: "SPIFFETLS", dependencies: ["SPIFFE", .product(name: "NIOCore", package: "swift-nio")] + tls + crypto, swiftSettings: strict),
        // The SPIFFE Workload API: generated wire code, the client built on it (X509Source, JWTSource),
        // and SPIFFE mTLS from it for swift-nio-ssl and grpc-swift-2.
        .target(name: "SPIFFEWorkloadAPI", dependencies: ["SPIFFE", "SPIFFETLS"] + grpc + transport + tls, swiftSettings: strict),
        // Wire types of the admin and agent APIs, shared by the server, the agent and the CLI.
        .target(name: "HallmarkProto", dependencies: grpc, swiftSettings: strict),
        // Kernel-reported peer credentials (SO_PEERCRED) for gRPC over Unix sockets.
        .target(name: "HallmarkPeerCredentials", dependencies: ["CHallmarkLinux", .product(name: "GRPCCore", package: "grpc-swift-2")] + transport, swiftSettings: strict),
        .target(name: "CHallmarkLinux"),
        // Small shared mechanisms of the server and the agent: private files and sockets, the broadcast
        // of changes to long-lived streams, rate limits.
        .target(name: "HallmarkSupport", dependencies: [.product(name: "GRPCCore", package: "grpc-swift-2")], swiftSettings: strict),
        // Selectors, attestor and verifier types, join tokens.
        .target(name: "HallmarkAttestation", dependencies: ["SPIFFE"] + crypto, swiftSettings: strict),
        // TPM 2.0 node attestation: the server's verifier and the agent's device access (tpm2-tss ESYS).
        .target(name: "CHallmarkCrypto", linkerSettings: [.linkedLibrary("crypto")]),
        .target(
            name: "CHallmarkTPM",
            linkerSettings: [.linkedLibrary("tss2-esys"), .linkedLibrary("tss2-tctildr"), .linkedLibrary("tss2-mu"), .linkedLibrary("tss2-rc")]
        ),
        // GPU attestation: SPDM evidence from NVIDIA Hopper GPUs and their signed RIMs (libxmlsec1).
        .systemLibrary(name: "CXMLSec", pkgConfig: "xmlsec1-openssl", providers: [.apt(["libxmlsec1-dev"])]),
        // The defines xmlsec1-openssl.pc gives (`pkg-config --cflags xmlsec1-openssl`): they select
        // the OpenSSL backend and xmlSecSize's width, so they must match the library's build.
        .target(
            name: "CHallmarkRIM", dependencies: ["CXMLSec"],
            cSettings: [
                .define("XMLSEC_CRYPTO_OPENSSL", to: "1"), .define("XMLSEC_NO_SIZE_T"), .define("XMLSEC_OPENSSL3_ENGINES", to: "1"),
                .define("XMLSEC_NO_GOST", to: "1"), .define("XMLSEC_NO_GOST2012", to: "1"), .define("XMLSEC_NO_CRYPTO_DYNAMIC_LOADING", to: "1"),
                .define("__XMLSEC_FUNCTION__", to: "__func__"),
            ]
        ),
        .target(name: "HallmarkGPU", dependencies: ["HallmarkAttestation", "CHallmarkRIM", "SPIFFE"] + crypto, swiftSettings: strict),
        .target(name: "HallmarkTPM", dependencies: ["HallmarkAttestation", "CHallmarkCrypto", "CHallmarkTPM", "SPIFFE"] + crypto, swiftSettings: strict),
        // The store protocol (and the CA journal it refines) with its SQLite implementation, numbered SQL
        // migrations, and the hash-chained audit log with signed checkpoints.
        .target(
            name: "HallmarkStore",
            dependencies: [
                "SPIFFE", "HallmarkAttestation", "HallmarkSupport", .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "PostgresNIO", package: "postgres-nio"), .product(name: "Logging", package: "swift-log"),
            ] + crypto,
            swiftSettings: strict
        ),
        // Signing: X509-SVIDs from CSRs, JWT-SVIDs, CA keys on disk, and the key-slot planner (the CA keys' life).
        .target(name: "HallmarkCA", dependencies: ["SPIFFE", "HallmarkSupport"] + crypto, swiftSettings: strict),
        // The server: admin API, agent API, node attestation, entry stream, audit; the CA manager that
        // carries out the key-slot planner's actions; every part a ServiceLifecycle service on one clock.
        .target(
            name: "HallmarkServer",
            dependencies: [
                "SPIFFE", "SPIFFETLS", "HallmarkProto", "HallmarkPeerCredentials", "HallmarkAttestation", "HallmarkStore", "HallmarkCA",
                "HallmarkSupport", "HallmarkTPM", "HallmarkGPU",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ] + crypto + grpc + transport + tls,
            swiftSettings: strict
        ),
        // The node agent: node attestors (one per method), the agent-API client with its server list,
        // entry sync, the SVID cache and rotation planner, the Workload API (one call state machine per
        // HTTP/2 stream).
        .target(
            name: "HallmarkAgent",
            dependencies: [
                "SPIFFE", "SPIFFETLS", "SPIFFEWorkloadAPI", "HallmarkProto", "HallmarkPeerCredentials", "HallmarkAttestation",
                "HallmarkSupport", "HallmarkTPM", "HallmarkGPU",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "NIOHPACK", package: "swift-nio-http2"),
            ] + crypto + grpc + transport + tls,
            swiftSettings: strict
        ),
        .executableTarget(
            name: "hallmark",
            dependencies: [
                "SPIFFE", "SPIFFEWorkloadAPI", "HallmarkProto", "HallmarkServer", "HallmarkAgent", "HallmarkAttestation", "HallmarkTPM", "HallmarkGPU",
                "HallmarkSupport", "HallmarkStore", .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ] + crypto + grpc + transport,
            swiftSettings: strict
        ),
        .target(
            name: "HallmarkTestSupport",
            dependencies: ["SPIFFE"] + crypto,
            path: "Tests/HallmarkTestSupport",
            swiftSettings: strict
        ),
        // An example service and client to copy: SPIFFE mTLS from the Workload API, authorised by ID.
        .executableTarget(
            name: "mtls-echo",
            dependencies: [
                "SPIFFE", "SPIFFETLS", "SPIFFEWorkloadAPI", .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ],
            swiftSettings: strict
        ),
        // The benchmarks (scripts/bench builds them in release mode).
        .executableTarget(
            name: "hallmark-bench",
            dependencies: [
                "SPIFFE", "SPIFFETLS", "SPIFFEWorkloadAPI", "HallmarkCA", "HallmarkProto", "HallmarkStore", "HallmarkServer", "HallmarkAttestation",
            ] + crypto + grpc + transport,
            swiftSettings: strict
        ),
        // Test tooling: simulated GPU evidence in NVIDIA's format, for machines without a GPU.
        .executableTarget(name: "hallmark-gpu-simulator", dependencies: ["HallmarkTestSupport"], path: "Tests/GPUSimulator", swiftSettings: strict),
        .testTarget(name: "SPIFFETests", dependencies: ["SPIFFE", "HallmarkTestSupport"], swiftSettings: strict),
        .testTarget(
            name: "SPIFFETLSTests",
            dependencies: ["SPIFFE", "SPIFFETLS", "HallmarkTestSupport", .product(name: "NIOEmbedded", package: "swift-nio"), .product(name: "NIOTLS", package: "swift-nio")] + tls + crypto,
            swiftSettings: strict
        ),
        .testTarget(name: "SPIFFEWorkloadAPITests", dependencies: ["SPIFFEWorkloadAPI"], swiftSettings: strict),
        .testTarget(
            name: "HallmarkStoreTests",
            dependencies: [
                "HallmarkStore", "HallmarkAttestation", "HallmarkTestSupport", .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "PostgresNIO", package: "postgres-nio"), .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        .testTarget(
            name: "HallmarkServerTests",
            dependencies: [
                "HallmarkServer", "HallmarkStore", "HallmarkCA", "HallmarkAttestation", "HallmarkSupport", "SPIFFE", "HallmarkTestSupport",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        .testTarget(
            name: "HallmarkAgentTests",
            dependencies: [
                "HallmarkAgent", "HallmarkPeerCredentials", "HallmarkAttestation", "HallmarkTestSupport",
                .product(name: "NIOEmbedded", package: "swift-nio"), .product(name: "NIOHPACK", package: "swift-nio-http2"),
                .product(name: "Logging", package: "swift-log"),
            ] + transport,
            swiftSettings: strict
        ),
        .testTarget(name: "HallmarkSupportTests", dependencies: ["HallmarkSupport", "HallmarkTestSupport"], swiftSettings: strict),
        .testTarget(name: "HallmarkAttestationTests", dependencies: ["HallmarkAttestation"], swiftSettings: strict),
        .testTarget(
            name: "HallmarkPeerCredentialsTests", dependencies: ["HallmarkPeerCredentials", .product(name: "GRPCCore", package: "grpc-swift-2")],
            swiftSettings: strict
        ),
        .testTarget(name: "HallmarkGPUTests", dependencies: ["HallmarkGPU", "SPIFFE", "HallmarkTestSupport"] + crypto, swiftSettings: strict),
        .testTarget(name: "HallmarkTPMTests", dependencies: ["HallmarkTPM", "HallmarkTestSupport"] + crypto, swiftSettings: strict),
        .testTarget(name: "HallmarkCATests", dependencies: ["HallmarkCA", "SPIFFE", "HallmarkTestSupport"] + crypto, swiftSettings: strict),
        .testTarget(
            name: "HallmarkCLITests",
            dependencies: ["SPIFFE", "SPIFFETLS", "SPIFFEWorkloadAPI", "HallmarkProto", "HallmarkStore", "HallmarkTestSupport", "hallmark", "hallmark-gpu-simulator", "mtls-echo", "hallmark-bench",
                .product(name: "NIOHPACK", package: "swift-nio-http2"),
            ] + crypto + grpc + transport,
            swiftSettings: strict
        ),
    ]
)
