import Foundation
import TestSupport
import Testing

/// The order a graceful shutdown takes, as the daemon's children express it.
@Suite("Shutdown order", .serialized)
struct ShutdownOrderTests {
    @Test("SIGTERM: the pipeline's final store and commit, then the consumer closed (leaving the group), then the dead-letter producer")
    func order() async throws {
        try await withHAProxy([TestMap("hosts")]) { haproxy in
            try await withBridgeHarness(topics: [("changes", 1), ("changes.dlq", 1)]) { harness in
                let directory = try TemporaryDirectory(prefix: "mapbridge-shutdown")
                defer { directory.remove() }
                // Debug logs: the test reads the order of the shutdown's steps from them. No HTTP
                // endpoint: tests run side by side, and the default port would be shared.
                let yaml = """
                    kafka: { brokers: "\(harness.cluster.bootstrapServers)", group_id: test-group }
                    haproxy: { socket: "\(haproxy.endpoint)" }
                    topics: [{ name: changes }]
                    maps: { hosts: { path: \(haproxy.mapPath("hosts")) } }
                    dead_letter: { topic: changes.dlq }
                    state: { directory: \(directory.file("state")) }
                    http: { listen: "off" }
                    log: { level: debug }
                    """
                let bridge = try BridgeProcess(yaml: yaml, directory: directory)
                try bridge.start()
                defer { if bridge.isRunning { bridge.kill9() } }
                try harness.produce(topic: "changes", key: "k", value: #"{"map":"hosts","op":"set","key":"k","value":"v"}"#)
                try harness.produce(topic: "changes", key: "bad", value: "not json")
                try harness.flush()
                try await waitUntil("the events applied and committed", timeout: 60) { harness.committedEverything() }
                #expect(try await bridge.terminate() == 0)
                let log = bridge.log()
                let steps = ["the pipeline stopped", "closed the consumer", "closed the dead-letter producer", "mapbridge stopped cleanly"]
                let positions = steps.map { log.range(of: $0)?.lowerBound }
                #expect(positions.allSatisfy { $0 != nil }, "\(steps) in:\n\(log.suffix(3000))")
                let found = positions.compactMap { $0 }
                #expect(found == found.sorted(), "out of order:\n\(log.suffix(3000))")
            }
        }
    }
}
