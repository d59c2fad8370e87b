import ArgumentParser
import Bridge
import Consumer
import Foundation
import Kafka
import Logging
import Synchronization

struct Publish: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Publish map changes read from stdin as events (the safe replacement for a socat loop).",
        discussion: """
            Each line of stdin is one change of --map: "key value" sets the key (the value is the rest of the \
            line), "-key" deletes it, and a line starting with { or [ is a JSON event published as it is. Empty \
            lines and lines starting with # are skipped. Every change is checked with the daemon's own rules \
            first; invalid lines are reported with their line number and not published. Messages are keyed by \
            map key, so all changes of a key stay in order on one partition. Exits 0 only when every line was \
            valid and every message was acknowledged by Kafka.
            """)

    @Option(name: .long, help: "The YAML configuration file.")
    var config: String

    @Option(name: .long, help: "The map (or ACL: a pattern per line, -pattern deletes) the lines change.")
    var map: String

    @Option(name: .long, help: "The topic to publish to (default: the kv topic bound to the map, else the first json topic).")
    var topic: String?

    @Option(name: .long, help: "Kafka bootstrap servers (default: kafka.brokers of the configuration).")
    var brokers: String?

    func run() async throws {
        var configuration = try loadConfiguration(config)
        if let brokers { configuration.kafka.brokers = brokers }
        bootstrapLogging(level: .warning)
        let logger = Logger(label: "mapbridge.publish")
        let parser: ChangeLineParser
        do {
            parser = try ChangeLineParser(configuration: configuration, map: map)
        } catch let error as ConfigurationError {
            FileHandle.standardError.write(Data("mapbridge: \(error)\n".utf8))
            throw ExitCode(2)
        }
        let target: BridgeConfiguration.Topic
        if let topic {
            guard let configured = configuration.topics.first(where: { $0.name == topic }) else {
                FileHandle.standardError.write(Data("mapbridge: --topic '\(topic)' is not one of the configured topics\n".utf8))
                throw ExitCode(2)
            }
            target = configured
        } else if let kv = configuration.topics.first(where: { $0.format == .kv && $0.map == map }) {
            target = kv
        } else if let json = configuration.topics.first(where: { $0.format == .json }) {
            target = json
        } else {
            FileHandle.standardError.write(Data("mapbridge: no json topic, and no kv topic bound to map '\(map)'\n".utf8))
            throw ExitCode(2)
        }
        if target.format == .kv && target.map != map {
            FileHandle.standardError.write(Data("mapbridge: topic '\(target.name)' carries map '\(target.map ?? "?")', not '\(map)'\n".utf8))
            throw ExitCode(2)
        }
        let producer = try KafkaProducer(
            bootstrapServers: configuration.kafka.brokers, properties: KafkaSettings(configuration.kafka.properties), logger: logger)
        let failures = Mutex(0)
        var published = 0
        var invalid = 0
        var lineNumber = 0
        while let line = readLine(strippingNewline: true) {
            lineNumber += 1
            let key: String?
            let value: String?
            switch parser.parse(line[...]) {
            case .skip:
                continue
            case .invalid(let reason):
                invalid += 1
                FileHandle.standardError.write(Data("line \(lineNumber): \(reason); not published\n".utf8))
                continue
            case .json(let event):
                guard target.format == .json else {
                    invalid += 1
                    FileHandle.standardError.write(Data("line \(lineNumber): a JSON event cannot go to kv topic \(target.name); not published\n".utf8))
                    continue
                }
                key = nil
                value = event
            case .change(let changeKey, let changeValue):
                key = changeKey
                // On a kv topic an ACL's pattern is added by any value other than a tombstone.
                value =
                    target.format == .json
                    ? parser.jsonEvent(key: changeKey, value: changeValue) : parser.map.kind == .acl ? changeValue.map { _ in "1" } : changeValue
            }
            try producer.produce(topic: target.name, key: key.map { Array($0.utf8) }, value: value.map { Array($0.utf8) }) { result in
                if case .failure = result { failures.withLock { $0 += 1 } }
            }
            published += 1
        }
        try producer.flush(timeoutMilliseconds: 60000)
        await producer.close()
        let failed = failures.withLock { $0 }
        let count = published - failed
        print(
            "published \(count) change\(count == 1 ? "" : "s") of \(parser.map.described) to topic \(target.name)"
                + (invalid > 0 ? "; \(invalid) invalid lines skipped" : "") + (failed > 0 ? "; \(failed) not acknowledged by Kafka" : ""))
        if invalid > 0 || failed > 0 { throw ExitCode(1) }
    }
}
