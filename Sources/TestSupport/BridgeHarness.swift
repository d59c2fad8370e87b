import Bridge
import Consumer
import Core
import Foundation
import Kafka
import Logging
import ServiceLifecycle
import Synchronization

/// A logger for tests: warnings and worse to standard error (TEST_LOG_LEVEL changes the level).
public func testLogger(_ label: String) -> Logger {
    Logger(label: label) { label in
        var handler = StreamLogHandler.standardError(label: label)
        handler.logLevel = ProcessInfo.processInfo.environment["TEST_LOG_LEVEL"].flatMap(Logger.Level.init(rawValue:)) ?? .warning
        return handler
    }
}

/// The whole bridge in-process, between a real HAProxy and the embedded Kafka cluster: the same
/// `BridgeService` the executable runs, started and stopped by a `ServiceGroup`.
public final class BridgeHarness: @unchecked Sendable {
    public let cluster: EmbeddedKafkaCluster
    /// A state directory for the bridge (removed with the harness).
    public let stateDirectory: TemporaryDirectory
    private var producerStorage: KafkaProducer?
    public var producer: KafkaProducer { producerStorage! }
    public let logger: Logger
    public private(set) var service: BridgeService?
    private var group: ServiceGroup?
    private var task: Task<Void, any Error>?
    private let outcome = Locked<Result<Void, any Error>?>(nil)
    private let produced = Locked<[TopicPartition: Int64]>([:])

    public init(topics: [(name: String, partitions: Int32)], logger: Logger = testLogger("test.bridge")) throws {
        self.logger = logger
        stateDirectory = try TemporaryDirectory(prefix: "mapbridge-state")
        cluster = try EmbeddedKafkaCluster(logger: logger)
        for topic in topics { try cluster.createTopic(topic.name, partitions: topic.partitions) }
        producerStorage = try KafkaProducer(bootstrapServers: cluster.bootstrapServers, logger: logger)
    }

    deinit {
        // The producer goes before the cluster it talks to.
        producerStorage = nil
        stateDirectory.remove()
    }

    /// A configuration for this cluster and an HAProxy socket, with the product's defaults for
    /// everything else (HAProxy's timeouts and checks, reconnection, commits, shutdown): a test
    /// that needs another value sets it and says why.
    public func configuration(
        socket: String, maps: [(name: String, path: String)], topics: [BridgeConfiguration.Topic], group: String = "test-group"
    ) -> BridgeConfiguration {
        var configuration = BridgeConfiguration(groupID: group)
        configuration.kafka.brokers = cluster.bootstrapServers
        configuration.haproxy.socket = socket
        configuration.maps = maps.map { BridgeConfiguration.Map(name: $0.name, path: $0.path) }
        configuration.topics = topics
        configuration.stateDirectory = stateDirectory.path
        return configuration
    }

    public func start(_ configuration: BridgeConfiguration) {
        let service = BridgeService(configuration: configuration, logger: logger)
        let group = ServiceGroup(configuration: .init(services: [.init(service: service)], logger: logger))
        self.service = service
        self.group = group
        let outcome = self.outcome
        task = Task {
            do {
                try await group.run()
                outcome.withLock { $0 = .success(()) }
            } catch {
                outcome.withLock { $0 = .failure(error) }
                throw error
            }
        }
    }

    /// How the bridge ended, once it has (by itself or after ``stop()``).
    public var exit: Result<Void, any Error>? { outcome.value }

    /// Graceful shutdown, as on SIGTERM; rethrows what the service threw.
    public func stop() async throws {
        await group?.triggerGracefulShutdown()
        try await task?.value
        task = nil
        group = nil
    }

    public var status: BridgeStatus.Snapshot { service?.status.snapshot ?? .init() }

    /// Queues a message, remembering the highest offset produced per partition.
    public func produce(topic: String, key: String?, value: String?, headers: [KafkaHeader] = []) throws {
        try produce(topic: topic, key: key.map { Array($0.utf8) }, value: value.map { Array($0.utf8) }, headers: headers)
    }

    public func produce(topic: String, key: [UInt8]?, value: [UInt8]?, headers: [KafkaHeader] = []) throws {
        try producer.produce(topic: topic, key: key, value: value, headers: headers) { [produced] result in
            if case .success(let delivered) = result {
                produced.withLock { offsets in
                    let partition = TopicPartition(topic, delivered.partition)
                    offsets[partition] = max(offsets[partition] ?? 0, delivered.offset + 1)
                }
            }
        }
    }

    public func flush() throws { try producer.flush() }

    /// The next offset to consume per partition after everything produced (what a full commit reaches).
    public var producedEnds: [TopicPartition: Int64] { produced.withLock { $0 } }

    /// The group's committed offsets for every partition produced to, read from the cluster.
    public func committedOffsets(group: String = "test-group") throws -> [TopicPartition: Int64] {
        let partitions = Array(producedEnds.keys)
        return try KafkaGroupOffsets.committed(bootstrapServers: cluster.bootstrapServers, groupID: group, partitions: partitions, logger: logger)
    }

    /// True when the group has committed everything produced.
    public func committedEverything(group: String = "test-group") -> Bool {
        guard let committed = try? committedOffsets(group: group) else { return false }
        return producedEnds.allSatisfy { committed[$0.key] == $0.value }
    }
}

/// A value behind a lock that closures can share.
public final class Locked<Value: Sendable>: Sendable {
    private let mutex: Mutex<Value>

    public init(_ value: Value) {
        mutex = Mutex(value)
    }

    public func withLock<T: Sendable>(_ body: (inout sending Value) throws -> sending T) rethrows -> T {
        try mutex.withLock(body)
    }

    public var value: Value { mutex.withLock { $0 } }
}

/// Runs `body` with a harness, and stops the bridge (if still running) afterwards, whether `body`
/// returns or throws.
public func withBridgeHarness<T>(topics: [(name: String, partitions: Int32)], _ body: (BridgeHarness) async throws -> T) async throws -> T {
    let harness = try BridgeHarness(topics: topics)
    do {
        let result = try await body(harness)
        try? await harness.stop()
        return result
    } catch {
        try? await harness.stop()
        throw error
    }
}
