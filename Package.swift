// swift-tools-version:6.1
import PackageDescription

let package = Package(
    name: "sluice",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "sluice", targets: ["sluice"])
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.6.0"),
        .package(url: "https://github.com/jpsim/Yams.git", from: "6.0.0"),
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.37.0"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.81.0"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.29.0"),
    ],
    targets: [
        .target(
            name: "CShims",
            path: "CShims",
            linkerSettings: [
                .linkedLibrary("uring"), .linkedLibrary("ssl"), .linkedLibrary("crypto"), .linkedLibrary("nghttp2"),
            ]
        ),
        .target(name: "SluiceSystem", dependencies: ["CShims"]),
        .target(name: "SluiceRouting"),
        .target(name: "SluiceWire"),
        .target(
            name: "SluiceReactor",
            dependencies: [
                "SluiceSystem", "SluiceRouting", "SluiceWire", .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .target(
            name: "SluiceAdmin",
            dependencies: [
                "SluiceSystem", "SluiceRouting", "SluiceWire", "SluiceReactor",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .target(name: "SluiceTLS", dependencies: ["CShims", "SluiceRouting"]),
        .target(name: "SluiceConfig", dependencies: ["SluiceRouting", "SluiceTLS", "Yams"]),
        .target(name: "SluiceKube", dependencies: ["SluiceRouting"]),
        .target(
            name: "SluiceKubeClient",
            dependencies: [
                "SluiceKube", "SluiceRouting", "Yams", .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Logging", package: "swift-log"), .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ]
        ),
        .executableTarget(
            name: "sluice",
            dependencies: [
                "SluiceSystem", "SluiceRouting", "SluiceReactor", "SluiceConfig", "SluiceTLS", "SluiceKube",
                "SluiceKubeClient", "SluiceAdmin",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .testTarget(name: "SluiceSystemTests", dependencies: ["SluiceSystem", "CShims"]),
        .testTarget(name: "SluiceRoutingTests", dependencies: ["SluiceRouting"]),
        .testTarget(name: "SluiceWireTests", dependencies: ["SluiceWire"]),
        .testTarget(name: "SluiceReactorTests", dependencies: ["SluiceReactor", "SluiceSystem", "SluiceRouting"]),
        .testTarget(name: "SluiceConfigTests", dependencies: ["SluiceConfig", "SluiceRouting"]),
        .testTarget(name: "SluiceKubeTests", dependencies: ["SluiceKube", "SluiceRouting"]),
        .testTarget(name: "SluiceTLSTests", dependencies: ["SluiceTLS", "SluiceRouting", "SluiceSystem", "CShims"]),
        .testTarget(
            name: "SluiceAdminTests", dependencies: ["SluiceAdmin", "SluiceReactor", "SluiceRouting", "SluiceSystem"]),
        .testTarget(name: "SluiceKubeClientTests", dependencies: ["SluiceKubeClient", "SluiceKube"]),
    ]
)

// Microbenchmarks (ordo-one/package-benchmark) for the parsers and the route lookup. Kept out
// of ordinary builds and CI, which do not need the harness and its dependencies:
//   SLUICE_BENCHMARKS=1 swift package --disable-sandbox benchmark
if Context.environment["SLUICE_BENCHMARKS"] != nil {
    package.dependencies.append(
        .package(url: "https://github.com/ordo-one/benchmark", from: "1.38.1", traits: ["MallocInterposer"]))
    package.targets.append(
        .executableTarget(
            name: "SluiceBenchmarks",
            dependencies: [
                "SluiceWire", "SluiceRouting",
                .product(name: "Benchmark", package: "benchmark"),
            ],
            path: "Benchmarks/SluiceBenchmarks",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ))
}

// Settings shared by every Swift target: Swift 6 mode and checked exclusivity stay on.
for target in package.targets where target.type != .system && target.name != "CShims" {
    var settings = target.swiftSettings ?? []
    settings.append(.swiftLanguageMode(.v6))
    target.swiftSettings = settings
}
