import Consumer
import Core
import Foundation
import Kafka
import Logging
import Mapper

/// What `mapbridge check` and `mapbridge diff` report: the daemon's view of the world, read
/// without changing anything.
public enum Inspection {
    /// One line of `check`: what was checked, whether it is fine, and the detail.
    public struct Finding: Sendable, Equatable {
        public var subject: String
        public var ok: Bool
        public var detail: String
    }

    /// Checks that everything the daemon needs is there: the state directory, HAProxy (reachable,
    /// every configured map loaded) and Kafka (reachable, every topic present).
    public static func check(_ configuration: BridgeConfiguration, logger: Logger) async -> [Finding] {
        var findings: [Finding] = [
            Finding(subject: "configuration", ok: true, detail: Self.counted(configuration))
        ]
        let store = StateStore(configuration: configuration, owners: OwnerTable(), logger: logger)
        do {
            try await store.openDirectory()
            let stored = try await store.load()
            let known = stored.filter { $0.contents != nil }.count
            findings.append(
                Finding(
                    subject: "state", ok: true,
                    detail: "\(store.directory) is writable and this bridge's; stored state for \(known) of \(stored.count) maps and ACLs"))
        } catch {
            findings.append(Finding(subject: "state", ok: false, detail: "\(error)"))
        }
        do {
            let endpoint = try RuntimeEndpoint(parsing: configuration.haproxy.socket)
            let connection = try await RuntimeConnection.connect(to: endpoint, options: configuration.applierOptions.connection)
            let info: HAProxyInfo
            var loaded: [MapKind: Set<String>] = [:]
            do {
                info = try HAProxyInfo(parsing: try await connection.execute(RuntimeCommand.showInfo()).text)
                for kind in Set(configuration.maps.map(\.kind)) { loaded[kind] = try await connection.loadedPaths(of: kind) }
            } catch {
                await connection.close()
                throw error
            }
            await connection.close()
            findings.append(
                Finding(
                    subject: "haproxy", ok: info.isSupported,
                    detail: info.isSupported
                        ? "\(configuration.haproxy.socket): HAProxy \(info.version), pid \(info.pid); \(info.behaviour.joined(separator: "; "))"
                        : "\(configuration.haproxy.socket): HAProxy \(info.version) is not supported (2.4 or later needed)"))
            for map in configuration.maps {
                let present = loaded[map.kind]?.contains(map.path) ?? false
                let use = map.kind == .acl ? "an acl line (acl NAME <fetch> -f \(map.path))" : "a map converter"
                findings.append(
                    Finding(
                        subject: map.definition.described, ok: present,
                        detail: present ? "\(map.path) is loaded" : "HAProxy has not loaded \(map.path): use it in \(use) of haproxy.cfg"))
            }
        } catch {
            findings.append(Finding(subject: "haproxy", ok: false, detail: "\(error)"))
        }
        do {
            var topics = configuration.topics.map(\.name)
            if let deadLetter = configuration.deadLetterTopic { topics.append(deadLetter) }
            let counts = try KafkaMetadata.partitionCounts(
                bootstrapServers: configuration.kafka.brokers, topics: topics, properties: KafkaSettings(configuration.kafka.properties), logger: logger)
            findings.append(Finding(subject: "kafka", ok: true, detail: "\(configuration.kafka.brokers) answered"))
            for topic in topics {
                let count = counts[topic] ?? 0
                findings.append(
                    Finding(
                        subject: "topic \(topic)", ok: count > 0,
                        detail: count > 0 ? "\(count) partitions" : "does not exist (or is not visible to this client)"))
            }
        } catch {
            findings.append(Finding(subject: "kafka", ok: false, detail: "\(error)"))
        }
        return findings
    }

    /// How one map's stored desired state and HAProxy's live map differ.
    public struct MapDifference: Sendable {
        public var map: String
        /// The stored desired state's entries; nil when nothing is stored yet (nothing to compare).
        public var desired: Int?
        public var live: Int
        public var missing: [String]
        public var extra: [String]
        public var different: [String]
        public var duplicated: [String]
        public var outOfOrder: Bool
        /// Nothing differs (or there is no stored state to compare).
        public var isExact: Bool

        init(map: String, unstoredWithLive live: Int) {
            self.map = map
            desired = nil
            self.live = live
            (missing, extra, different, duplicated, outOfOrder, isExact) = ([], [], [], [], false, true)
        }

        init(map: String, desired: Int, comparison: MapComparison) {
            self.map = map
            self.desired = desired
            live = comparison.liveCount
            missing = comparison.missing.map(\.string).sorted()
            extra = comparison.extra.map(\.string).sorted()
            different = comparison.different.map(\.string).sorted()
            duplicated = comparison.duplicated.map(\.string).sorted()
            outOfOrder = comparison.outOfOrder
            isExact = comparison.isExact
        }
    }

    /// Compares each map's stored desired state with HAProxy's live map. A map with no stored
    /// state yet is reported with `desired` nil (nothing to compare).
    /// "2 maps, 1 ACL, 3 topics".
    static func counted(_ configuration: BridgeConfiguration) -> String {
        func count(_ number: Int, _ noun: String) -> String { "\(number) \(noun)\(number == 1 ? "" : "s")" }
        let acls = configuration.maps.filter { $0.kind == .acl }.count
        return [count(configuration.maps.count - acls, "map"), acls > 0 ? count(acls, "ACL") : nil, count(configuration.topics.count, "topic")]
            .compactMap { $0 }.joined(separator: ", ")
    }

    public static func diff(_ configuration: BridgeConfiguration, logger: Logger) async throws -> [MapDifference] {
        let store = StateStore(configuration: configuration, owners: OwnerTable(), logger: logger)
        try await store.openDirectory(readOnly: true)
        let stored = try await store.load()
        let endpoint = try RuntimeEndpoint(parsing: configuration.haproxy.socket)
        let connection = try await RuntimeConnection.connect(to: endpoint, options: configuration.applierOptions.connection)
        var result: [MapDifference] = []
        do {
            for (map, state) in zip(configuration.mapDefinitions, stored) {
                let dump = try await connection.execute(RuntimeCommand.showMap(map.path, kind: map.kind))
                try MapApplier.checkKnownMap(dump, map)
                let live = MapDump(body: dump.body)
                guard let desired = state.contents else {
                    result.append(MapDifference(map: map.name, unstoredWithLive: Array(live).count))
                    continue
                }
                let comparison = MapComparison.compare(desired: desired, entries: live, orderSensitive: map.isOrderSensitive)
                result.append(MapDifference(map: map.name, desired: desired.count, comparison: comparison))
            }
        } catch {
            await connection.close()
            throw error
        }
        await connection.close()
        return result
    }
}
