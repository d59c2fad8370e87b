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
                    haproxy: { socket: "\(haproxy.endpoint)", check_interval_ms: 500, reconnect: { initial_ms: 50, max_ms: 200 } }
                    topics: [{ name: changes, format: json }]
                    maps: { hosts: { path: \(haproxy.mapPath("hosts")) } }
                    commit: { interval_ms: 100 }
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
}
