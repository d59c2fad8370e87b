import Consumer
import Events
import Foundation
import Kafka
import Mapper
import Testing

@testable import Bridge

@Suite("Configuration")
struct ConfigurationTests {
    static let minimal = """
        kafka:
          brokers: "k1:9092,k2:9092"
          group_id: edge-1
        haproxy:
          socket: "tcp://127.0.0.1:9999"
        topics:
          - name: changes
          - name: hosts-compacted
            format: kv
            map: hosts
        maps:
          hosts:
            path: /etc/haproxy/maps/hosts.map
          blocked:
            path: /etc/haproxy/maps/blocked.map
            type: ip
            value_type: int
        """

    func problems(_ yaml: String, environment: [String: String] = [:]) -> [String] {
        do {
            _ = try BridgeConfiguration.parse(yaml: yaml, file: "test.yaml", environment: environment)
            return []
        } catch let error as ConfigurationError {
            return error.problems
        } catch {
            return ["\(error)"]
        }
    }

    @Test("a map path too long for any entry to fit one command is a configuration error; a long one shrinks the entry limit")
    func longMapPath() throws {
        let tooLong = "/" + String(repeating: "p", count: 16_000) + ".map"
        let found = problems(Self.minimal.replacingOccurrences(of: "/etc/haproxy/maps/hosts.map", with: tooLong))
        #expect(found.contains { $0.hasPrefix("maps.hosts.path: 16005 bytes long") && $0.contains("haproxy.bufsize") }, "\(found)")
        let long = "/" + String(repeating: "p", count: 3000) + ".map"
        let configuration = try BridgeConfiguration.parse(yaml: Self.minimal.replacingOccurrences(of: "/etc/haproxy/maps/hosts.map", with: long))
        #expect(configuration.entryRules.maxEntryBytes == (16384 - EntryRules.commandOverhead - 3005) / 2)
        #expect(try BridgeConfiguration.parse(yaml: Self.minimal).entryRules.maxEntryBytes == 7168, "short paths keep the documented limit")
    }

    @Test("group ids become one folder each under state.directory")
    func groupFolders() throws {
        var configuration = try BridgeConfiguration.parse(yaml: Self.minimal)
        configuration.stateDirectory = "/var/lib/mapbridge/"
        configuration.kafka.groupID = "../edge 1/é"
        #expect(configuration.groupStateDirectory == "/var/lib/mapbridge/_._edge_1__")
        configuration.kafka.groupID = ".."
        #expect(configuration.groupStateDirectory == "/var/lib/mapbridge/_.")
    }

    @Test("a minimal file gets documented defaults")
    func defaults() throws {
        let configuration = try BridgeConfiguration.parse(yaml: Self.minimal)
        #expect(configuration.kafka.brokers == "k1:9092,k2:9092")
        #expect(configuration.kafka.groupID == "edge-1")
        #expect(configuration.kafka.membership == .direct)
        #expect(configuration.kafka.assignmentStrategy == .range)
        #expect(configuration.deadLetterFailure == .stop && configuration.deadLetterRetryTimeoutMilliseconds == 60000)
        #expect(configuration.groupStateDirectory == "/var/lib/mapbridge/edge-1")
        #expect(configuration.haproxy.socket == "tcp://127.0.0.1:9999")
        #expect(configuration.haproxy.bufsize == 16384)
        #expect(configuration.batch == .init())
        #expect(configuration.batch.maxEvents == 10000 && configuration.batch.maxWaitMilliseconds == 10)
        #expect(configuration.commitIntervalMilliseconds == 1000)
        #expect(configuration.topics == [.init(name: "changes", format: .json), .init(name: "hosts-compacted", format: .kv, map: "hosts")])
        #expect(configuration.maps[1] == .init(name: "blocked", path: "/etc/haproxy/maps/blocked.map", match: .ip, valueType: .int))
        #expect(configuration.topicFormats == ["changes": .json, "hosts-compacted": .kv(map: 0)])
        #expect(configuration.deadLetterTopic == nil)
    }

    @Test("unknown keys and bad values are reported together, each with its path and line")
    func problemsWithPaths() {
        let found = problems(
            """
            kafka:
              brokers: ""
              group_idd: x
              properties:
                enable.auto.commit: "true"
            haproxy:
              socket: "http://nope"
              bufsize: lots
              reconnect: { initial_ms: 500, max_ms: 100 }
            topics:
              - name: a
                format: avro
              - name: b
                format: kv
              - name: c
                format: kv
                map: ghost
              - name: a
            maps:
              hosts:
                type: str
              other:
                path: /m.map
                type: trie
            batch:
              max_events: 0
            logg:
              level: loud
            """)
        let expected = [
            "kafka.brokers: must not be empty", "kafka.group_idd: unknown setting (did you mean 'group_id'?)",
            "kafka.properties.enable.auto.commit: managed by mapbridge", "haproxy.socket: 'http://nope'", "haproxy.bufsize: expected a whole number",
            "haproxy.reconnect.max_ms: must not be below", "topics[0].format: 'avro' is not one of json, kv", "topics[1].map: required for a kv topic",
            "topics[2].map: 'ghost' is not one of the maps", "topics[3].name: topic 'a' is listed twice", "maps.hosts.path: required",
            "maps.other.type: 'trie' is not one of", "batch.max_events: 0 is out of range", "logg: unknown setting (did you mean 'log'?)",
        ]
        for needle in expected {
            #expect(found.contains { $0.hasPrefix(needle) || $0.contains(needle) }, "missing: \(needle)\nin: \(found.joined(separator: "\n"))")
        }
        #expect(found.allSatisfy { $0.contains("test.yaml:") }, "every problem says where: \(found)")
    }

    @Test("environment variables override any setting; unknown MAPBRIDGE_ variables are errors")
    func environment() throws {
        let configuration = try BridgeConfiguration.parse(
            yaml: Self.minimal,
            environment: [
                "MAPBRIDGE_KAFKA_BROKERS": "env:9092", "MAPBRIDGE_HAPROXY_SOCKET": "unix:///tmp/x.sock", "MAPBRIDGE_BATCH_MAX_WAIT_MS": "25",
                "MAPBRIDGE_MAPS_HOSTS_PATH": "/srv/hosts.map", "MAPBRIDGE_KAFKA_PROPERTY_SASL_PASSWORD": "s3cret", "MAPBRIDGE_LOG_LEVEL": "debug",
                "MAPBRIDGE_HAPROXY_RECONNECT_MAX_MS": "900", "PATH": "/usr/bin",
            ])
        #expect(configuration.kafka.brokers == "env:9092")
        #expect(configuration.haproxy.socket == "unix:///tmp/x.sock")
        #expect(configuration.batch.maxWaitMilliseconds == 25)
        #expect(configuration.maps[0].path == "/srv/hosts.map")
        #expect(configuration.kafka.properties["sasl.password"] == "s3cret")
        #expect(configuration.logLevel == .debug)
        #expect(configuration.haproxy.reconnectMaxMilliseconds == 900)
        let topics = try BridgeConfiguration.parse(yaml: Self.minimal, environment: ["MAPBRIDGE_TOPICS": "x:json,y:kv:blocked"])
        #expect(topics.topics == [.init(name: "x", format: .json), .init(name: "y", format: .kv, map: "blocked")])
        let found = problems(Self.minimal, environment: ["MAPBRIDGE_BATCH_MAX_EVENT": "5", "MAPBRIDGE_BATCH_MAX_EVENTS": "many"])
        #expect(found.contains { $0.contains("MAPBRIDGE_BATCH_MAX_EVENT:") && $0.contains("not a mapbridge setting") })
        #expect(found.contains { $0.hasPrefix("batch.max_events: expected a whole number") && $0.contains("environment MAPBRIDGE_BATCH_MAX_EVENTS") })
    }

    @Test("every example file in config/ loads")
    func examples() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let files = try FileManager.default.contentsOfDirectory(atPath: root.appendingPathComponent("config").path).filter {
            $0.hasSuffix(".yaml") || $0.hasSuffix(".yml")
        }
        #expect(!files.isEmpty)
        for file in files {
            let configuration = try BridgeConfiguration.load(path: root.appendingPathComponent("config/\(file)").path, environment: [:])
            #expect(!configuration.maps.isEmpty, "\(file)")
        }
    }

    @Test("a missing file or broken YAML is a clear error")
    func unreadable() {
        #expect(throws: ConfigurationError.self) { try BridgeConfiguration.load(path: "/nonexistent/mapbridge.yaml", environment: [:]) }
        #expect(problems("kafka: [unclosed").first?.contains("not valid YAML") == true)
        #expect(problems("").contains { $0.hasPrefix("maps: required") })
    }
}

@Suite("publish's line parser")
struct ChangeLineParserTests {
    @Test("JSON lines are judged as the daemon judges them: decoding, then every change against the entry rules")
    func jsonLinesUseTheDaemonsRules() throws {
        var configuration = BridgeConfiguration(groupID: "g")
        configuration.maps = [.init(name: "hosts", path: "/m/hosts.map"), .init(name: "weights", path: "/m/weights.map", valueType: .int)]
        let parser = try ChangeLineParser(configuration: configuration, map: "hosts")
        let valid = #"{"map":"hosts","op":"set","key":"a.example.com","value":"be_a"}"#
        #expect(parser.parse(Substring(valid)) == .json(valid))
        let cases = [
            #"{"map":"hosts","op":"set","key":"has space","value":"v"}"#: "space_in_key",
            #"{"map":"weights","op":"set","key":"w","value":"heavy"}"#: "wrong_type",
            ##"[{"map":"hosts","op":"del","key":"ok"},{"map":"hosts","op":"set","key":"#0x1","value":"v"}]"##: "entry_reference",
            #"{"map":"hosts","op":"set","key":"k","value":" padded"}"#: "surrounding_space",
        ]
        for (line, label) in cases {
            guard case .invalid(let reason) = parser.parse(Substring(line)) else {
                Issue.record("\(line) was accepted")
                continue
            }
            #expect(reason.hasPrefix(label), "\(line): \(reason)")
        }
    }

    @Test("event text in a reason cannot forge a log line or a header: control characters are escaped")
    func controlCharactersEscaped() throws {
        var configuration = BridgeConfiguration(groupID: "g")
        configuration.maps = [.init(name: "hosts", path: "/m/hosts.map")]
        let parser = try ChangeLineParser(configuration: configuration, map: "hosts")
        let line = #"{"map":"x\n2026-12-02T00:00:00 critical forged line\u001b[31m","op":"set","key":"k","value":"v"}"#
        guard case .invalid(let reason) = parser.parse(Substring(line)) else {
            Issue.record("accepted")
            return
        }
        #expect(!reason.unicodeScalars.contains { $0.value < 0x20 }, "\(reason)")
        #expect(reason.contains(#"x\n2026-12-02T00:00:00 critical forged line\u{1b}[31m"#), "\(reason)")
    }
}

@Suite("Record and Debezium topics in the configuration")
struct RecordTopicConfigurationTests {
    static let base = """
        kafka: { brokers: "k:9092", group_id: edge }
        maps:
          hosts: { path: /etc/haproxy/maps/hosts.map }
        topics:
        """

    func problems(_ topics: String) -> [String] { ConfigurationTests().problems(Self.base + topics) }

    @Test("record and debezium topics name their map and fields; delete_when compares JSON scalars")
    func recordTopics() throws {
        let configuration = try BridgeConfiguration.parse(
            yaml: Self.base + """

                  - { name: routes.records, format: record, map: hosts, key_field: host, value_field: backend, delete_when: { field: deleted, equals: true } }
                  - { name: dbserver1.public.routes, format: debezium, map: hosts, key_field: host, value_field: backend }
                """, file: "t.yaml", environment: [:])
        #expect(
            configuration.topicFormats["routes.records"]
                == .record(map: 0, RecordFields(keyField: "host", valueField: "backend", deleteWhen: .init(field: "deleted", equals: .bool(true)))))
        #expect(configuration.topicFormats["dbserver1.public.routes"] == .debezium(map: 0, RecordFields(keyField: "host", valueField: "backend")))
        let missing = problems("\n  - { name: r, format: record, map: hosts }")
        #expect(missing.contains { $0.contains("key_field") } && missing.contains { $0.contains("value_field") }, "\(missing)")
        #expect(problems("\n  - { name: r, format: debezium, key_field: a, value_field: b }").contains { $0.contains(".map") })
        #expect(
            problems("\n  - { name: r, format: debezium, map: hosts, key_field: a, value_field: b, delete_when: { field: x, equals: 1 } }").contains {
                $0.contains("delete_when")
            })
        #expect(problems("\n  - { name: r, format: json, key_field: a }").contains { $0.contains("key_field") })
    }
}
