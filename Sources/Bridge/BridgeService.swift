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
        var deadLetters: DeadLetterQueue?
        if let topic = configuration.deadLetterTopic {
            // The consumer's properties (TLS, SASL...) apply to the dead-letter producer too.
            let properties = configuration.kafka.properties.filter { !Self.isConsumerOnly($0.key) }
            let producer = try KafkaProducer(bootstrapServers: configuration.kafka.brokers, properties: KafkaSettings(properties), logger: logger)
            deadLetters = DeadLetterQueue(topic: topic, producer: producer, logger: logger)
        }
        let metrics = BridgeMetrics()
        let initial = stored.map(\.contents)
        let pipeline = PipelineService { [configuration, status, logger, deadLetters] in
            let applier = MapApplier(
                maps: configuration.mapDefinitions, initial: initial, endpoint: try RuntimeEndpoint(parsing: configuration.haproxy.socket),
                options: configuration.applierOptions, logger: logger)
            // Until partitions are assigned, this bridge owns nothing: it only connects and checks.
            applier.setOwnership(exclusive: false, owned: [])
            return Pipeline(
                configuration: configuration, applier: applier, backlog: backlog, intake: intake, consumer: consumer, status: status,
                metrics: metrics, owners: owners, store: store, deadLetters: deadLetters, logger: logger)
        }
        logger.info(
            "mapbridge starting",
            metadata: [
                "haproxy.socket": "\(configuration.haproxy.socket)", "kafka.brokers": "\(configuration.kafka.brokers)",
                "kafka.group": "\(configuration.kafka.groupID)",
                "maps": "\(configuration.maps.map(\.name).joined(separator: ","))", "librdkafka": "\(librdkafkaVersion)",
            ])
        // Children, shut down gracefully in reverse order: the pipeline first (the batch in flight,
        // the state stored, the final commit), then the lag reporter, then the consumer (leaving
        // the group), then the dead-letter producer (flushing what is left). The pipeline ending,
        // by itself or with an error, shuts the others down the same way.
        var children: [ServiceGroupConfiguration.ServiceConfiguration] = []
        if let deadLetters { children.append(.init(service: ClosingService("dead-letter producer", logger: logger) { await deadLetters.close() })) }
        children.append(.init(service: ClosingService("consumer", logger: logger) { await consumer.close() }))
        children.append(.init(service: LagReporter(consumer: consumer, status: status, metrics: metrics)))
        children.append(.init(service: pipeline, successTerminationBehavior: .gracefullyShutdownGroup, failureTerminationBehavior: .gracefullyShutdownGroup))
        let group = ServiceGroup(configuration: .init(services: children, logger: logger))
        do {
            try await group.run()
        } catch {
            // The consumer stopped because the cluster is not the state's: say that, not "fatal".
            let failure = intake.refusal ?? error
            logger.debug("pipeline ended", metadata: ["error": "\(failure)"])
            backlog.close()
            throw failure
        }
        logger.debug("pipeline ended", metadata: ["error": "none"])
        logger.info("mapbridge stopped cleanly")
    }
}

/// The pipeline and the applier it drives, as a service: synchronises with HAProxy, consumes,
/// applies, stores and commits until a graceful shutdown closes the backlog; then it finishes (or
/// abandons) the batch in flight, commits what HAProxy acknowledged, and returns.
struct PipelineService: Service {
    /// Makes the pipeline and its applier inside the service's task: they belong to that task
    /// alone, and are never handed over from another.
    let makePipeline: @Sendable () throws -> Pipeline

    func run() async throws {
        let pipeline = try makePipeline()
        let (configuration, logger, backlog) = (pipeline.configuration, pipeline.logger, pipeline.backlog)
        do {
            try await withGracefulShutdownHandler {
                try await pipeline.run()
            } onGracefulShutdown: {
                let leaving = configuration.kafka.membership == .group ? " and leaving the group" : ""
                logger.notice(
                    "shutting down: finishing the batch in flight, then storing the state, committing\(leaving) (a second signal exits at once)",
                    metadata: ["shutdown.timeout_ms": "\(configuration.shutdownTimeoutMilliseconds)"])
                backlog.close()
            }
        } catch {
            backlog.close()
            await pipeline.applier.disconnect()
            throw error
        }
        backlog.close()
        await pipeline.applier.disconnect()
        logger.debug("the pipeline stopped")
    }
}

/// A resource whose life is the group's: it waits for the graceful shutdown (or the group's
/// cancellation), then closes the resource, in its place in the group's shutdown order.
struct ClosingService: Service, CustomStringConvertible {
    let description: String
    let close: @Sendable () async -> Void
    let logger: Logger

    init(_ name: String, logger: Logger, close: @escaping @Sendable () async -> Void) {
        self.description = name
        self.logger = logger
        self.close = close
    }

    func run() async {
        try? await gracefulShutdown()
        await close()
        logger.debug("closed the \(description)")
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
