import ArgumentParser
import Bridge
import Consumer
import Foundation
import Kafka
import Logging
import Metrics
import Prometheus
import ServiceLifecycle

@main
struct MapBridgeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mapbridge",
        abstract: "Apply map-change events from Kafka to HAProxy maps over the runtime API.",
        version: "mapbridge \(MapBridgeVersion.current) (librdkafka \(librdkafkaVersion))",
        subcommands: [Run.self, Check.self, Diff.self, Publish.self],
        defaultSubcommand: nil)
}

/// Loads and validates a configuration file, printing every problem and exiting 2 when it is invalid.
func loadConfiguration(_ path: String) throws -> BridgeConfiguration {
    do {
        return try BridgeConfiguration.load(path: path)
    } catch let error as ConfigurationError {
        FileHandle.standardError.write(Data("mapbridge: \(error)\n".utf8))
        throw ExitCode(2)
    }
}

/// Sends every log line to standard error at the configured level, with its metadata.
func bootstrapLogging(level: Logger.Level) {
    LoggingSystem.bootstrap { label in
        var handler = StreamLogHandler.standardError(label: label)
        handler.logLevel = level
        return handler
    }
}

struct Run: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run the daemon.")

    @Option(name: .long, help: "The YAML configuration file.")
    var config: String

    @Flag(name: .long, help: "Start an embedded Kafka broker (librdkafka's mock cluster) with the configured topics, and use it.")
    var embeddedBroker = false

    @Option(name: .long, help: "With --embedded-broker: also write the broker's bootstrap address to this file.")
    var bootstrapFile: String?

    func run() async throws {
        // First: a signal during start-up must stop the daemon cleanly, not kill it or be lost.
        let escalation = SignalEscalation()
        defer { withExtendedLifetime(escalation) {} }
        let allocator = MallocTuning.apply()
        var configuration = try loadConfiguration(config)
        bootstrapLogging(level: configuration.logLevel)
        let logger = Logger(label: "mapbridge")
        logger.info("glibc's allocator set up", metadata: allocator.logMetadata.mapValues { .string($0) })
        var cluster: EmbeddedKafkaCluster?
        if embeddedBroker {
            let embedded = try EmbeddedKafkaCluster(logger: logger)
            for topic in configuration.topics { try embedded.createTopic(topic.name, partitions: 3) }
            if let deadLetter = configuration.deadLetterTopic { try embedded.createTopic(deadLetter, partitions: 1) }
            configuration.kafka.brokers = embedded.bootstrapServers
            print("embedded Kafka broker (librdkafka mock cluster) listening on \(embedded.bootstrapServers)")
            fflush(nil)
            if let bootstrapFile {
                try embedded.bootstrapServers.write(toFile: bootstrapFile, atomically: true, encoding: .utf8)
            }
            cluster = embedded
        }
        defer { withExtendedLifetime(cluster) {} }
        // Metrics go to a Prometheus registry, served with the health checks on http.listen.
        let registry = PrometheusCollectorRegistry()
        MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))
        let service = BridgeService(configuration: configuration, logger: logger)
        var services: [ServiceGroupConfiguration.ServiceConfiguration] = [
            .init(service: service, successTerminationBehavior: .gracefullyShutdownGroup, failureTerminationBehavior: .gracefullyShutdownGroup)
        ]
        if let listen = configuration.httpListen {
            let server = OperationsServer.make(listen: listen, registry: registry, status: service.status, logger: logger) { port in
                logger.info("serving /metrics, /healthz and /readyz", metadata: ["http.address": "\(listen.host):\(port)"])
            }
            // The endpoints end with the bridge; their failure (a port in use, say) stops it.
            services.append(.init(service: server, failureTerminationBehavior: .gracefullyShutdownGroup))
        }
        let group = ServiceGroup(
            configuration: .init(services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        escalation.attach(group)
        do {
            try await group.run()
        } catch let error as ForeignStateError {
            // Like a configuration error: restarting will not help, a person must decide.
            logger.critical("mapbridge refuses to start", metadata: ["error": "\(error)"])
            throw ExitCode(2)
        } catch {
            logger.critical("mapbridge stopped on an error", metadata: ["error": "\(error)"])
            throw ExitCode(1)
        }
    }
}
