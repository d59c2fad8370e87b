import Consumer
import Core
import Kafka
import Logging
import Mapper
import NIOPosix
import ServiceLifecycle
import Synchronization

/// The daemon as a service: build it from a configuration, run it in a `ServiceGroup`. On graceful
/// shutdown it stops taking batches, finishes (within `shutdown.timeout_ms`) or abandons the batch
/// in flight, commits what HAProxy acknowledged, and leaves the consumer group.
public final class BridgeService: Service, Sendable {
    public let configuration: BridgeConfiguration
    public let status = BridgeStatus()
    private let logger: Logger
    private let consumer = Mutex<WeakConsumer>(WeakConsumer())

    private struct WeakConsumer {
        weak var value: KafkaConsumer?
    }

    /// Raises a fatal librdkafka error in the running consumer (fault injection for tests).
    public func injectFatalKafkaError(code: Int32, reason: String) {
        consumer.withLock { $0.value }?.injectFatalError(code: code, reason: reason)
    }

    public init(configuration: BridgeConfiguration, logger: Logger) {
        self.configuration = configuration
        self.logger = logger
    }

    public func run() async throws {
        let backlog = Backlog(maxEvents: configuration.backlog.maxEvents, maxBytes: configuration.backlog.maxBytes)
        let owners = OwnerTable()
        let store = StateStore(configuration: configuration, owners: owners, logger: logger)
        try await store.openDirectory()
        if configuration.kafka.membership == .direct {
            // A bridge that consumes every partition must be its state's only writer: a second one
            // on the same directory (a rolling deploy on one host) waits until the first has gone.
            guard try await claimStateDirectory(store) else { return }
        }
        let intake = MessageIntake(configuration: configuration, backlog: backlog, store: store, logger: logger)
        let consumer = try KafkaConsumer(configuration: configuration.consumerConfiguration, delegate: intake, logger: logger)
        self.consumer.withLock { $0.value = consumer }
        let stored = try await store.load()
        for (map, state) in zip(configuration.maps, stored) {
            if let contents = state.contents {
                logger.info(
                    "loaded the stored state",
                    metadata: ["map": "\(map.name)", "map.entries": "\(contents.count)", "offsets": "\(describeOffsets(state.offsets))"])
            } else {
                logger.info("no stored state yet: HAProxy's live map is the starting state", metadata: ["map": "\(map.name)"])
            }
        }
        let applier = MapApplier(
            maps: configuration.mapDefinitions, initial: stored.map(\.contents),
            endpoint: try RuntimeEndpoint(parsing: configuration.haproxy.socket),
            options: configuration.applierOptions, logger: logger)
        // Until partitions are assigned, this bridge owns nothing: it only connects and checks.
        applier.setOwnership(exclusive: false, owned: [])
        var deadLetters: DeadLetterQueue?
        if let topic = configuration.deadLetterTopic {
            // The consumer's properties (TLS, SASL...) apply to the dead-letter producer too.
            let properties = configuration.kafka.properties.filter { !Self.isConsumerOnly($0.key) }
            let producer = try KafkaProducer(bootstrapServers: configuration.kafka.brokers, properties: KafkaSettings(properties), logger: logger)
            deadLetters = DeadLetterQueue(topic: topic, producer: producer, logger: logger)
        }
        let pipeline = Pipeline(
            configuration: configuration, applier: applier, backlog: backlog, intake: intake, consumer: consumer, status: status,
            metrics: BridgeMetrics(), owners: owners, store: store, deadLetters: deadLetters, logger: logger)
        logger.info(
            "mapbridge starting",
            metadata: [
                "haproxy.socket": "\(configuration.haproxy.socket)", "kafka.brokers": "\(configuration.kafka.brokers)",
                "kafka.group": "\(configuration.kafka.groupID)",
                "maps": "\(configuration.maps.map(\.name).joined(separator: ","))", "librdkafka": "\(librdkafkaVersion)",
            ])
        let reporter = LagReporter(consumer: consumer, status: status, metrics: pipeline.metrics)
        var failure: (any Error)?
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await reporter.run() }
            do {
                try await withGracefulShutdownHandler {
                    try await pipeline.run()
                } onGracefulShutdown: { [logger, configuration] in
                    let leaving = configuration.kafka.membership == .group ? " and leaving the group" : ""
                    logger.notice(
                        "shutting down: finishing the batch in flight, then storing the state, committing\(leaving) (a second signal exits at once)",
                        metadata: ["shutdown.timeout_ms": "\(configuration.shutdownTimeoutMilliseconds)"])
                    backlog.close()
                }
            } catch {
                // The consumer stopped because the cluster is not the state's: say that, not "fatal".
                failure = intake.refusal ?? error
            }
            group.cancelAll()
        }
        logger.debug("pipeline ended", metadata: ["error": "\(failure.map { "\($0)" } ?? "none")"])
        backlog.close()
        await consumer.close()
        await deadLetters?.close()
        await applier.disconnect()
        if let failure { throw failure }
        logger.info("mapbridge stopped cleanly")
    }
}

extension BridgeService {
    /// Takes the state directory for this bridge alone, waiting (as a standby, not ready) while
    /// another process holds it; false when a graceful shutdown came first.
    func claimStateDirectory(_ store: StateStore) async throws -> Bool {
        var announced = false
        while try await !store.claimExclusively() {
            if !announced {
                logger.notice(
                    "another mapbridge holds the state directory: waiting until it stops (standby)",
                    metadata: ["state.directory": "\(store.directory)", "holder.pid": "\(store.holder ?? "?")"])
                status.update { $0.standby = true }
                announced = true
            }
            if Task.isShuttingDownGracefully { return false }
            try await Task.sleep(for: .milliseconds(200))
        }
        if announced {
            logger.notice("took over the state directory", metadata: ["state.directory": "\(store.directory)"])
            status.update { $0.standby = false }
        }
        return true
    }

    /// librdkafka properties that only a consumer takes (a producer would warn about them).
    static func isConsumerOnly(_ name: String) -> Bool {
        let prefixes = [
            "group.", "session.", "heartbeat.", "max.poll.", "auto.", "enable.auto.", "partition.assignment", "fetch.", "queued.", "isolation.", "check.crcs",
            "coordinator.",
        ]
        return prefixes.contains { name.hasPrefix($0) } || name == "enable.partition.eof" || name == "offset.store.method"
    }
}
