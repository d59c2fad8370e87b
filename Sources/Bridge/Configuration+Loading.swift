import Consumer
import Core
import Events
import Foundation
import Kafka
import Logging
import Mapper
import Yams

/// Everything wrong with a configuration, each problem with its path (and line, when from the file).
public struct ConfigurationError: Error, CustomStringConvertible, Sendable, Equatable {
    public var problems: [String]

    public var description: String {
        "invalid configuration:\n" + problems.map { "  - \($0)" }.joined(separator: "\n")
    }
}

/// A configuration tree: the YAML file's, then patched by environment overrides.
indirect enum ConfigNode: Sendable {
    case scalar(String, origin: String)
    case null(origin: String)
    case mapping([(key: String, value: ConfigNode)], origin: String)
    case sequence([ConfigNode], origin: String)

    var origin: String {
        switch self {
        case .scalar(_, let origin), .null(let origin), .mapping(_, let origin), .sequence(_, let origin): return origin
        }
    }

    init(_ node: Node, file: String) {
        let origin = node.mark.map { "\(file):\($0.line)" } ?? file
        switch node {
        case .scalar(let scalar):
            if scalar.style == .plain && ["", "~", "null", "Null", "NULL"].contains(scalar.string) {
                self = .null(origin: origin)
            } else {
                self = .scalar(scalar.string, origin: origin)
            }
        case .mapping(let mapping):
            self = .mapping(mapping.map { (key: $0.key.string ?? "\($0.key)", value: ConfigNode($0.value, file: file)) }, origin: origin)
        case .sequence(let sequence):
            self = .sequence(sequence.map { ConfigNode($0, file: file) }, origin: origin)
        case .alias:
            self = .null(origin: origin)
        }
    }

    /// Sets the value at `path`, creating mappings on the way.
    mutating func set(_ path: ArraySlice<String>, _ value: ConfigNode) {
        guard let first = path.first else {
            self = value
            return
        }
        var entries: [(key: String, value: ConfigNode)]
        let origin: String
        if case .mapping(let existing, let existingOrigin) = self {
            entries = existing
            origin = existingOrigin
        } else {
            entries = []
            origin = value.origin
        }
        if let index = entries.firstIndex(where: { $0.key == first }) {
            entries[index].value.set(path.dropFirst(), value)
        } else {
            var child = ConfigNode.null(origin: value.origin)
            child.set(path.dropFirst(), value)
            entries.append((first, child))
        }
        self = .mapping(entries, origin: origin)
    }

    func child(_ key: String) -> ConfigNode? {
        guard case .mapping(let entries, _) = self else { return nil }
        return entries.last { $0.key == key }?.value
    }
}

extension BridgeConfiguration {
    /// Reads, overrides from the environment and validates a configuration file; every problem is
    /// reported at once, with its path, before anything connects.
    public static func load(path: String, environment: [String: String] = ProcessInfo.processInfo.environment) throws -> BridgeConfiguration {
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw ConfigurationError(problems: ["\(path): cannot read the configuration file (\(error.localizedDescription))"])
        }
        return try parse(yaml: text, file: path, environment: environment)
    }

    /// Like ``load(path:environment:)`` for YAML text.
    public static func parse(yaml text: String, file: String = "<config>", environment: [String: String] = [:]) throws -> BridgeConfiguration {
        var root: ConfigNode
        do {
            if let node = try Yams.compose(yaml: text) {
                root = ConfigNode(node, file: file)
            } else {
                root = .mapping([], origin: file)
            }
        } catch {
            throw ConfigurationError(problems: ["\(file): not valid YAML: \(error)"])
        }
        var problems: [String] = []
        applyEnvironment(environment, to: &root, problems: &problems)
        var decoder = ConfigDecoder()
        let configuration = decoder.decode(root)
        problems += decoder.problems
        if !problems.isEmpty { throw ConfigurationError(problems: problems) }
        return configuration
    }

    /// The environment variables that override settings, and the paths they set.
    static let environmentPaths: [String: [String]] = {
        var table: [String: [String]] = [:]
        let scalars = [
            "kafka.brokers", "kafka.group_id", "kafka.membership", "kafka.assignment_strategy", "kafka.revoke_timeout_ms",
            "haproxy.socket", "haproxy.bufsize", "haproxy.timeout_ms", "haproxy.connect_timeout_ms", "haproxy.max_in_flight",
            "haproxy.cli_timeout_s", "haproxy.check_interval_ms", "haproxy.reconnect.initial_ms", "haproxy.reconnect.max_ms",
            "batch.max_events", "batch.max_wait_ms", "backlog.max_events", "backlog.max_bytes", "commit.interval_ms",
            "dead_letter.topic", "dead_letter.on_failure", "dead_letter.retry_timeout_ms", "shutdown.timeout_ms", "log.level", "state.directory", "http.listen",
        ]
        for path in scalars {
            table["MAPBRIDGE_" + path.uppercased().replacingOccurrences(of: ".", with: "_")] = path.split(separator: ".").map(String.init)
        }
        return table
    }()

    static func environmentName(forMap name: String, _ field: String, section: String = "MAPS") -> String {
        let normalized = String(name.uppercased().map { $0.isLetter || $0.isNumber ? $0 : "_" })
        return "MAPBRIDGE_\(section)_\(normalized)_\(field.uppercased())"
    }

    static func applyEnvironment(_ environment: [String: String], to root: inout ConfigNode, problems: inout [String]) {
        var declaredMaps: [String: [String]] = [:]
        if case .mapping(let entries, _)? = root.child("maps") {
            for (name, _) in entries {
                for field in ["path", "type", "value_type", "write_map_file"] {
                    declaredMaps[environmentName(forMap: name, field)] = ["maps", name, field]
                }
            }
        }
        if case .mapping(let entries, _)? = root.child("acls") {
            for (name, _) in entries {
                for field in ["path", "type", "write_acl_file"] {
                    declaredMaps[environmentName(forMap: name, field, section: "ACLS")] = ["acls", name, field]
                }
            }
        }
        for (name, value) in environment.sorted(by: { $0.key < $1.key }) where name.hasPrefix("MAPBRIDGE_") {
            let origin = "environment \(name)"
            if let path = environmentPaths[name] ?? declaredMaps[name] {
                root.set(path[...], .scalar(value, origin: origin))
            } else if name.hasPrefix("MAPBRIDGE_KAFKA_PROPERTY_") {
                let property = name.dropFirst("MAPBRIDGE_KAFKA_PROPERTY_".count).lowercased().replacingOccurrences(of: "_", with: ".")
                root.set(["kafka", "properties", property], .scalar(value, origin: origin))
            } else if name == "MAPBRIDGE_TOPICS" {
                // name:format[:map],... or name:format:acl:NAME (or name:format:map:NAME).
                var topics: [ConfigNode] = []
                for item in value.split(separator: ",") {
                    let parts = item.split(separator: ":", omittingEmptySubsequences: false).map { String($0).trimmingCharacters(in: .whitespaces) }
                    var entries: [(key: String, value: ConfigNode)] = [("name", .scalar(parts[0], origin: origin))]
                    if parts.count > 1 { entries.append(("format", .scalar(parts[1], origin: origin))) }
                    if parts.count == 3 { entries.append(("map", .scalar(parts[2], origin: origin))) }
                    if parts.count == 4 && ["map", "acl"].contains(parts[2]) { entries.append((parts[2], .scalar(parts[3], origin: origin))) }
                    if parts.count > 4 || (parts.count == 4 && !["map", "acl"].contains(parts[2])) {
                        problems.append("\(origin): '\(item)' is not name:format[:map], name:format:map:NAME or name:format:acl:NAME")
                    }
                    topics.append(.mapping(entries, origin: origin))
                }
                root.set(["topics"], .sequence(topics, origin: origin))
            } else if ["MAPBRIDGE_CONFIG", "MAPBRIDGE_BIN"].contains(name) {
                continue
            } else {
                problems.append("\(origin): not a mapbridge setting (see the README's configuration reference)")
            }
        }
    }
}

/// Reads a configuration tree into ``BridgeConfiguration``, collecting every problem.
struct ConfigDecoder {
    var problems: [String] = []

    mutating func problem(_ path: String, _ node: ConfigNode?, _ message: String) {
        problems.append("\(path): \(message)" + (node.map { " (\($0.origin))" } ?? ""))
    }

    /// The entries of a mapping, reporting keys that are not `allowed`.
    mutating func section(_ node: ConfigNode?, _ path: String, allowed: Set<String>) -> [String: ConfigNode] {
        guard let node else { return [:] }
        switch node {
        case .null: return [:]
        case .mapping(let entries, _):
            var result: [String: ConfigNode] = [:]
            for (key, value) in entries {
                let childPath = path.isEmpty ? key : "\(path).\(key)"
                if !allowed.contains(key) {
                    let suggestion =
                        allowed.min { distance($0, key) < distance($1, key) }.flatMap { distance($0, key) <= 3 ? " (did you mean '\($0)'?)" : nil } ?? ""
                    problem(childPath, value, "unknown setting\(suggestion)")
                } else if result[key] != nil {
                    problem(childPath, value, "set twice")
                } else {
                    result[key] = value
                }
            }
            return result
        default:
            problem(path, node, "expected a mapping of settings")
            return [:]
        }
    }

    mutating func string(_ node: ConfigNode?, _ path: String) -> String? {
        guard let node else { return nil }
        switch node {
        case .scalar(let text, _): return text
        case .null: return nil
        default:
            problem(path, node, "expected a single value")
            return nil
        }
    }

    mutating func string(_ node: ConfigNode?, _ path: String, nonEmpty: Bool, default value: String) -> String {
        guard let text = string(node, path) else { return value }
        if nonEmpty && text.trimmingCharacters(in: .whitespaces).isEmpty {
            problem(path, node, "must not be empty")
            return value
        }
        return text
    }

    mutating func int(_ node: ConfigNode?, _ path: String, default value: Int, range: ClosedRange<Int>) -> Int {
        guard let text = string(node, path) else { return value }
        guard let number = Int(text.replacingOccurrences(of: "_", with: "")) else {
            problem(path, node, "expected a whole number, not '\(text)'")
            return value
        }
        guard range.contains(number) else {
            problem(path, node, "\(number) is out of range (\(range.lowerBound)...\(range.upperBound))")
            return value
        }
        return number
    }

    mutating func bool(_ node: ConfigNode?, _ path: String, default value: Bool) -> Bool {
        guard let text = string(node, path) else { return value }
        switch text.lowercased() {
        case "true", "yes", "on", "1": return true
        case "false", "no", "off", "0": return false
        default:
            problem(path, node, "expected true or false, not '\(text)'")
            return value
        }
    }

    mutating func choice<T: RawRepresentable & CaseIterable>(_ node: ConfigNode?, _ path: String, default value: T) -> T where T.RawValue == String {
        guard let text = string(node, path) else { return value }
        guard let chosen = T(rawValue: text) else {
            problem(path, node, "'\(text)' is not one of \(T.allCases.map(\.rawValue).joined(separator: ", "))")
            return value
        }
        return chosen
    }

    /// A YAML scalar as the JSON value it stands for: `true`/`false`, a number, `null`, else text.
    static func scalar(_ text: String) -> JSONScalar {
        switch text {
        case "true": return .bool(true)
        case "false": return .bool(false)
        case "null", "~": return .null
        default: return Double(text).map { .number($0) } ?? .string(text)
        }
    }

    mutating func decode(_ root: ConfigNode) -> BridgeConfiguration {
        let top = section(
            root, "", allowed: ["kafka", "haproxy", "topics", "maps", "acls", "batch", "backlog", "commit", "dead_letter", "shutdown", "log", "state", "http"])
        let host = ProcessInfo.processInfo.hostName.split(separator: ".").first.map(String.init) ?? "localhost"
        var configuration = BridgeConfiguration(groupID: "mapbridge-\(host)")

        let kafka = section(top["kafka"], "kafka", allowed: ["brokers", "group_id", "properties", "membership", "assignment_strategy", "revoke_timeout_ms"])
        configuration.kafka.brokers = string(kafka["brokers"], "kafka.brokers", nonEmpty: true, default: configuration.kafka.brokers)
        configuration.kafka.groupID = string(kafka["group_id"], "kafka.group_id", nonEmpty: true, default: configuration.kafka.groupID)
        configuration.kafka.membership = choice(kafka["membership"], "kafka.membership", default: configuration.kafka.membership)
        configuration.kafka.assignmentStrategy = choice(
            kafka["assignment_strategy"], "kafka.assignment_strategy", default: configuration.kafka.assignmentStrategy)
        configuration.kafka.revokeTimeoutMilliseconds = int(kafka["revoke_timeout_ms"], "kafka.revoke_timeout_ms", default: 10000, range: 100...600_000)
        if let properties = kafka["properties"] {
            if case .mapping(let entries, _) = properties {
                for (name, value) in entries {
                    let path = "kafka.properties.\(name)"
                    guard let text = string(value, path) else { continue }
                    let reserved = [
                        "enable.auto.commit", "enable.auto.offset.store", "group.id", "bootstrap.servers", "enable.partition.eof",
                        "partition.assignment.strategy",
                    ]
                    if reserved.contains(name) {
                        problem(path, value, "managed by mapbridge (use the kafka settings, or it is fixed for at-least-once delivery)")
                    } else {
                        configuration.kafka.properties[name] = text
                    }
                }
            } else if case .null = properties {
            } else {
                problem("kafka.properties", properties, "expected a mapping of librdkafka properties")
            }
        }

        let haproxy = section(
            top["haproxy"], "haproxy",
            allowed: ["socket", "bufsize", "timeout_ms", "connect_timeout_ms", "max_in_flight", "cli_timeout_s", "check_interval_ms", "reconnect"])
        configuration.haproxy.socket = string(haproxy["socket"], "haproxy.socket", nonEmpty: true, default: configuration.haproxy.socket)
        do {
            _ = try RuntimeEndpoint(parsing: configuration.haproxy.socket)
        } catch {
            problem("haproxy.socket", haproxy["socket"], error.reason)
        }
        configuration.haproxy.bufsize = int(haproxy["bufsize"], "haproxy.bufsize", default: 16384, range: 4096...1 << 24)
        configuration.haproxy.timeoutMilliseconds = int(haproxy["timeout_ms"], "haproxy.timeout_ms", default: 15000, range: 100...3_600_000)
        configuration.haproxy.connectTimeoutMilliseconds = int(haproxy["connect_timeout_ms"], "haproxy.connect_timeout_ms", default: 5000, range: 10...600_000)
        configuration.haproxy.maxInFlight = int(haproxy["max_in_flight"], "haproxy.max_in_flight", default: 128, range: 1...10_000)
        configuration.haproxy.cliTimeoutSeconds = int(haproxy["cli_timeout_s"], "haproxy.cli_timeout_s", default: 3600, range: 10...2_000_000)
        configuration.haproxy.checkIntervalMilliseconds = int(haproxy["check_interval_ms"], "haproxy.check_interval_ms", default: 5000, range: 100...3_600_000)
        let reconnect = section(haproxy["reconnect"], "haproxy.reconnect", allowed: ["initial_ms", "max_ms"])
        configuration.haproxy.reconnectInitialMilliseconds = int(reconnect["initial_ms"], "haproxy.reconnect.initial_ms", default: 100, range: 1...600_000)
        configuration.haproxy.reconnectMaxMilliseconds = int(reconnect["max_ms"], "haproxy.reconnect.max_ms", default: 5000, range: 1...3_600_000)
        if configuration.haproxy.reconnectMaxMilliseconds < configuration.haproxy.reconnectInitialMilliseconds {
            problem("haproxy.reconnect.max_ms", reconnect["max_ms"], "must not be below haproxy.reconnect.initial_ms")
        }

        // Maps and ACLs before topics: topics refer to them.
        for kind in [MapKind.map, .acl] {
            let (section, noun, writeFile) = (kind.section, kind.noun, kind.writeFileSetting)
            switch top[section] {
            case .mapping(let entries, _)?:
                for (name, value) in entries {
                    let path = "\(section).\(name)"
                    if name.isEmpty || name.contains(where: { $0.isWhitespace }) {
                        problem(path, value, "a\(kind == .acl ? "n" : "") \(noun) name must be a non-empty word")
                    }
                    if let other = configuration.maps.first(where: { $0.name == name }) {
                        problem(path, value, "'\(name)' is also the name of \(other.definition.described): maps and ACLs share one namespace")
                    }
                    let allowed: Set<String> = kind == .acl ? ["path", "type", writeFile] : ["path", "type", "value_type", writeFile]
                    let fields = self.section(value, path, allowed: allowed)
                    guard let mapPath = string(fields["path"], "\(path).path"), !mapPath.isEmpty else {
                        problem("\(path).path", value, "required: the \(noun) file as HAProxy names it (its path)")
                        continue
                    }
                    if mapPath.contains(where: { $0.isWhitespace || $0.isNewline }) || mapPath.hasPrefix("#") {
                        problem("\(path).path", fields["path"], "must be a file path without spaces (HAProxy's \(noun) identifier)")
                    }
                    var map = BridgeConfiguration.Map(name: name, path: mapPath, kind: kind)
                    map.match = choice(fields["type"], "\(path).type", default: MatchType.str)
                    if kind == .acl && map.match == MatchType.regm {
                        problem("\(path).type", fields["type"], "regm is a map match (it returns a value); an ACL matches with reg")
                    }
                    if kind == .map { map.valueType = choice(fields["value_type"], "\(path).value_type", default: ValueType.str) }
                    map.writeMapFile = bool(fields[writeFile], "\(path).\(writeFile)", default: true)
                    configuration.maps.append(map)
                }
            case nil, .null?:
                break
            case let other?:
                problem(section, other, "expected a mapping of \(noun) names to their settings")
            }
        }
        if configuration.maps.isEmpty {
            problems.append(
                "maps: required: at least one map or ACL, e.g. maps: { hosts: { path: /etc/haproxy/maps/hosts.map } } or acls: { blocklist: { path: /etc/haproxy/blocklist.acl, type: ip } }"
            )
        }
        var seenPaths: [String: BridgeConfiguration.Map] = [:]
        for map in configuration.maps {
            if let other = seenPaths[map.path] {
                problems.append("\(map.configurationPath).path: '\(map.path)' is also the path of \(other.definition.described)")
            }
            seenPaths[map.path] = map
        }
        // Every command carries a map's path: a long one leaves less room for the entry.
        let entryLimit = configuration.entryRules.maxEntryBytes
        if entryLimit < EntryRules.smallestUsefulLimit, let longest = configuration.maps.max(by: { $0.path.utf8.count < $1.path.utf8.count }) {
            problems.append(
                "\(longest.configurationPath).path: \(longest.path.utf8.count) bytes long: with haproxy.bufsize \(configuration.haproxy.bufsize), one command has room for entries of only \(entryLimit) bytes (at least \(EntryRules.smallestUsefulLimit) needed); raise haproxy.bufsize with HAProxy's tune.bufsize, or shorten the path"
            )
        }

        switch top["topics"] {
        case .sequence(let items, _)?:
            if items.isEmpty { problems.append("topics: required: at least one topic") }
            for (index, item) in items.enumerated() {
                let path = "topics[\(index)]"
                let fields = section(item, path, allowed: ["name", "format", "map", "acl", "key_field", "value_field", "delete_when"])
                guard let name = string(fields["name"], "\(path).name"), !name.isEmpty else {
                    problem("\(path).name", item, "required")
                    continue
                }
                let format = choice(fields["format"], "\(path).format", default: BridgeConfiguration.Topic.Format.json)
                let mapName = string(fields["map"], "\(path).map")
                let aclName = string(fields["acl"], "\(path).acl")
                if mapName != nil && aclName != nil { problem("\(path).acl", fields["acl"], "a topic changes one map or one ACL, not both") }
                let map = mapName ?? aclName
                let targetKind: MapKind = mapName == nil && aclName != nil ? .acl : .map
                let targetField = targetKind == .acl ? "acl" : "map"
                var recordFields: RecordFields?
                switch format {
                case .record, .debezium:
                    let keyField = string(fields["key_field"], "\(path).key_field")
                    let valueField = string(fields["value_field"], "\(path).value_field")
                    if keyField?.isEmpty ?? true {
                        problem("\(path).key_field", fields["key_field"] ?? item, "required for a \(format.rawValue) topic: the field holding the map key")
                    }
                    if targetKind == .acl {
                        if fields["value_field"] != nil {
                            problem("\(path).value_field", fields["value_field"], "an ACL's patterns have no value: name only key_field")
                        }
                    } else if valueField?.isEmpty ?? true {
                        problem(
                            "\(path).value_field", fields["value_field"] ?? item, "required for a \(format.rawValue) topic: the field holding the map value")
                    }
                    var condition: RecordFields.DeleteCondition?
                    if let deleteWhen = fields["delete_when"] {
                        if format == .debezium {
                            problem("\(path).delete_when", deleteWhen, "only record topics take delete_when (Debezium's 'd' events delete)")
                        } else {
                            let rule = section(deleteWhen, "\(path).delete_when", allowed: ["field", "equals"])
                            if let field = string(rule["field"], "\(path).delete_when.field"), !field.isEmpty, case .scalar(let text, _)? = rule["equals"] {
                                condition = .init(field: field, equals: Self.scalar(text))
                            } else {
                                problem("\(path).delete_when", deleteWhen, "expected { field: NAME, equals: VALUE }")
                            }
                        }
                    }
                    recordFields = RecordFields(
                        keyField: keyField ?? "", valueField: targetKind == .acl ? nil : valueField ?? "", deleteWhen: condition)
                    fallthrough
                case .kv:
                    if let map {
                        let candidates = configuration.maps.filter { $0.kind == targetKind }
                        if !candidates.contains(where: { $0.name == map }) {
                            let names = candidates.map(\.name).joined(separator: ", ")
                            problem(
                                "\(path).\(targetField)", fields[targetField],
                                "'\(map)' is not one of the \(targetKind == .acl ? "ACLs" : "maps") (\(names.isEmpty ? "none configured" : names))")
                        }
                    } else {
                        problem("\(path).map", item, "required for a \(format.rawValue) topic: the map (or acl) its messages change")
                    }
                case .json:
                    if map != nil {
                        problem(
                            "\(path).\(targetField)", fields[targetField], "only kv, record and debezium topics name a \(targetField) (json events name theirs)"
                        )
                    }
                }
                if configuration.topics.contains(where: { $0.name == name }) { problem("\(path).name", fields["name"], "topic '\(name)' is listed twice") }
                if format == .json || format == .kv {
                    for extra in ["key_field", "value_field", "delete_when"] where fields[extra] != nil {
                        problem("\(path).\(extra)", fields[extra], "only record and debezium topics name their fields")
                    }
                }
                configuration.topics.append(BridgeConfiguration.Topic(name: name, format: format, map: map, fields: recordFields))
            }
        case nil, .null?:
            problems.append("topics: required: at least one topic, e.g. topics: [{ name: haproxy.map-changes, format: json }]")
        case let other?:
            problem("topics", other, "expected a list of topics")
        }

        let batch = section(top["batch"], "batch", allowed: ["max_events", "max_wait_ms"])
        configuration.batch.maxEvents = int(batch["max_events"], "batch.max_events", default: 10000, range: 1...10_000_000)
        configuration.batch.maxWaitMilliseconds = int(batch["max_wait_ms"], "batch.max_wait_ms", default: 10, range: 0...60_000)
        let backlog = section(top["backlog"], "backlog", allowed: ["max_events", "max_bytes"])
        configuration.backlog.maxEvents = int(backlog["max_events"], "backlog.max_events", default: 200_000, range: 1...100_000_000)
        configuration.backlog.maxBytes = int(backlog["max_bytes"], "backlog.max_bytes", default: 32 << 20, range: 1 << 20...1 << 40)
        if configuration.backlog.maxEvents < configuration.batch.maxEvents {
            problem("backlog.max_events", backlog["max_events"], "must be at least batch.max_events (\(configuration.batch.maxEvents))")
        }
        let commit = section(top["commit"], "commit", allowed: ["interval_ms"])
        configuration.commitIntervalMilliseconds = int(commit["interval_ms"], "commit.interval_ms", default: 1000, range: 10...3_600_000)
        let deadLetter = section(top["dead_letter"], "dead_letter", allowed: ["topic", "on_failure", "retry_timeout_ms"])
        configuration.deadLetterTopic = string(deadLetter["topic"], "dead_letter.topic")
        configuration.deadLetterFailure = choice(deadLetter["on_failure"], "dead_letter.on_failure", default: configuration.deadLetterFailure)
        configuration.deadLetterRetryTimeoutMilliseconds = int(
            deadLetter["retry_timeout_ms"], "dead_letter.retry_timeout_ms", default: configuration.deadLetterRetryTimeoutMilliseconds, range: 0...86_400_000)
        if let topic = configuration.deadLetterTopic, configuration.topics.contains(where: { $0.name == topic }) {
            problem("dead_letter.topic", deadLetter["topic"], "must not be a topic the bridge consumes")
        }
        let http = section(top["http"], "http", allowed: ["listen"])
        let listen = string(http["listen"], "http.listen") ?? "127.0.0.1:9464"
        if listen.isEmpty || listen == "off" {
            configuration.httpListen = nil
        } else if let colon = listen.lastIndex(of: ":"), let port = Int(listen[listen.index(after: colon)...]), (0...65535).contains(port),
            colon > listen.startIndex
        {
            configuration.httpListen = .init(host: String(listen[..<colon]), port: port)
        } else {
            problem("http.listen", http["listen"], "must be host:port (or \"off\")")
        }
        let shutdown = section(top["shutdown"], "shutdown", allowed: ["timeout_ms"])
        configuration.shutdownTimeoutMilliseconds = int(shutdown["timeout_ms"], "shutdown.timeout_ms", default: 10000, range: 0...600_000)
        let state = section(top["state"], "state", allowed: ["directory"])
        configuration.stateDirectory = string(state["directory"], "state.directory", nonEmpty: true, default: configuration.stateDirectory)
        let log = section(top["log"], "log", allowed: ["level"])
        if let level = string(log["level"], "log.level") {
            if let parsed = Logger.Level(rawValue: level.lowercased()) {
                configuration.logLevel = parsed
            } else {
                problem("log.level", log["level"], "'\(level)' is not one of \(Logger.Level.allCases.map(\.rawValue).joined(separator: ", "))")
            }
        }
        return configuration
    }
}

/// Edit distance, for "did you mean" suggestions.
func distance(_ a: String, _ b: String) -> Int {
    let a = Array(a), b = Array(b)
    var previous = Array(0...b.count)
    for (i, x) in a.enumerated() {
        var current = [i + 1]
        for (j, y) in b.enumerated() {
            current.append(min(previous[j + 1] + 1, current[j] + 1, previous[j] + (x == y ? 0 : 1)))
        }
        previous = current
    }
    return previous[b.count]
}
