import Bridge
import Consumer
import Events
import Foundation
import Kafka
import TestSupport
import Testing

/// The daemon's object graph in-process, between real HAProxy processes and the embedded Kafka
/// cluster; what HAProxy holds is read with the independent oracle, committed offsets from Kafka.
@Suite("Bridge end to end", .serialized)
struct EndToEndTests {
    static func jsonEvent(_ map: String, _ key: String, _ value: String?) -> String {
        let escapedKey = key.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
        if let value {
            return #"{"map":"\#(map)","op":"set","key":"\#(escapedKey)","value":"\#(value)"}"#
        }
        return #"{"map":"\#(map)","op":"del","key":"\#(escapedKey)"}"#
    }

    func expectExact(_ haproxy: HAProxyProcess, _ map: String, _ expected: [String: String], sourceLocation: SourceLocation = #_sourceLocation) throws {
        let (entries, duplicates) = try haproxy.oracle.snapshot(of: haproxy.mapPath(map))
        #expect(duplicates.isEmpty, "duplicate entries: \(duplicates.prefix(10))", sourceLocation: sourceLocation)
        let wanted = Dictionary(uniqueKeysWithValues: expected.map { (Array($0.key.utf8), $0.value) })
        let missing = wanted.keys.filter { entries[$0] == nil }.count
        let extra = entries.keys.filter { wanted[$0] == nil }.count
        let different = wanted.filter { entries[$0.key] != nil && entries[$0.key] != $0.value }.count
        #expect(missing == 0 && extra == 0 && different == 0, "missing \(missing), extra \(extra), different \(different)", sourceLocation: sourceLocation)
    }

    func mapMatches(_ haproxy: HAProxyProcess, _ map: String, _ expected: [String: String]) -> Bool {
        guard let (entries, duplicates) = try? haproxy.oracle.snapshot(of: haproxy.mapPath(map)) else { return false }
        return duplicates.isEmpty && entries.count == expected.count && expected.allSatisfy { entries[Array($0.key.utf8)] == $0.value }
    }

    @Test("the seed's workload: 5000 changes, /test1../test5000 = '-', all applied and committed")
    func seedWorkload() async throws {
        try await withHAProxy([TestMap("hosts")]) { haproxy in
            try await withBridgeHarness(topics: [("changes", 3)]) { harness in
                harness.start(
                    harness.configuration(
                        socket: haproxy.endpoint, maps: [("hosts", haproxy.mapPath("hosts"))], topics: [.init(name: "changes", format: .json)]))
                for n in 1...5000 {
                    try harness.produce(topic: "changes", key: "/test\(n)", value: Self.jsonEvent("hosts", "/test\(n)", "-"))
                }
                try harness.flush()
                let expected = Dictionary(uniqueKeysWithValues: (1...5000).map { ("/test\($0)", "-") })
                try await waitUntil("5000 entries in HAProxy", timeout: 60) { mapMatches(haproxy, "hosts", expected) }
                try await waitUntil("every offset committed", timeout: 30) { harness.committedEverything() }
                try expectExact(haproxy, "hosts", expected)
                #expect(harness.status.changesApplied == 5000)
                try await harness.stop()
            }
        }
    }

    @Test("100,000 mixed set/del over 10,000 keys in json and kv leave HAProxy exactly as the log says")
    func mixedWorkload() async throws {
        try await withHAProxy([TestMap("hosts", initialLines: ["seeded.example.com be_seed"]), TestMap("routes")]) { haproxy in
            try await withBridgeHarness(topics: [("changes", 4), ("routes", 4)]) { harness in
                harness.start(
                    harness.configuration(
                        socket: haproxy.endpoint, maps: [("hosts", haproxy.mapPath("hosts")), ("routes", haproxy.mapPath("routes"))],
                        topics: [.init(name: "changes", format: .json), .init(name: "routes", format: .kv, map: "routes")]))
                var hosts: [String: String] = ["seeded.example.com": "be_seed"]
                var routes: [String: String] = [:]
                var generator = SystemRandomNumberGenerator()
                var produced = 0
                while produced < 100_000 {
                    let key = "k\(Int.random(in: 0..<10_000, using: &generator)).example.com"
                    let value =
                        Bool.random(using: &generator) || Int.random(in: 0..<4, using: &generator) == 0
                        ? nil : "be_\(Int.random(in: 0..<50, using: &generator))"
                    if produced % 2 == 0 {
                        // json: mostly single changes, sometimes an array of several changes of the same key.
                        if produced % 10 == 0 {
                            let second = "be_\(Int.random(in: 0..<50, using: &generator))"
                            let array = "[\(Self.jsonEvent("hosts", key, value)),\(Self.jsonEvent("hosts", key, second))]"
                            try harness.produce(topic: "changes", key: key, value: array)
                            hosts[key] = second
                            produced += 2
                        } else {
                            try harness.produce(topic: "changes", key: key, value: Self.jsonEvent("hosts", key, value))
                            hosts[key] = value
                            produced += 1
                        }
                    } else {
                        try harness.produce(topic: "routes", key: key, value: value)
                        routes[key] = value
                        produced += 1
                    }
                    if produced % 20_000 == 0 { try harness.flush() }
                }
                try harness.flush()
                try await waitUntil("both maps to converge", timeout: 180) { mapMatches(haproxy, "hosts", hosts) && mapMatches(haproxy, "routes", routes) }
                try await waitUntil("every offset committed", timeout: 30) { harness.committedEverything() }
                try expectExact(haproxy, "hosts", hosts)
                try expectExact(haproxy, "routes", routes)
                try await harness.stop()
            }
        }
    }

    @Test("with HAProxy stopped nothing is committed; when it returns the map converges and commits resume")
    func haproxyAway() async throws {
        try await withHAProxy([TestMap("hosts", initialLines: ["from.file be_file"])]) { haproxy in
            try await withBridgeHarness(topics: [("changes", 2)]) { harness in
                harness.start(
                    harness.configuration(
                        socket: haproxy.endpoint, maps: [("hosts", haproxy.mapPath("hosts"))], topics: [.init(name: "changes", format: .json)]))
                var expected = ["from.file": "be_file"]
                for n in 0..<500 {
                    try harness.produce(topic: "changes", key: "a\(n)", value: Self.jsonEvent("hosts", "a\(n)", "v1"))
                    expected["a\(n)"] = "v1"
                }
                try harness.flush()
                try await waitUntil("the first events applied and committed", timeout: 60) { harness.committedEverything() }
                let before = try harness.committedOffsets()

                await haproxy.stop()
                for n in 0..<500 {
                    try harness.produce(topic: "changes", key: "a\(n)", value: Self.jsonEvent("hosts", "a\(n)", n % 3 == 0 ? nil : "v2"))
                    expected["a\(n)"] = n % 3 == 0 ? nil : "v2"
                }
                for n in 0..<300 {
                    try harness.produce(topic: "changes", key: "b\(n)", value: Self.jsonEvent("hosts", "b\(n)", "new"))
                    expected["b\(n)"] = "new"
                }
                try harness.flush()
                // The bridge consumes them and keeps failing to reach HAProxy; commits must not move meanwhile.
                let consumedBefore = harness.status.eventsConsumed
                try await waitUntil("the bridge to notice HAProxy is gone", timeout: 30) { !harness.status.haproxyConnected }
                for _ in 0..<5 {
                    // Each failed attempt is followed by a backoff of 20-300 ms: several commit intervals (100 ms).
                    let failures = harness.status.syncFailures
                    try await waitUntil("two more failed attempts to reach HAProxy", timeout: 30) { harness.status.syncFailures >= failures + 2 }
                    #expect(try harness.committedOffsets() == before, "nothing is committed while HAProxy is away")
                }
                #expect(harness.status.eventsConsumed == consumedBefore, "no batch completed while HAProxy was away")

                try await haproxy.start()  // a fresh process: runtime changes gone, the map file's content back
                try await waitUntil("the map to converge", timeout: 60) { mapMatches(haproxy, "hosts", expected.compactMapValues { $0 }) }
                try await waitUntil("every offset committed", timeout: 30) { harness.committedEverything() }
                try expectExact(haproxy, "hosts", expected.compactMapValues { $0 })
                #expect(harness.status.haproxyRestarts >= 1)
                try await harness.stop()
            }
        }
    }

    @Test("a stored state behind the group's commit (left by a bridge that lost its partitions) is caught up from its own offsets")
    func storedStateBehindCommit() async throws {
        try await withHAProxy([TestMap("hosts")]) { haproxy in
            try await withBridgeHarness(topics: [("changes", 2)]) { harness in
                let configuration = harness.configuration(
                    socket: haproxy.endpoint, maps: [("hosts", haproxy.mapPath("hosts"))], topics: [.init(name: "changes", format: .json)])
                func round(_ value: String) async throws {
                    harness.start(configuration)
                    for n in 0..<300 { try harness.produce(topic: "changes", key: "a\(n)", value: Self.jsonEvent("hosts", "a\(n)", value)) }
                    try harness.flush()
                    try await waitUntil("round \(value) applied and committed", timeout: 60) { harness.committedEverything() }
                    try await harness.stop()
                }
                let state = configuration.groupStateDirectory
                let files = ["hosts.state", "offsets"]
                try await round("v1")
                let early = try files.map { try Data(contentsOf: URL(fileURLWithPath: "\(state)/\($0)")) }
                try await round("v2")
                // Put back the state (and its offsets) of the first round: the group has committed the second.
                for (file, data) in zip(files, early) { try data.write(to: URL(fileURLWithPath: "\(state)/\(file)")) }
                harness.start(configuration)
                let expected = Dictionary(uniqueKeysWithValues: (0..<300).map { ("a\($0)", "v2") })
                try await waitUntil("the map to hold the second round again", timeout: 60) {
                    mapMatches(haproxy, "hosts", expected) && harness.status.eventsConsumed >= 300
                }
                try expectExact(haproxy, "hosts", expected)
                try await harness.stop()
            }
        }
    }

    @Test("the example configuration runs against the example HAProxy configuration and routes by the map")
    func exampleConfiguration() async throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
        let directory = try TemporaryDirectory(prefix: "mapbridge-example")
        let mapsDirectory = directory.file("maps")
        try FileManager.default.createDirectory(atPath: mapsDirectory, withIntermediateDirectories: true)
        for file in ["hosts.map", "blocklist.map", "admin-allowlist.acl"] {
            try FileManager.default.copyItem(atPath: "\(root)/config/maps/\(file)", toPath: "\(mapsDirectory)/\(file)")
        }
        let port = try freePort()
        let haproxy = HAProxyProcess(
            configFile: "\(root)/config/haproxy.cfg", socketPath: directory.file("admin.sock"),
            environment: ["HAPROXY_RUN_DIR": directory.path, "MAPS_DIR": mapsDirectory, "HTTP_BIND": "127.0.0.1:\(port)"], directory: directory)
        do {
            try await haproxy.start()
            try await withBridgeHarness(topics: [("haproxy.map-changes", 2), ("haproxy.hosts", 2)]) { harness in
                let configuration = try BridgeConfiguration.load(
                    path: "\(root)/config/mapbridge.yaml",
                    environment: [
                        "MAPBRIDGE_KAFKA_BROKERS": harness.cluster.bootstrapServers, "MAPBRIDGE_HAPROXY_SOCKET": "unix://\(directory.file("admin.sock"))",
                        "MAPBRIDGE_MAPS_HOSTS_PATH": "\(mapsDirectory)/hosts.map", "MAPBRIDGE_MAPS_BLOCKLIST_PATH": "\(mapsDirectory)/blocklist.map",
                        "MAPBRIDGE_ACLS_ADMIN_ALLOWLIST_PATH": "\(mapsDirectory)/admin-allowlist.acl",
                        "MAPBRIDGE_COMMIT_INTERVAL_MS": "100", "MAPBRIDGE_STATE_DIRECTORY": harness.stateDirectory.path,
                    ])
                harness.start(configuration)

                #expect(try httpGet(port: port, headers: ["Host": "www.example.com"]).body == "be_web answered for www.example.com\n")
                #expect(try httpGet(port: port, headers: ["Host": "api.example.com"]).status == 404)
                #expect(try httpGet(port: port, path: "/admin", headers: ["Host": "www.example.com"]).status == 403, "not in the admin allowlist")
                try harness.produce(
                    topic: "haproxy.map-changes", key: "127.0.0.1", value: #"{"acl":"admin_allowlist","op":"add","pattern":"127.0.0.1"}"#)
                try harness.flush()
                try await waitUntil("loopback clients to reach /admin", timeout: 60) {
                    (try? httpGet(port: port, path: "/admin", headers: ["Host": "www.example.com"]).status) == 200
                }
                #expect(try haproxy.oracle.run("show acl \(mapsDirectory)/admin-allowlist.acl").contains(" 127.0.0.1\n"))
                try harness.produce(topic: "haproxy.map-changes", key: "api.example.com", value: Self.jsonEvent("hosts", "api.example.com", "be_api"))
                try harness.produce(topic: "haproxy.hosts", key: "static.example.com", value: "be_static")
                try harness.produce(topic: "haproxy.map-changes", key: "127.0.0.1", value: Self.jsonEvent("blocklist", "10.66.0.0/16", "blocked"))
                try harness.flush()
                try await waitUntil("api.example.com to route to be_api", timeout: 60) {
                    (try? httpGet(port: port, headers: ["Host": "api.example.com"]).body) == "be_api answered for api.example.com\n"
                }
                try await waitUntil("static.example.com to route to be_static", timeout: 60) {
                    (try? httpGet(port: port, headers: ["Host": "static.example.com"]).body) == "be_static answered for static.example.com\n"
                }
                try harness.produce(topic: "haproxy.hosts", key: "static.example.com", value: nil)
                try harness.produce(topic: "haproxy.map-changes", key: "127.0.0.1", value: Self.jsonEvent("blocklist", "127.0.0.0/8", "blocked"))
                try harness.flush()
                try await waitUntil("loopback clients to be refused", timeout: 60) {
                    (try? httpGet(port: port, headers: ["Host": "www.example.com"]).status) == 403
                }
                let blocklist = try haproxy.oracle.entries(of: "\(mapsDirectory)/blocklist.map").map(\.key)
                #expect(Set(blocklist) == ["10.66.0.0/16", "127.0.0.0/8"])
                #expect(try haproxy.oracle.entries(of: "\(mapsDirectory)/hosts.map").map(\.key).sorted() == ["api.example.com", "www.example.com"])
                try await harness.stop()
            }
            await haproxy.destroy()
        } catch {
            await haproxy.destroy()
            throw error
        }
    }

    @Test("a Debezium topic and a record topic drive a map: create, update, key change, delete, tombstone; an invalid change event is dead-lettered")
    func recordsAndDebezium() async throws {
        try await withHAProxy([TestMap("hosts")]) { haproxy in
            try await withBridgeHarness(topics: [("dbserver1.public.routes", 1), ("routes.records", 1), ("changes.dlq", 1)]) { harness in
                var configuration = harness.configuration(
                    socket: haproxy.endpoint, maps: [("hosts", haproxy.mapPath("hosts"))],
                    topics: [
                        .init(name: "dbserver1.public.routes", format: .debezium, map: "hosts", fields: RecordFields(keyField: "host", valueField: "backend")),
                        .init(
                            name: "routes.records", format: .record, map: "hosts",
                            fields: RecordFields(keyField: "host", valueField: "backend", deleteWhen: .init(field: "deleted", equals: .bool(true)))),
                    ])
                configuration.deadLetterTopic = "changes.dlq"
                harness.start(configuration)
                func change(_ before: String, _ after: String, _ op: String) -> String {
                    #"{"schema":{"type":"struct","optional":false,"name":"dbserver1.public.routes.Envelope"},"payload":{"before":\#(before),"after":\#(after),"op":"\#(op)","ts_ms":1}}"#
                }
                let topic = "dbserver1.public.routes"
                try harness.produce(topic: topic, key: #"{"host":"a.example.com"}"#, value: change("null", #"{"host":"a.example.com","backend":"be_a"}"#, "c"))
                try harness.produce(topic: topic, key: #"{"host":"b.example.com"}"#, value: change("null", #"{"host":"b.example.com","backend":"be_b"}"#, "r"))
                try harness.produce(topic: topic, key: #"{"host":"a.example.com"}"#, value: change("null", #"{"host":"a.example.com","backend":"be_a2"}"#, "u"))
                try harness.produce(
                    topic: topic, key: #"{"host":"b.example.com"}"#,
                    value: change(#"{"host":"b.example.com","backend":"be_b"}"#, #"{"host":"c.example.com","backend":"be_c"}"#, "u"))
                try harness.produce(topic: topic, key: #"{"host":"a.example.com"}"#, value: change(#"{"host":"a.example.com"}"#, "null", "d"))
                try harness.produce(topic: topic, key: #"{"host":"a.example.com"}"#, value: nil)
                try harness.produce(topic: topic, key: "x", value: change("null", "null", "t"))
                try harness.produce(topic: "routes.records", key: "d", value: #"{"host":"d.example.com","backend":"be_d"}"#)
                try harness.produce(topic: "routes.records", key: "e", value: #"{"host":"e.example.com","backend":"be_e"}"#)
                try harness.produce(topic: "routes.records", key: "e", value: #"{"host":"e.example.com","backend":"be_e","deleted":true}"#)
                try harness.flush()
                try await waitUntil("every event applied or dead-lettered, and committed", timeout: 60) {
                    harness.committedEverything() && harness.status.deadLettered == 1
                }
                try expectExact(haproxy, "hosts", ["c.example.com": "be_c", "d.example.com": "be_d"])
                try await harness.stop()
            }
        }
    }
}
