import Bridge
import Foundation
import Kafka
import TestSupport
import Testing

/// ACL files end to end: the daemon as a user runs it (a child process, the product's defaults),
/// real HAProxy, the embedded cluster.
@Suite("ACL files end to end", .serialized)
struct ACLEndToEndTests {
    /// The patterns of an ACL file as HAProxy loads it: every line that is not a comment, without
    /// its leading blanks.
    func patterns(inFile path: String) throws -> [String] {
        try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n").filter { !$0.hasPrefix("#") }
            .map { String($0.drop(while: { $0 == " " || $0 == "\t" })) }
    }

    func live(_ haproxy: HAProxyProcess, _ name: String) -> (patterns: Set<String>, duplicates: [String])? {
        guard let (entries, duplicates) = try? haproxy.oracle.snapshot(of: haproxy.mapPath(name)) else { return nil }
        return (Set(entries.keys.map { String(decoding: $0, as: UTF8.self) }), duplicates)
    }

    @Test(
        "json and kv events add and delete patterns exactly once; the ACL file is written before the commit; a restart serves it; an ACL kept only in memory is resynced; invalid patterns are dead-lettered; diff compares ACLs"
    )
    func endToEnd() async throws {
        try await withHAProxy([
            TestMap("hosts"), TestMap.acl("blocklist", match: "ip", initialLines: ["192.0.2.1"]), TestMap.acl("bots", initialLines: ["from.file"]),
        ]) { haproxy in
            try await withBridgeHarness(topics: [("changes", 2), ("blocked", 2), ("changes.dlq", 1)]) { harness in
                let directory = try TemporaryDirectory(prefix: "mapbridge-acl")
                defer { directory.remove() }
                let port = try freePort()
                // Product defaults, except where the test needs its own place (state, HTTP port).
                let yaml = """
                    kafka: { brokers: "\(harness.cluster.bootstrapServers)", group_id: test-group }
                    haproxy: { socket: "\(haproxy.endpoint)" }
                    topics:
                      - { name: changes, format: json }
                      - { name: blocked, format: kv, acl: blocklist }
                    maps:
                      hosts: { path: \(haproxy.mapPath("hosts")) }
                    acls:
                      blocklist: { path: \(haproxy.mapPath("blocklist")), type: ip }
                      bots: { path: \(haproxy.mapPath("bots")), write_acl_file: false }
                    dead_letter: { topic: changes.dlq }
                    state: { directory: \(directory.file("state")) }
                    http: { listen: "127.0.0.1:\(port)" }
                    """
                let bridge = try BridgeProcess(yaml: yaml, directory: directory)
                try bridge.start()
                defer { if bridge.isRunning { bridge.kill9() } }

                func acl(_ name: String, _ op: String, _ pattern: String) -> String { #"{"acl":"\#(name)","op":"\#(op)","pattern":"\#(pattern)"}"# }
                try harness.produce(topic: "changes", key: "a", value: acl("blocklist", "add", "203.0.113.0/24"))
                try harness.produce(topic: "changes", key: "a", value: acl("blocklist", "add", "203.0.113.0/24"))  // again: still once
                try harness.produce(topic: "changes", key: "b", value: acl("blocklist", "del", "192.0.2.1"))
                try harness.produce(topic: "changes", key: "c", value: acl("bots", "add", "curl"))
                try harness.produce(topic: "changes", key: "c", value: "[\(acl("bots", "add", "wget")),\(acl("bots", "del", "from.file"))]")
                try harness.produce(topic: "changes", key: "h", value: #"{"map":"hosts","op":"set","key":"a.example.com","value":"be_a"}"#)
                try harness.produce(topic: "blocked", key: "198.51.100.7", value: "1")
                try harness.produce(topic: "blocked", key: "198.51.100.8", value: "1")
                try harness.produce(topic: "blocked", key: "198.51.100.8", value: nil)
                // Invalid: not an address for an ip ACL, an unknown ACL, a map's op on an ACL.
                try harness.produce(topic: "changes", key: "x", value: acl("blocklist", "add", "not-an-address"))
                try harness.produce(topic: "changes", key: "y", value: acl("nope", "add", "p"))
                try harness.produce(topic: "blocked", key: "bad address", value: "1")
                try harness.produce(topic: "changes", key: "z", value: #"{"acl":"bots","op":"set","pattern":"p"}"#)
                try harness.flush()

                let blocklist: Set<String> = ["203.0.113.0/24", "198.51.100.7"]
                let bots: Set<String> = ["curl", "wget"]
                try await waitUntil("the ACLs to converge and every offset to be committed", timeout: 90) {
                    live(haproxy, "blocklist")?.patterns == blocklist && live(haproxy, "bots")?.patterns == bots && harness.committedEverything()
                }
                #expect(live(haproxy, "blocklist")?.duplicates == [])
                // The file HAProxy loads holds the committed patterns, one per line.
                #expect(Set(try patterns(inFile: haproxy.mapPath("blocklist"))) == blocklist)
                #expect(try patterns(inFile: haproxy.mapPath("bots")) == ["from.file"], "write_acl_file: false leaves the file alone")
                let reader = try TopicReader(bootstrapServers: harness.cluster.bootstrapServers, topic: "changes.dlq")
                try await waitUntil("the dead letters", timeout: 30) { reader.messages.count >= 4 }
                let letters = reader.messages
                await reader.close()
                #expect(letters.count == 4)
                #expect(Set(letters.compactMap { $0.header("mapbridge.reason") }) == ["wrong_type", "unknown_acl", "space_in_key", "bad_op"], "\(letters)")

                let metrics = try httpGet(port: port, path: "/metrics").body
                #expect(metrics.contains("mapbridge_events_invalid_total{reason=\"unknown_acl\"} 1"), "\(metrics)")
                let sizes = metrics.split(separator: "\n").filter { $0.hasPrefix("mapbridge_map_entries{") }
                #expect(
                    sizes.contains { $0.contains("map=\"blocklist\"") && $0.contains("kind=\"acl\"") && Double($0.split(separator: " ").last ?? "") == 2 },
                    "\(sizes)")
                #expect(
                    sizes.contains { $0.contains("map=\"hosts\"") && $0.contains("kind=\"map\"") && Double($0.split(separator: " ").last ?? "") == 1 },
                    "\(sizes)")

                // A restart: HAProxy loads the blocklist from its file; the bots ACL, kept only in
                // HAProxy's memory, is resynchronised by the bridge.
                try await haproxy.restart()
                #expect(live(haproxy, "blocklist")?.patterns == blocklist, "HAProxy serves the stored file")
                try await waitUntil("the bridge to restore the in-memory ACL", timeout: 60) { live(haproxy, "bots")?.patterns == bots }
                // Changed behind the bridge's back: an intruder and a duplicate, then a restart of
                // the bridge, which compares and repairs.
                _ = try haproxy.oracle.run("add acl \(haproxy.mapPath("bots")) intruder")
                _ = try haproxy.oracle.run("add acl \(haproxy.mapPath("bots")) curl")
                #expect(try await bridge.terminate() == 0)
                let differs = try mapbridge("diff", bridge.configPath)
                #expect(differs.status == 1, "\(differs.output)")
                #expect(differs.output.contains("  extra intruder") && differs.output.contains("  duplicated curl"), "\(differs.output)")
                try bridge.start()
                try await waitUntil("the bridge to repair the ACL", timeout: 60) {
                    live(haproxy, "bots").map { $0.patterns == bots && $0.duplicates.isEmpty } ?? false
                }
                #expect(try await bridge.terminate() == 0)
                let check = try mapbridge("check", bridge.configPath)
                #expect(check.status == 0, "\(check.output)")
                #expect(check.output.contains("ACL blocklist") && check.output.contains("ACL bots"), "\(check.output)")
                #expect(check.output.contains("1 map, 2 ACLs, 2 topics"), "\(check.output)")
                let exact = try mapbridge("diff", bridge.configPath)
                #expect(exact.status == 0, "\(exact.output)")
                #expect(exact.output.contains("blocklist: exact (2 entries)") && exact.output.contains("bots: exact (2 entries)"), "\(exact.output)")
            }
        }
    }

    /// `mapbridge <command> --config <config>`, as a user runs it.
    func mapbridge(_ command: String, _ config: String) throws -> (status: Int32, output: String) {
        try CommandLineTests().mapbridge([command, "--config", config])
    }
}
