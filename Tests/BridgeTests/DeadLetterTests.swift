import Bridge
import Consumer
import Core
import Foundation
import Kafka
import Mapper
import TestSupport
import Testing

/// Issue 4: hostile and broken events against real HAProxy, with a sentinel map the bridge does not
/// manage. Valid events land verbatim; invalid ones and HAProxy's refusals go to the dead-letter
/// topic with the reason and their source; nothing else is touched.
@Suite("Hostile events and the dead-letter topic", .serialized)
struct DeadLetterTests {
    static let maps = [
        TestMap("hosts"), TestMap("addresses", match: "ip"), TestMap("patterns", match: "reg"),
        TestMap("sentinel", initialLines: ["keep.example.com be_sentinel"]),
    ]

    func configuration(_ harness: BridgeHarness, _ haproxy: HAProxyProcess) -> BridgeConfiguration {
        var configuration = harness.configuration(
            socket: haproxy.endpoint,
            maps: [("hosts", haproxy.mapPath("hosts"))],
            topics: [.init(name: "changes", format: .json), .init(name: "routes", format: .kv, map: "hosts")])
        configuration.maps += [
            .init(name: "addresses", path: haproxy.mapPath("addresses"), match: .ip),
            .init(name: "patterns", path: haproxy.mapPath("patterns"), match: .reg),
        ]
        configuration.deadLetterTopic = "changes.dlq"
        return configuration
    }

    /// One hostile or broken event: where it goes, what it holds, the reason expected (nil: valid).
    struct Case: Sendable {
        var topic = "changes"
        var key: [UInt8]?
        var value: [UInt8]?
        var reason: String?
        var note: String

        static func json(_ text: String, _ reason: String?, _ note: String) -> Case {
            Case(key: Array("k".utf8), value: Array(text.utf8), reason: reason, note: note)
        }
        static func set(_ map: String, _ key: String, _ value: String, _ reason: String?, _ note: String) -> Case {
            .json(
                #"{"map":\#(jsonString(map)),"op":"set","key":\#(jsonString(key)),"value":\#(jsonString(value))}"#, reason,
                note)
        }
    }

    static var table: [Case] {
        let sentinel = "sentinel"
        return [
            // Valid, and tricky: each must reach HAProxy verbatim.
            .set("hosts", "semi.example.com", "v; clear map \(sentinel)", nil, "a ';' and a command in a value"),
            .set("hosts", "back.example.com", #"a\b\\c"#, nil, "backslashes"),
            .set("hosts", "#hash.example.com", "be_hash", nil, "a key starting with '#'"),
            .set("hosts", "unicode.example.com", "bé_ü ☃ 日本", nil, "unicode and inner spaces in a value"),
            .set("hosts", "lt.example.com", "<<EOF", nil, "a value that looks like a payload"),
            .set("addresses", "10.1.0.0/16", "be_net", nil, "a network in an ip map"),
            .set("patterns", "^/api/(v1|v2)/", "be_api", nil, "a regex that compiles"),
            Case(topic: "routes", key: Array("kv.example.com".utf8), value: Array("be_kv".utf8), reason: nil, note: "a kv event"),
            // Injection attempts: never a command.
            .set("hosts", "nl.example.com", "v\nclear map \(sentinel)", "control_character", "LF then a command in a value"),
            .set("hosts", "cr.example.com", "v\r\nclear map \(sentinel)", "control_character", "CR LF then a command"),
            .set("hosts", "k\nclear map \(sentinel)", "v", "control_character", "LF then a command in a key"),
            .set("hosts", "tab\tkey", "v", "control_character", "a tab in a key"),
            .set("hosts", "nul.example.com", "v\u{0}x", "control_character", "a NUL byte"),
            .set(sentinel, "keep.example.com", "hijacked", "unknown_map", "a map HAProxy has but the bridge does not manage"),
            .set(haproxyPathPlaceholder, "keep.example.com", "hijacked", "unknown_map", "a map named by its file path"),
            // Broken.
            .json("{not json", "bad_json", "malformed JSON"),
            .json(#"{"map":"hosts","op":"set","key":"k"}"#, "missing_field", "a set without a value"),
            .json(#"{"map":"hosts","op":"clear","key":"k"}"#, "bad_op", "an unknown op"),
            .json(#"{"map":"hosts","op":"set","key":7,"value":"v"}"#, "bad_field", "a key that is not a string"),
            .set("hosts", "", "v", "empty", "an empty key"),
            .set("hosts", "space key", "v", "space_in_key", "a space in a key"),
            .set("hosts", "long.example.com", String(repeating: "x", count: 20_000), "too_long", "over the entry limit"),
            .set("addresses", "not-an-address", "be", "wrong_type", "a key an ip map cannot parse"),
            Case(key: Array("k".utf8), value: [0x7B, 0xFF, 0xFE, 0x7D], reason: "bad_json", note: "bytes that are not UTF-8"),
            Case(topic: "routes", key: nil, value: Array("v".utf8), reason: "missing_key", note: "a kv event without a key"),
            // Refused by HAProxy itself: the regex does not compile.
            .set("patterns", "([unclosed", "be_bad", "haproxy_refused", "a regex HAProxy cannot compile"),
        ]
    }

    /// Replaced by the sentinel map's real path when the table is produced.
    static let haproxyPathPlaceholder = "@SENTINEL_PATH@"

    /// HAProxy with a `hosts` map, and a harness with a one-partition `changes` topic and its
    /// dead-letter topic `changes.dlq`, with a configuration for both (not started).
    func withDeadLetterTopic(_ body: (HAProxyProcess, BridgeHarness, inout BridgeConfiguration) async throws -> Void) async throws {
        try await withHAProxy([TestMap("hosts")]) { haproxy in
            try await withBridgeHarness(topics: [("changes", 1), ("changes.dlq", 1)]) { harness in
                var configuration = harness.configuration(
                    socket: haproxy.endpoint, maps: [("hosts", haproxy.mapPath("hosts"))], topics: [.init(name: "changes", format: .json)])
                configuration.deadLetterTopic = "changes.dlq"
                try await body(haproxy, harness, &configuration)
            }
        }
    }

    /// Waits for the bridge to stop, and returns the error it stopped with (nil, recorded as an
    /// issue, when it stopped without one).
    func stopError(_ harness: BridgeHarness) async throws -> (any Error)? {
        try await waitUntil("the bridge to stop", timeout: 60) { harness.exit != nil }
        guard case .failure(let error) = harness.exit else {
            Issue.record("the bridge ended without an error")
            return nil
        }
        return error
    }

    @Test("a dead letter is acknowledged before its source offset is committed; a failed one is sent again")
    func acknowledgedBeforeCommit() async throws {
        try await withDeadLetterTopic { haproxy, harness, configuration in
            try harness.produce(topic: "changes", key: "a", value: EndToEndTests.jsonEvent("hosts", "a.example.com", "be_a"))
            try harness.produce(topic: "changes", key: "bad", value: "{broken")
            try harness.produce(topic: "changes", key: "b", value: EndToEndTests.jsonEvent("hosts", "b.example.com", "be_b"))
            try harness.flush()
            let invalidOffset: Int64 = 1
            // Every produce request fails for a while (an error librdkafka does not retry itself,
            // so each delivery fails at once; the bridge sends it again, with backoff).
            harness.cluster.failRequests(.produce, with: Array(repeating: 29, count: 6))  // TOPIC_AUTHORIZATION_FAILED
            harness.start(configuration)
            try await waitUntil("both valid events in HAProxy", timeout: 60) {
                EndToEndTests().mapMatches(haproxy, "hosts", ["a.example.com": "be_a", "b.example.com": "be_b"])
            }
            try await waitUntil("dead-letter deliveries to fail", timeout: 30) { harness.status.deadLetterFailures >= 3 }
            var samples = 0
            while harness.status.deadLettered == 0 && samples < 20 {
                let committed = try harness.committedOffsets()[TopicPartition("changes", 0)] ?? 0
                #expect(committed <= invalidOffset, "committed past an invalid event whose dead letter is not acknowledged")
                samples += 1
                try await Task.sleep(for: .milliseconds(50))
            }
            #expect(samples > 0)
            try await waitUntil("the dead letter delivered and everything committed", timeout: 60) {
                harness.status.deadLettered == 1 && harness.committedEverything()
            }
            #expect(harness.status.deadLetterFailures >= 3)
            try await harness.stop()
        }
    }

    /// A broken event whose dead letter is larger than the producer's `message.max.bytes`
    /// (1,000,000 by default) once the reason headers are added: the broker can never take it.
    static let oversized = "{" + String(repeating: "x", count: 999_950)

    @Test("a dead letter the broker can never take stops the bridge by default, with an error naming it; nothing is committed past it")
    func undeliverableStops() async throws {
        try await withDeadLetterTopic { haproxy, harness, configuration in
            try harness.produce(topic: "changes", key: "a", value: EndToEndTests.jsonEvent("hosts", "a.example.com", "be_a"))
            try harness.produce(topic: "changes", key: "big", value: Self.oversized)
            try harness.produce(topic: "changes", key: "b", value: EndToEndTests.jsonEvent("hosts", "b.example.com", "be_b"))
            try harness.flush()
            harness.start(configuration)
            guard let error = try await stopError(harness) else { return }
            #expect("\(error)".contains("changes[0]@1") && "\(error)".contains("cannot be delivered"), "\(error)")
            let committed = try harness.committedOffsets()[TopicPartition("changes", 0)] ?? 0
            #expect(committed <= 1, "nothing committed past the event whose letter was not delivered")
            #expect(harness.status.deadLettered == 0)
        }
    }

    @Test("with dead_letter.on_failure: skip, an undeliverable letter is dropped and counted, and commits move past it")
    func undeliverableSkipped() async throws {
        try await withDeadLetterTopic { haproxy, harness, configuration in
            configuration.deadLetterFailure = .skip  // what the test is about
            try harness.produce(topic: "changes", key: "big", value: Self.oversized)
            try harness.produce(topic: "changes", key: "bad", value: "{small and broken")
            try harness.produce(topic: "changes", key: "b", value: EndToEndTests.jsonEvent("hosts", "b.example.com", "be_b"))
            try harness.flush()
            harness.start(configuration)
            try await waitUntil("everything committed", timeout: 60) { harness.committedEverything() }
            #expect(harness.status.deadLettered == 1, "the small letter is delivered")
            #expect(EndToEndTests().mapMatches(haproxy, "hosts", ["b.example.com": "be_b"]))
            #expect(harness.exit == nil, "the bridge runs on")
            try await harness.stop()
        }
    }

    @Test("a dead letter still refused after dead_letter.retry_timeout_ms stops the bridge (bounded retries)")
    func retriesAreBounded() async throws {
        try await withDeadLetterTopic { haproxy, harness, configuration in
            configuration.deadLetterRetryTimeoutMilliseconds = 2000  // what the test is about (default 60 s)
            try harness.produce(topic: "changes", key: "bad", value: "{broken")
            try harness.flush()
            harness.cluster.failRequests(.produce, with: Array(repeating: 29, count: 10_000))  // TOPIC_AUTHORIZATION_FAILED, for good
            harness.start(configuration)
            guard let error = try await stopError(harness) else { return }
            #expect("\(error)".contains("still failing after 2000 ms"), "\(error)")
            #expect(harness.status.deadLetterFailures >= 2, "it was sent again before giving up")
        }
    }

    @Test("changes HAProxy refuses are not counted as applied")
    func refusedNotCountedApplied() async throws {
        try await withHAProxy(Self.maps) { haproxy in
            try await withBridgeHarness(topics: [("changes", 1), ("routes", 1), ("changes.dlq", 1)]) { harness in
                harness.start(configuration(harness, haproxy))
                try harness.produce(topic: "changes", key: "a", value: EndToEndTests.jsonEvent("hosts", "a.example.com", "be_a"))
                // Twice the same regex, which HAProxy refuses: two events, one coalesced change, refused.
                for _ in 0..<2 { try harness.produce(topic: "changes", key: "p", value: EndToEndTests.jsonEvent("patterns", "^(unclosed", "be_p")) }
                try harness.produce(topic: "changes", key: "b", value: EndToEndTests.jsonEvent("patterns", "^/ok/", "be_ok"))
                try harness.flush()
                try await waitUntil("everything committed", timeout: 60) { harness.committedEverything() }
                #expect(harness.status.refusedChanges == 1)
                #expect(harness.status.changesApplied == 2, "two events applied, the two refused ones not")
                try await harness.stop()
            }
        }
    }

    @Test("offsets that move without any map changing are stored too: a restart does not dead-letter the same events again")
    func noReplayAfterRestart() async throws {
        try await withDeadLetterTopic { haproxy, harness, configuration in
            let reader = try TopicReader(bootstrapServers: harness.cluster.bootstrapServers, topic: "changes.dlq")
            harness.start(configuration)
            for n in 0..<20 { try harness.produce(topic: "changes", key: "bad\(n)", value: "{broken \(n)") }
            try harness.flush()
            try await waitUntil("the broken events dead-lettered and committed", timeout: 60) {
                harness.status.deadLettered == 20 && harness.committedEverything()
            }
            try await harness.stop()
            let stored = try StateFiles.readOffsets(path: "\(configuration.groupStateDirectory)/offsets")
            #expect(stored?["changes:0"] == 20, "the offsets file records what was handled: \(String(describing: stored))")

            harness.start(configuration)
            try harness.produce(topic: "changes", key: "bad20", value: "{broken 20")
            try harness.flush()
            try await waitUntil("the new broken event dead-lettered and committed", timeout: 60) {
                harness.status.deadLettered == 1 && harness.committedEverything()
            }
            try await waitUntil("the dead letters read back", timeout: 30) { reader.messages.count >= 21 }
            #expect(reader.messages.count == 21, "each broken event dead-lettered once")
            await reader.close()
            try await harness.stop()
        }
    }

    @Test("a table of hostile and broken events: valid ones exact, invalid ones dead-lettered with their reason, the sentinel map untouched")
    func hostileTable() async throws {
        try await withHAProxy(Self.maps) { haproxy in
            try await withBridgeHarness(topics: [("changes", 2), ("routes", 2), ("changes.dlq", 1)]) { harness in
                let reader = try TopicReader(bootstrapServers: harness.cluster.bootstrapServers, topic: "changes.dlq")
                harness.start(configuration(harness, haproxy))
                let cases = Self.table.map { item -> Case in
                    var item = item
                    if let value = item.value {
                        let text = String(decoding: value, as: UTF8.self)
                        if text.contains(Self.haproxyPathPlaceholder) {
                            item.value = Array(text.replacingOccurrences(of: Self.haproxyPathPlaceholder, with: haproxy.mapPath("sentinel")).utf8)
                        }
                    }
                    return item
                }
                // Each case between two valid events, so that nothing invalid takes its neighbours down.
                for (index, item) in cases.enumerated() {
                    try harness.produce(
                        topic: "changes", key: "n\(index)", value: EndToEndTests.jsonEvent("hosts", "before\(index).example.com", "be_\(index)"))
                    try harness.produce(
                        topic: item.topic, key: item.key, value: item.value,
                        headers: [KafkaHeader("case", String(index)), KafkaHeader("trace-id", [0x00, 0xFF, 0x10])])
                    try harness.produce(topic: "changes", key: "n\(index)", value: EndToEndTests.jsonEvent("hosts", "after\(index).example.com", "be_\(index)"))
                }
                try harness.flush()
                let invalid = cases.enumerated().filter { $0.element.reason != nil }
                try await waitUntil("every offset committed", timeout: 60) { harness.committedEverything() }
                // Committed means dead-lettered and acknowledged first.
                #expect(harness.status.deadLettered == invalid.count)
                try await waitUntil("the dead letters to be read back", timeout: 30) { reader.messages.count >= invalid.count }
                let letters = reader.messages
                #expect(letters.count == invalid.count, "one dead letter per invalid event")

                for (index, item) in invalid {
                    let letter = letters.first {
                        $0.header("case") == String(index) || ($0.header("mapbridge.original") == "change" && item.reason == "haproxy_refused")
                    }
                    guard let letter else {
                        Issue.record("no dead letter for case \(index) (\(item.note))")
                        continue
                    }
                    #expect(letter.header("mapbridge.reason") == item.reason, "case \(index) (\(item.note)): \(letter.header("mapbridge.detail") ?? "")")
                    #expect(letter.header("mapbridge.source.topic") == item.topic)
                    #expect(letter.header("mapbridge.source.offset") != nil && letter.header("mapbridge.source.partition") != nil)
                    #expect(letter.header("mapbridge.source.timestamp") != nil)
                    if item.reason == "haproxy_refused" {
                        // Only the refused change is kept: as a JSON event, keyed by its map key.
                        #expect(letter.keyText == "([unclosed")
                        #expect(letter.valueText == #"{"map":"patterns","op":"set","key":"([unclosed","value":"be_bad"}"#)
                        #expect(letter.header("mapbridge.detail")?.isEmpty == false)
                    } else {
                        // The original message: key, value and headers byte for byte.
                        #expect(letter.key == item.key && letter.value == item.value, "case \(index) (\(item.note)): original key and value")
                        #expect(letter.headers.contains(KafkaHeader("trace-id", [0x00, 0xFF, 0x10])))
                    }
                }

                var hosts: [String: String] = [:]
                var addresses: [String: String] = [:]
                var patterns: [String: String] = [:]
                for (index, item) in cases.enumerated() {
                    hosts["before\(index).example.com"] = "be_\(index)"
                    hosts["after\(index).example.com"] = "be_\(index)"
                    guard item.reason == nil, let value = item.value else { continue }
                    if item.topic == "routes" {
                        hosts[String(decoding: item.key!, as: UTF8.self)] = String(decoding: value, as: UTF8.self)
                        continue
                    }
                    let object = try #require(try JSONSerialization.jsonObject(with: Data(value)) as? [String: String])
                    switch object["map"] {
                    case "hosts": hosts[object["key"]!] = object["value"]!
                    case "addresses": addresses[object["key"]!] = object["value"]!
                    default: patterns[object["key"]!] = object["value"]!
                    }
                }
                try EndToEndTests().expectExact(haproxy, "hosts", hosts)
                try EndToEndTests().expectExact(haproxy, "addresses", addresses)
                try EndToEndTests().expectExact(haproxy, "patterns", patterns)
                try EndToEndTests().expectExact(haproxy, "sentinel", ["keep.example.com": "be_sentinel"])
                #expect(try haproxy.oracle.loadedMaps() == Self.maps.map { haproxy.mapPath($0.name) })
                await reader.close()
                try await harness.stop()
            }
        }
    }

    /// Random events for the fuzz test: valid ones (and what they do), and invalid ones built so that
    /// they cannot be valid by accident.
    struct Fuzzer {
        var generator = SystemRandomNumberGenerator()

        mutating func int(_ range: Range<Int>) -> Int { Int.random(in: range, using: &generator) }
        mutating func bytes(_ count: Int) -> [UInt8] { (0..<count).map { _ in UInt8.random(in: 0...255, using: &generator) } }

        /// Keys of json and kv events never overlap: their order across topics is not defined.
        mutating func key(_ prefix: String) -> String { "\(prefix)\(int(0..<3000)).example.com" }
        mutating func value() -> String {
            switch int(0..<6) {
            case 0: return "v \\ ; # \u{00e9}\u{2603} \(int(0..<100))"
            case 1: return "<<" + String(repeating: "x", count: int(1..<300))
            default: return "be_\(int(0..<1000))"
            }
        }

        enum Event {
            case valid(topic: String, key: String, value: String?, payload: [UInt8]?)
            case invalid(topic: String, key: [UInt8]?, payload: [UInt8]?)
        }

        mutating func next() -> Event {
            let kind = int(0..<20)
            let key = key(kind >= 9 && kind < 12 ? "r" : "j")
            switch kind {
            case 0..<9:
                let value = int(0..<4) == 0 ? nil : value()
                let json =
                    value.map { #"{"map":"hosts","op":"set","key":\#(jsonString(key)),"value":\#(jsonString($0))}"# }
                    ?? #"{"map":"hosts","op":"del","key":\#(jsonString(key))}"#
                return .valid(topic: "changes", key: key, value: value, payload: Array(json.utf8))
            case 9..<12:
                let value = int(0..<4) == 0 ? nil : value()
                return .valid(topic: "routes", key: key, value: value, payload: value.map { Array($0.utf8) })
            case 12:
                // A valid event cut short: the object is never closed.
                let json = Array(#"{"map":"hosts","op":"set","key":\#(jsonString(key)),"value":"v"}"#.utf8)
                return .invalid(topic: "changes", key: Array(key.utf8), payload: Array(json[..<int(0..<json.count)]))
            case 13:
                // Random bytes that cannot start JSON.
                var junk = bytes(int(1..<200))
                if [0x7B, 0x5B, 0x20, 0x09, 0x0A, 0x0D].contains(junk[0]) { junk[0] = 0x00 }
                return .invalid(topic: "changes", key: bytes(int(0..<20)), payload: junk)
            case 14:
                // A raw control byte inside the key's JSON string (JSON requires it escaped).
                let control = UInt8(int(0..<32))
                let json = Array(#"{"map":"hosts","op":"set","key":"a"#.utf8) + [control] + Array(#"b","value":"v"}"#.utf8)
                return .invalid(topic: "changes", key: nil, payload: json)
            case 15:
                // An escaped control character or newline in a key or value: valid JSON, not a valid entry.
                let control = String(format: "\\u%04x", int(0..<32))
                let json =
                    int(0..<2) == 0
                    ? #"{"map":"hosts","op":"set","key":"x\#(control)clear map sentinel","value":"v"}"#
                    : #"{"map":"hosts","op":"set","key":\#(jsonString(key)),"value":"v\#(control)clear map sentinel"}"#
                return .invalid(topic: "changes", key: nil, payload: Array(json.utf8))
            case 16:
                let map = ["sentinel", "", "Hosts", "../hosts", "/etc/haproxy/maps/hosts.map"][int(0..<5)]
                return .invalid(topic: "changes", key: nil, payload: Array(#"{"map":\#(jsonString(map)),"op":"set","key":"k","value":"v"}"#.utf8))
            case 17:
                // Trailing garbage, a wrong op, a missing or non-string field.
                let variants = [
                    #"{"map":"hosts","op":"set","key":"k","value":"v"} x"#, #"{"map":"hosts","op":"upsert","key":"k","value":"v"}"#,
                    #"{"map":"hosts","op":"set","value":"v"}"#, #"{"map":"hosts","op":"set","key":["k"],"value":"v"}"#,
                    #"[{"map":"hosts","op":"set","key":"ok","value":"v"},{"map":"hosts","op":"set","key":"","value":"v"}]"#, "[]x", "null",
                ]
                return .invalid(topic: "changes", key: nil, payload: Array(variants[int(0..<variants.count)].utf8))
            case 18:
                // Huge (rarely) or just over the entry limit; bad UTF-8 in a kv value.
                // (Few and not too big: the embedded cluster keeps only ~5 MB per partition.)
                if int(0..<40) == 0 {
                    return .invalid(topic: "routes", key: Array(key.utf8), payload: Array(String(repeating: "h", count: 8_000 + int(0..<8_000)).utf8))
                }
                return .invalid(topic: "routes", key: Array(key.utf8), payload: [0x62, 0x65, 0xC3, 0x28] + bytes(int(0..<8)).map { $0 | 0x80 })
            default:
                // kv without a key, or with a space or a control byte in it.
                let keys: [[UInt8]?] = [nil, Array("a b".utf8), [0x61, 0x0A, 0x62], []]
                return .invalid(topic: "routes", key: keys[int(0..<keys.count)], payload: Array("v".utf8))
            }
        }
    }

    @Test("fuzz: 120,000 random events, a third of them broken: valid ones exact, every broken one dead-lettered, nothing else touched")
    func fuzz() async throws {
        try await withHAProxy([TestMap("hosts"), TestMap("sentinel", initialLines: ["keep.example.com be_sentinel"])]) { haproxy in
            try await withBridgeHarness(topics: [("changes", 8), ("routes", 8), ("changes.dlq", 8)]) { harness in
                let reader = try TopicReader(bootstrapServers: harness.cluster.bootstrapServers, topic: "changes.dlq")
                var configuration = harness.configuration(
                    socket: haproxy.endpoint, maps: [("hosts", haproxy.mapPath("hosts"))],
                    topics: [.init(name: "changes", format: .json), .init(name: "routes", format: .kv, map: "hosts")])
                configuration.deadLetterTopic = "changes.dlq"
                harness.start(configuration)
                let log = EventLog()
                let invalidSent = Locked(0)
                var fuzzer = Fuzzer()
                for index in 0..<120_000 {
                    switch fuzzer.next() {
                    case .valid(let topic, let key, let value, let payload):
                        try harness.producer.produce(topic: topic, key: Array(key.utf8), value: payload) { result in
                            if case .success(let delivered) = result {
                                log.record(.init(topic: topic, partition: delivered.partition, offset: delivered.offset, map: "hosts", key: key, value: value))
                            }
                        }
                    case .invalid(let topic, let key, let payload):
                        // Keyed like valid events' partitions would be, or not at all: either way in some partition's order.
                        try harness.producer.produce(topic: topic, key: key, value: payload) { result in
                            if case .success = result { invalidSent.withLock { $0 += 1 } }
                        }
                    }
                    if index % 20_000 == 19_999 { try harness.flush() }
                }
                try harness.flush()
                let invalid = invalidSent.value
                do {
                    try await waitUntil("every invalid event dead-lettered", timeout: 240) { harness.status.deadLettered >= invalid }
                } catch {
                    let status = harness.status
                    print(
                        "fuzz: \(status.deadLettered) of \(invalid) dead-lettered, \(status.deadLetterFailures) failures, \(status.eventsConsumed) consumed, \(status.invalidEvents) invalid"
                    )
                    throw error
                }
                try await waitUntil("the map to converge", timeout: 120) { EndToEndTests().mapMatches(haproxy, "hosts", log.state(of: "hosts")) }
                try await waitUntil("every partition committed to its end (none stalled)", timeout: 60) { harness.committedEverything() }
                #expect(harness.status.deadLettered == invalid)
                try await waitUntil("the dead letters read back", timeout: 60) { reader.messages.count >= invalid }
                let letters = reader.messages
                #expect(letters.count == invalid)
                #expect(
                    Set(
                        letters.map {
                            "\($0.header("mapbridge.source.topic") ?? "")/\($0.header("mapbridge.source.partition") ?? "")/\($0.header("mapbridge.source.offset") ?? "")"
                        }
                    ).count == invalid,
                    "one dead letter per invalid event, each naming its own source")
                #expect(letters.allSatisfy { $0.header("mapbridge.reason")?.isEmpty == false })
                try EndToEndTests().expectExact(haproxy, "hosts", log.state(of: "hosts"))
                try EndToEndTests().expectExact(haproxy, "sentinel", ["keep.example.com": "be_sentinel"])
                #expect(try haproxy.oracle.loadedMaps() == [haproxy.mapPath("hosts"), haproxy.mapPath("sentinel")])
                let reasons = Dictionary(grouping: letters, by: { $0.header("mapbridge.reason") ?? "?" }).mapValues(\.count)
                print("fuzz: \(log.count) valid, \(invalid) invalid events; dead letters by reason: \(reasons.sorted { $0.key < $1.key })")
                await reader.close()
                try await harness.stop()
            }
        }
    }
}
