// swift-tools-version: 6.0
import PackageDescription

let package = Package(
    name: "mapbridge",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "mapbridge", targets: ["mapbridge"]),
        .executable(name: "mapbridge-bench", targets: ["mapbridge-bench"]),
        .library(name: "Bridge", targets: ["Bridge"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-collections", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
    ],
    targets: [
        // librdkafka from Debian's librdkafka-dev (2.0.2), through pkg-config.
        .systemLibrary(
            name: "CRdKafka",
            pkgConfig: "rdkafka",
            providers: [.apt(["librdkafka-dev"])]
        ),
        // A CPU cache hint that Swift cannot spell: the desired contents' look-ups ask for the
        // table slots of the next keys while they work on this one.
        .target(name: "CPrefetch"),
        // The decisions, pure: value types that take inputs and return what to do (desired maps,
        // batch planning and strategy, compaction, offsets and commits, batch policy, partition
        // ownership, the consumer's lifecycle). No C but that hint, no NIO, no file descriptors,
        // no blocking.
        .target(
            name: "Core",
            dependencies: [
                "CPrefetch",
                .product(name: "DequeModule", package: "swift-collections"),
            ]
        ),
        // Events as topics carry them: the json and kv formats, records and Debezium change
        // events, decoded into map changes. Pure parsing.
        .target(name: "Events"),
        // librdkafka, wrapped: the client handle and its callbacks, settings, errors, the
        // dead-letter producer, the embedded (mock) cluster, metadata and committed offsets.
        .target(
            name: "Kafka",
            dependencies: [
                "CRdKafka",
                "Core",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // The Kafka consumer side: the consumer polling on a thread of its own, and the delegate
        // it reports to.
        .target(
            name: "Consumer",
            dependencies: [
                "CRdKafka",
                "Core",
                "Kafka",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // The HAProxy side: runtime-API connection, encoding, map state, applier.
        .target(
            name: "Mapper",
            dependencies: [
                "Core",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "DequeModule", package: "swift-collections"),
            ]
        ),
        // The pipeline that joins them, configuration, metrics and health.
        .target(
            name: "Bridge",
            dependencies: [
                "Core",
                "Events",
                "Kafka",
                "Consumer",
                "Mapper",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Yams", package: "Yams"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ]
        ),
        .executableTarget(
            name: "mapbridge",
            dependencies: [
                "Bridge",
                "Core",
                "Kafka",
                "Consumer",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        // Real HAProxy processes and helpers shared by the tests and the benchmark.
        .target(
            name: "TestSupport",
            dependencies: [
                "Bridge",
                "Core",
                "Kafka",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .executableTarget(
            name: "mapbridge-bench",
            dependencies: [
                "Bridge",
                "Core",
                "Kafka",
                "Consumer",
                "Mapper",
                "TestSupport",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
            ]
        ),
        .testTarget(name: "CoreTests", dependencies: ["Core", "TestSupport"]),
        .testTarget(name: "EventsTests", dependencies: ["Events"]),
        .testTarget(name: "ConsumerTests", dependencies: ["Consumer", "Core", "Kafka", "TestSupport"]),
        .testTarget(name: "MapperTests", dependencies: ["Mapper", "Core", "TestSupport"]),
        .testTarget(name: "BridgeTests", dependencies: ["Bridge", "Core", "Kafka", "TestSupport"]),
    ]
)
