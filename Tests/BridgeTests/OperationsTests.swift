import Bridge
import Foundation
import TestSupport
import Testing

/// `/metrics`, `/healthz` and `/readyz` of the daemon run as a child process.
@Suite("Metrics and health endpoints", .serialized)
struct OperationsTests {
    /// The value of a Prometheus sample (`name{labels} value` or `name value`), summed over labels.
    static func sample(_ text: String, _ name: String) -> Double? {
        let values = text.split(separator: "\n").filter { !$0.hasPrefix("#") }.compactMap { line -> Double? in
            let parts = line.split(separator: " ")
            guard parts.count == 2, parts[0] == name || parts[0].hasPrefix("\(name){") else { return nil }
            return Double(parts[1])
        }
        return values.isEmpty ? nil : values.reduce(0, +)
    }

    @Test("/readyz waits for HAProxy; /metrics counts consumed, applied, invalid and committed as events apply")
    func endpoints() async throws {
        try await withHAProxy([TestMap("hosts")]) { haproxy in
            try await withBridgeHarness(topics: [("changes", 2)]) { harness in
                let directory = try TemporaryDirectory()
                defer { directory.remove() }
                let port = try freePort()
                let yaml = """
                    kafka: { brokers: "\(harness.cluster.bootstrapServers)", group_id: ops }
                    haproxy: { socket: "\(haproxy.endpoint)" }
                    topics: [{ name: changes, format: json }]
                    maps: { hosts: { path: \(haproxy.mapPath("hosts")) } }
                    state: { directory: \(directory.file("state")) }
                    http: { listen: "127.0.0.1:\(port)" }
                    """
                let bridge = try BridgeProcess(yaml: yaml, directory: directory)
                await haproxy.stop()
                try bridge.start()
                defer { bridge.kill9() }
                try await waitUntil("the endpoints to answer", timeout: 30) { (try? httpGet(port: port, path: "/healthz"))?.status == 200 }
                let notReady = try httpGet(port: port, path: "/readyz")
                #expect(notReady.status == 503 && notReady.body.contains("HAProxy not connected"), "\(notReady)")

                try await haproxy.start()
                try await waitUntil("the bridge to be ready", timeout: 60) { (try? httpGet(port: port, path: "/readyz"))?.status == 200 }
                let before = try httpGet(port: port, path: "/metrics").body
                #expect(Self.sample(before, "mapbridge_events_consumed_total") ?? 0 == 0)

                // HAProxy frozen: the events are fetched but cannot be applied, so they show as lag.
                haproxy.freeze()
                for n in 0..<200 {
                    try harness.produce(topic: "changes", key: "k\(n)", value: EndToEndTests.jsonEvent("hosts", "k\(n).example.com", "be_\(n)"))
                }
                try harness.produce(topic: "changes", key: "bad", value: "{broken")
                try harness.flush()
                try await waitUntil("the lag to show the events", timeout: 30) {
                    Self.sample((try? httpGet(port: port, path: "/metrics"))?.body ?? "", "mapbridge_consumer_lag") ?? 0 > 0
                }
                haproxy.thaw()
                try await waitUntil("the events to be counted", timeout: 60) {
                    let text = (try? httpGet(port: port, path: "/metrics"))?.body ?? ""
                    return Self.sample(text, "mapbridge_events_consumed_total") == 201 && (Self.sample(text, "mapbridge_offsets_committed_total") ?? 0) > 0
                }
                let after = try httpGet(port: port, path: "/metrics")
                #expect(after.status == 200)
                #expect(Self.sample(after.body, "mapbridge_changes_applied_total") == 200)
                #expect(Self.sample(after.body, "mapbridge_events_invalid_total") == 1)
                #expect(after.body.contains(#"mapbridge_events_invalid_total{reason="bad_json"} 1"#), "\(after.body)")
                #expect((Self.sample(after.body, "mapbridge_apply_duration_seconds_count") ?? 0) > 0)
                #expect(Self.sample(after.body, "mapbridge_haproxy_in_sync") == 1)
                // Everything produced is committed: the lag of every partition drops to 0.
                try await waitUntil("the lag to reach 0", timeout: 30) {
                    let text = (try? httpGet(port: port, path: "/metrics"))?.body ?? ""
                    return text.contains(#"mapbridge_consumer_lag{"#) && Self.sample(text, "mapbridge_consumer_lag") == 0
                }
                #expect(try await bridge.terminate() == 0)
            }
        }
    }

    /// The `mapbridge_*` series an expression names (a histogram's `_bucket` series as it is served).
    static func seriesNames(_ expression: String) -> Set<String> {
        var names = Set<String>()
        var rest = Substring(expression)
        while let start = rest.range(of: "mapbridge_") {
            let name = rest[start.lowerBound...].prefix { $0.isLetter || $0.isNumber || $0 == "_" }
            names.insert(String(name))
            rest = rest[name.endIndex...]
        }
        return names
    }

    @Test("the Grafana dashboard and the alert rules name only series a running bridge serves; promtool accepts the rules")
    func dashboardAndAlerts() async throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let dashboardPath = root.appendingPathComponent("config/grafana/mapbridge-dashboard.json").path
        let rulesPath = root.appendingPathComponent("config/prometheus/mapbridge-alerts.yml").path
        let dashboard = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dashboardPath))) as? [String: Any]
        let panels = try #require(dashboard?["panels"] as? [[String: Any]])
        var expressions = panels.flatMap { ($0["targets"] as? [[String: Any]] ?? []).compactMap { $0["expr"] as? String } }
        #expect(expressions.count >= panels.count, "every panel has a query")
        let rules = try String(contentsOfFile: rulesPath, encoding: .utf8)
        expressions += rules.split(separator: "\n").filter { $0.trimmingCharacters(in: .whitespaces).hasPrefix("expr:") }.map(String.init)
        let named = expressions.reduce(into: Set<String>()) { $0.formUnion(Self.seriesNames($1)) }
        #expect(named.count >= 20, "\(named.sorted())")

        // promtool, from Debian's prometheus package (the test command installs it).
        let promtool = ["/usr/bin/promtool", "/usr/local/bin/promtool"].first { FileManager.default.isExecutableFile(atPath: $0) }
        let checker = try #require(promtool, "promtool is missing: apt-get install prometheus (scripts/install-dependencies.sh does)")
        let process = Process()
        process.executableURL = URL(fileURLWithPath: checker)
        process.arguments = ["check", "rules", rulesPath]
        let output = Pipe()
        process.standardOutput = output
        process.standardError = output
        try process.run()
        process.waitUntilExit()
        let said = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(process.terminationStatus == 0, "\(said)")

        // A running bridge, with each kind of activity the panels show: valid, invalid and
        // dead-lettered events, batches, lag, commits.
        try await withHAProxy([TestMap("hosts")]) { haproxy in
            try await withBridgeHarness(topics: [("changes", 2), ("changes.dlq", 1)]) { harness in
                let directory = try TemporaryDirectory()
                defer { directory.remove() }
                let port = try freePort()
                let yaml = """
                    kafka: { brokers: "\(harness.cluster.bootstrapServers)", group_id: ops }
                    haproxy: { socket: "\(haproxy.endpoint)" }
                    topics: [{ name: changes, format: json }]
                    maps: { hosts: { path: \(haproxy.mapPath("hosts")) } }
                    dead_letter: { topic: changes.dlq }
                    state: { directory: \(directory.file("state")) }
                    http: { listen: "127.0.0.1:\(port)" }
                    """
                let bridge = try BridgeProcess(yaml: yaml, directory: directory)
                try bridge.start()
                defer { bridge.kill9() }
                for n in 0..<50 {
                    try harness.produce(topic: "changes", key: "k\(n)", value: EndToEndTests.jsonEvent("hosts", "k\(n).example.com", "be_\(n)"))
                }
                try harness.produce(topic: "changes", key: "bad", value: "{broken")
                try harness.flush()
                var served = ""
                try await waitUntil("every kind of activity in /metrics", timeout: 60) {
                    served = (try? httpGet(port: port, path: "/metrics"))?.body ?? ""
                    return ["mapbridge_events_dead_lettered_total", "mapbridge_consumer_lag", "mapbridge_offsets_committed_total"].allSatisfy {
                        Self.sample(served, $0) ?? 0 > 0 || $0 == "mapbridge_consumer_lag" && Self.sample(served, $0) != nil
                    } && Self.sample(served, "mapbridge_ready") == 1
                }
                let servedNames = Set(
                    served.split(separator: "\n").filter { !$0.hasPrefix("#") }.compactMap { line in
                        line.split(whereSeparator: { $0 == "{" || $0 == " " }).first.map(String.init)
                    })
                let missing = named.subtracting(servedNames)
                #expect(missing.isEmpty, "named by the dashboard or the rules, not served: \(missing.sorted())")
            }
        }
    }
}
