import Bridge
import Consumer
import Foundation
import Kafka
import Mapper
import TestSupport
import Testing

/// The state directory as users meet it: one that was there before, shared by two edges on one
/// host, or held by a bridge still running. The daemon runs as a child process with the
/// product's defaults; only the state directory is shared on purpose.
@Suite("State ownership (the daemon as a child process)", .serialized)
struct StateOwnershipTests {
    /// A configuration for one edge: its cluster, group and HAProxy, and a state directory.
    static func yaml(cluster: EmbeddedKafkaCluster, group: String, haproxy: HAProxyProcess, state: String) -> String {
        """
        kafka:
          brokers: "\(cluster.bootstrapServers)"
          group_id: \(group)
        haproxy:
          socket: "\(haproxy.endpoint)"
        topics:
          - name: changes
            format: json
        maps:
          hosts:
            path: \(haproxy.mapPath("hosts"))
        state: { directory: \(state) }
        http: { listen: "127.0.0.1:0" }
        """
    }

    static func produce(_ cluster: EmbeddedKafkaCluster, _ changes: [(String, String)]) throws {
        let producer = try KafkaProducer(bootstrapServers: cluster.bootstrapServers, logger: testLogger("test.producer"))
        for (key, value) in changes {
            try producer.produce(topic: "changes", key: Array(key.utf8), value: Array(EndToEndTests.jsonEvent("hosts", key, value).utf8))
        }
        try producer.flush()
    }

    static func live(_ haproxy: HAProxyProcess) -> [String: String] {
        let entries = (try? haproxy.oracle.entries(of: haproxy.mapPath("hosts"))) ?? []
        return Dictionary(entries.map { ($0.key, $0.value) }, uniquingKeysWith: { first, _ in first })
    }

    /// Runs `body` with two edges' worlds: two HAProxy instances, two clusters, one shared state
    /// directory, and the first edge's bridge run to completion with 500 entries stored.
    func withTwoEdges(
        _ body: (_ first: HAProxyProcess, _ second: HAProxyProcess, _ clusters: [EmbeddedKafkaCluster], _ state: TemporaryDirectory) async throws -> Void
    )
        async throws
    {
        try await withHAProxy([TestMap("hosts")]) { first in
            try await withHAProxy([TestMap("hosts")]) { second in
                let directory = try TemporaryDirectory(prefix: "mapbridge-ownership")
                defer { directory.remove() }
                let clusters = try (0..<2).map { _ in try EmbeddedKafkaCluster(logger: testLogger("test.cluster")) }
                for cluster in clusters { try cluster.createTopic("changes", partitions: 2) }
                let edge = try BridgeProcess(
                    yaml: Self.yaml(cluster: clusters[0], group: "edge-1", haproxy: first, state: directory.file("state")), directory: directory, name: "edge-1"
                )
                try edge.start()
                try Self.produce(clusters[0], (0..<500).map { ("k\($0).example.com", "be_first") })
                try await waitUntil("the first edge to apply its entries", timeout: 60) { Self.live(first).count == 500 }
                // A graceful stop stores the state before its last commit.
                #expect(try await edge.terminate() == 0)
                try await body(first, second, clusters, directory)
            }
        }
    }

    @Test("another edge (other cluster, group and HAProxy) on the same state.directory gets none of the first edge's entries")
    func otherEdgeSharesTheDirectory() async throws {
        try await withTwoEdges { first, second, clusters, directory in
            let other = try BridgeProcess(
                yaml: Self.yaml(cluster: clusters[1], group: "edge-2", haproxy: second, state: directory.file("state")), directory: directory, name: "edge-2")
            try other.start()
            try Self.produce(clusters[1], [("own.example.com", "be_second")])
            try await waitUntil("the second edge to apply its own change", timeout: 60) { Self.live(second)["own.example.com"] == "be_second" }
            #expect(Self.live(second) == ["own.example.com": "be_second"], "only its own change, none of the first edge's 500")
            #expect(try await other.terminate() == 0)
            // Each group keeps its state in a folder of its own.
            #expect(FileManager.default.fileExists(atPath: directory.file("state/edge-1/hosts.state")))
            #expect(FileManager.default.fileExists(atPath: directory.file("state/edge-2/hosts.state")))
        }
    }

    @Test("state of the same group but another HAProxy map, or another Kafka cluster, is refused: exit 2, naming the directory and the difference")
    func foreignStateRefused() async throws {
        try await withTwoEdges { first, second, clusters, directory in
            // The same group id, another HAProxy: its map path differs from the stored one.
            let otherHAProxy = try BridgeProcess(
                yaml: Self.yaml(cluster: clusters[1], group: "edge-1", haproxy: second, state: directory.file("state")), directory: directory,
                name: "other-haproxy")
            try otherHAProxy.start()
            #expect(try await otherHAProxy.waitForExit(timeout: 60) == 2)
            #expect(!otherHAProxy.logLines(containing: directory.file("state/edge-1")).isEmpty, "the error names the directory")
            #expect(!otherHAProxy.logLines(containing: second.mapPath("hosts")).isEmpty, "and the map path that differs")
            #expect(Self.live(second).isEmpty, "nothing of the stored state reached the other HAProxy")

            // The same group and HAProxy, another cluster: the stored offsets mean nothing there.
            let otherCluster = try BridgeProcess(
                yaml: Self.yaml(cluster: clusters[1], group: "edge-1", haproxy: first, state: directory.file("state")), directory: directory,
                name: "other-cluster")
            try Self.produce(clusters[1], [("from-the-other-cluster.example.com", "be_other")])
            try otherCluster.start()
            #expect(try await otherCluster.waitForExit(timeout: 60) == 2)
            #expect(!otherCluster.logLines(containing: "Kafka cluster").isEmpty, "the error names the cluster")
            #expect(Self.live(first)["from-the-other-cluster.example.com"] == nil, "nothing was consumed from the other cluster")
            #expect(Self.live(first).count == 500)
        }
    }

    @Test("stored offsets beyond the end of a partition's log (a topic deleted and created again) are refused: exit 2")
    func offsetsBeyondTheLog() async throws {
        try await withTwoEdges { first, _, clusters, directory in
            // What a topic deleted and created again looks like from the state directory: offsets
            // far past the new log's end (written the way the bridge writes them).
            let offsetsPath = directory.file("state/edge-1/offsets")
            var offsets = try #require(try StateFiles.readOffsets(path: offsetsPath))
            offsets["changes:0"] = 1_000_000
            try StateFiles.writeAtomically(path: offsetsPath, bytes: StateFiles.offsetsFile(offsets))
            let again = try BridgeProcess(
                yaml: Self.yaml(cluster: clusters[0], group: "edge-1", haproxy: first, state: directory.file("state")), directory: directory, name: "again")
            try again.start()
            #expect(try await again.waitForExit(timeout: 60) == 2)
            #expect(!again.logLines(containing: "changes[0] is at 1000000 but its log ends at").isEmpty, "\(again.log().suffix(600))")
        }
    }

    @Test("a second bridge on the same state directory waits as a standby, and takes over at once when the first is killed")
    func standbyTakesOver() async throws {
        try await withHAProxy([TestMap("hosts")]) { haproxy in
            let directory = try TemporaryDirectory(prefix: "mapbridge-standby")
            defer { directory.remove() }
            let cluster = try EmbeddedKafkaCluster(logger: testLogger("test.cluster"))
            try cluster.createTopic("changes", partitions: 2)
            let yaml = Self.yaml(cluster: cluster, group: "edge", haproxy: haproxy, state: directory.file("state"))
            let active = try BridgeProcess(yaml: yaml, directory: directory, name: "active")
            let standby = try BridgeProcess(yaml: yaml, directory: directory, name: "standby")
            defer {
                active.kill9()
                standby.kill9()
            }
            try active.start()
            try Self.produce(cluster, [("a.example.com", "be_a")])
            try await waitUntil("the first bridge to apply", timeout: 60) { Self.live(haproxy)["a.example.com"] == "be_a" }
            try standby.start()
            try await waitUntil("the second bridge to wait as a standby", timeout: 30) {
                !standby.logLines(containing: "another mapbridge holds the state directory").isEmpty
            }
            #expect(standby.logLines(containing: "partitions assigned").isEmpty, "a standby consumes nothing")
            active.kill9()
            try Self.produce(cluster, [("b.example.com", "be_b")])
            try await waitUntil("the standby to take over and apply", timeout: 30) { Self.live(haproxy)["b.example.com"] == "be_b" }
            #expect(!standby.logLines(containing: "took over the state directory").isEmpty)
            #expect(Self.live(haproxy) == ["a.example.com": "be_a", "b.example.com": "be_b"])
            #expect(try await standby.terminate() == 0)
        }
    }
}
