import Consumer
import Core
import Events
import Kafka
import Logging
import Mapper

/// Everything mapbridge is configured with: one YAML file (the README's Configuration), with every setting
/// overridable from the environment. Defaults are documented on each field and in the README.
public struct BridgeConfiguration: Sendable, Equatable {
    public struct Kafka: Sendable, Equatable {
        /// `host:port[,host:port...]`. Default `127.0.0.1:9092`.
        public var brokers = "127.0.0.1:9092"
        /// One group per HAProxy instance: each needs every event. Default `mapbridge-<hostname>`.
        public var groupID: String
        /// Any librdkafka property (TLS, SASL, timeouts...), passed through; secrets are never logged.
        public var properties: [String: String] = [:]
        /// `direct` (default): this bridge assigns itself every partition of its topics and joins
        /// no group, so a restart consumes at once (a group member restarted after a crash waits
        /// for the group to time its dead predecessor out, 45 s by default); the group only keeps
        /// the committed offsets, for lag tools. `group`: a subscribed member of the group, which
        /// shares the partitions among the bridges serving one HAProxy (see the README).
        public var membership: Membership = .direct
        /// With `group` membership: `range` (default) or `roundrobin` (eager), or `cooperative-sticky` (incremental).
        /// Eager is the default: with librdkafka 2.0.2, commits during a cooperative rebalance make
        /// members lose their whole assignment (fixed only in 2.10.0), which we measured as repeated
        /// "assignment lost" rebalances under load; see the README.
        public var assignmentStrategy: AssignmentStrategy = .range
        /// How long a rebalance may wait for the batch in flight before giving up its partitions
        /// without committing them. Default 10000.
        public var revokeTimeoutMilliseconds = 10000
    }

    public struct HAProxy: Sendable, Equatable {
        /// `unix:///path` or `tcp://host:port`. Default `unix:///run/haproxy/admin.sock`.
        public var socket = "unix:///run/haproxy/admin.sock"
        /// HAProxy's `tune.bufsize`; bounds command and payload sizes. Default 16384.
        public var bufsize = 16384
        /// How long HAProxy may stay silent with commands unanswered. Default 15000.
        public var timeoutMilliseconds = 15000
        public var connectTimeoutMilliseconds = 5000
        /// Pipelined single-line commands in flight. Default 128.
        public var maxInFlight = 128
        /// `set timeout cli` for the session, in seconds. Default 3600.
        public var cliTimeoutSeconds = 3600
        /// How often to ask `show info` whether HAProxy restarted or reloaded. Default 5000.
        public var checkIntervalMilliseconds = 5000
        /// Reconnect backoff: first and longest wait (capped exponential, with jitter). Defaults 100 and 5000.
        public var reconnectInitialMilliseconds = 100
        public var reconnectMaxMilliseconds = 5000
    }

    public struct Topic: Sendable, Equatable {
        public enum Format: String, Sendable, Equatable, CaseIterable { case json, kv, record, debezium }
        public var name: String
        public var format: Format
        /// For `kv`, `record` and `debezium` topics: the map (or ACL: `acl:` in the file) every
        /// message of the topic changes.
        public var map: String?
        /// For `record` and `debezium` topics: the fields (columns) holding the key and value.
        public var fields: RecordFields?

        public init(name: String, format: Format, map: String? = nil, fields: RecordFields? = nil) {
            self.name = name
            self.format = format
            self.map = map
            self.fields = fields
        }
    }

    /// A map (`maps:`) or an ACL file (`acls:`, ``kind`` `.acl`) the bridge manages.
    public struct Map: Sendable, Equatable {
        public var name: String
        /// The map as HAProxy names it (usually its file's path).
        public var path: String
        /// HAProxy's match method (`map_<type>`): str (default), beg, sub, dir, dom, end, reg, regm, int, ip.
        public var match: MatchType = .str
        /// What HAProxy parses values as (`map_<type>_<value_type>`): str (default), int, ip.
        public var valueType: ValueType = .str
        /// Write the desired state to the map's file too (`path`), so that HAProxy loads it when it
        /// starts: for a bridge running beside HAProxy. Default true.
        public var writeMapFile = true
        /// A map, or an ACL file whose entries are patterns without values.
        public var kind: MapKind = .map

        public init(name: String, path: String, match: MatchType = .str, valueType: ValueType = .str, writeMapFile: Bool = true, kind: MapKind = .map) {
            self.name = name
            self.path = path
            self.match = match
            self.valueType = valueType
            self.writeMapFile = writeMapFile
            self.kind = kind
        }

        /// The map as the HAProxy side knows it.
        public var definition: MapDefinition { MapDefinition(name: name, path: path, match: match, valueType: valueType, kind: kind) }

        /// Where its settings are in the configuration (`maps.hosts`, `acls.blocklist`).
        public var configurationPath: String { "\(kind.section).\(name)" }
    }

    public struct Batching: Sendable, Equatable {
        /// A batch closes when it holds this many changes... Default 10000.
        public var maxEvents = 10000
        /// ...or this long after its first event arrived. Default 10.
        public var maxWaitMilliseconds = 10
    }

    public struct BacklogLimits: Sendable, Equatable {
        /// Consumed events waiting for HAProxy before partitions are paused. Default 200000.
        public var maxEvents = 200_000
        /// The same bound in bytes (keys, values and bookkeeping). Default 33554432 (32 MiB).
        public var maxBytes = 32 << 20
    }

    public var kafka: Kafka
    public var haproxy = HAProxy()
    public var topics: [Topic] = []
    /// Every map and ACL file managed, in configuration order (maps, then ACLs): their names are
    /// one namespace, and an index into this list names one everywhere (events, state, metrics).
    public var maps: [Map] = []
    public var batch = Batching()
    public var backlog = BacklogLimits()
    /// How often acknowledged offsets are committed, in milliseconds. Default 1000.
    public var commitIntervalMilliseconds = 1000
    /// Where invalid events go (original key, value and headers plus reason headers); none: logged and skipped.
    public var deadLetterTopic: String?
    /// What happens to a dead letter the broker will not take (refused for good, or still failing
    /// after `dead_letter.retry_timeout_ms`), like Kafka Connect's `errors.tolerance`.
    public enum DeadLetterFailure: String, Sendable, Equatable, CaseIterable {
        /// Stop the bridge with an error naming the letter (exit status 1): nothing is lost, and
        /// the letter's source offset stays uncommitted until an operator fixes the topic.
        case stop
        /// Log it, count it (`mapbridge_dead_letters_dropped_total`) and commit past it.
        case skip
    }
    /// Default `stop`.
    public var deadLetterFailure = DeadLetterFailure.stop
    /// How long a letter the broker refuses with a retriable error is sent again (with backoff)
    /// before `on_failure` applies. A letter refused for good (too large, not authorised) does not
    /// wait. Default 60000.
    public var deadLetterRetryTimeoutMilliseconds = 60000
    /// Where `/metrics`, `/healthz` and `/readyz` are served (`http.listen`, default
    /// 127.0.0.1:9464); nil: not served.
    public var httpListen: Listen?

    public struct Listen: Sendable, Equatable {
        public var host: String
        public var port: Int
        public init(host: String, port: Int) {
            self.host = host
            self.port = port
        }
    }
    /// How long a graceful shutdown may spend finishing the batch in flight. Default 10000.
    public var shutdownTimeoutMilliseconds = 10000
    /// Where the desired state of every map is kept, in a folder per consumer group
    /// (``groupStateDirectory``). Default `/var/lib/mapbridge`.
    public var stateDirectory = "/var/lib/mapbridge"
    public var logLevel: Logger.Level = .info

    public init(groupID: String) {
        kafka = Kafka(groupID: groupID)
    }

    /// Where this bridge keeps its state: a folder of `state.directory` named after the consumer
    /// group, so that bridges of different groups (two HAProxy instances on one host, say) never
    /// share state even with the default `state.directory`. Characters other than letters,
    /// digits, `.`, `_` and `-` become `_`; the identity file inside records the exact group.
    public var groupStateDirectory: String {
        var name = String(
            kafka.groupID.unicodeScalars.map {
                $0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0) || "._-".unicodeScalars.contains($0)) ? Character($0) : "_"
            })
        if name.hasPrefix(".") { name = "_" + name.dropFirst() }
        return "\(stateDirectory.hasSuffix("/") ? String(stateDirectory.dropLast()) : stateDirectory)/\(name)"
    }

    /// The maps as the HAProxy side knows them, in configuration order.
    public var mapDefinitions: [MapDefinition] {
        maps.map(\.definition)
    }

    /// How each topic's messages are decoded.
    public var topicFormats: [String: EventFormat] {
        var formats: [String: EventFormat] = [:]
        for topic in topics {
            switch topic.format {
            case .json: formats[topic.name] = .json
            case .kv: formats[topic.name] = .kv(map: maps.firstIndex { $0.name == topic.map } ?? 0)
            case .record:
                formats[topic.name] = .record(
                    map: maps.firstIndex { $0.name == topic.map } ?? 0, topic.fields ?? RecordFields(keyField: "key", valueField: "value"))
            case .debezium:
                formats[topic.name] = .debezium(
                    map: maps.firstIndex { $0.name == topic.map } ?? 0, topic.fields ?? RecordFields(keyField: "key", valueField: "value"))
            }
        }
        return formats
    }

    /// The longest map path, in bytes: it takes room in every command.
    public var longestMapPath: Int { maps.map(\.path.utf8.count).max() ?? 0 }

    public var entryRules: EntryRules { EntryRules(bufsize: haproxy.bufsize, longestMapPath: longestMapPath) }

    public var applierOptions: ApplierOptions {
        var options = ApplierOptions(bufsize: haproxy.bufsize, longestMapPath: longestMapPath)
        options.connection.connectTimeout = .milliseconds(Int64(haproxy.connectTimeoutMilliseconds))
        options.connection.responseTimeout = .milliseconds(Int64(haproxy.timeoutMilliseconds))
        options.connection.cliTimeoutSeconds = haproxy.cliTimeoutSeconds
        options.connection.window = haproxy.maxInFlight
        return options
    }

    public var consumerConfiguration: KafkaConsumer.Configuration {
        var configuration = KafkaConsumer.Configuration(bootstrapServers: kafka.brokers, groupID: kafka.groupID, topics: topics.map(\.name))
        configuration.membership = kafka.membership
        configuration.assignmentStrategy = kafka.assignmentStrategy
        configuration.properties = KafkaSettings(kafka.properties)
        return configuration
    }
}

extension MapKind {
    /// The configuration's section for this kind: `maps` or `acls`.
    var section: String { self == .acl ? "acls" : "maps" }
    /// The setting that writes the file HAProxy loads: `write_map_file` or `write_acl_file`.
    var writeFileSetting: String { self == .acl ? "write_acl_file" : "write_map_file" }
}
