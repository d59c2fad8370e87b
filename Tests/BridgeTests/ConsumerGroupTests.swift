import Bridge
import Consumer
import Core
import Foundation
import Kafka
import TestSupport
import Testing

/// How the bridge behaves as a member of its consumer group, and as a HAProxy client over TCP.
@Suite("Bridge in its consumer group", .serialized)
struct ConsumerGroupTests {
    final class Idle: KafkaConsumerDelegate, @unchecked Sendable {
        func consume(_ message: ConsumedMessage) {}
        func endOfBurst() -> FlowControl { .proceed }
        func assigned(_ partitions: [TopicPartition]) -> FlowControl { .proceed }
        func revoking(_ partitions: [TopicPartition], lost: Bool) -> [TopicPartition: Int64] { [:] }
        func committed(_ offsets: [TopicPartition: Int64], error: KafkaError?) {}
        func failed(_ error: KafkaError) {}
    }

    @Test("partitions taken by another member are never committed by the bridge again")
    func rebalanceStopsCommits() async throws {
        try await withHAProxy([TestMap("hosts")]) { haproxy in
            try await withBridgeHarness(topics: [("changes", 4)]) { harness in
                // The test is about group membership (`kafka.membership: group`); a short session
                // timeout keeps its rebalances quick.
                var bridge = harness.configuration(
                    socket: haproxy.endpoint, maps: [("hosts", haproxy.mapPath("hosts"))], topics: [.init(name: "changes", format: .json)])
                bridge.kafka.membership = .group
                bridge.kafka.properties = ["session.timeout.ms": "6000", "heartbeat.interval.ms": "500"]
                harness.start(bridge)
                for n in 0..<400 { try harness.produce(topic: "changes", key: "k\(n)", value: EndToEndTests.jsonEvent("hosts", "k\(n)", "v1")) }
                try harness.flush()
                try await waitUntil("the first round committed", timeout: 60) { harness.committedEverything() }

                // A second member joins: the rebalance moves half the partitions to it.
                var configuration = KafkaConsumer.Configuration(bootstrapServers: harness.cluster.bootstrapServers, groupID: "test-group", topics: ["changes"])
                configuration.membership = .group
                configuration.properties["session.timeout.ms"] = "6000"
                let other = try KafkaConsumer(configuration: configuration, delegate: Idle(), logger: harness.logger)
                try other.start()
                try await waitUntil("the other member to own two partitions", timeout: 60) { other.currentAssignment.count == 2 }
                let taken = other.currentAssignment
                let committedAtHandover = try harness.committedOffsets()

                for n in 0..<400 { try harness.produce(topic: "changes", key: "k\(n)", value: EndToEndTests.jsonEvent("hosts", "k\(n)", "v2")) }
                try harness.flush()
                let ends = harness.producedEnds
                try await waitUntil("the bridge's own partitions committed to their end", timeout: 60) {
                    let committed = (try? harness.committedOffsets()) ?? [:]
                    return ends.filter { !taken.contains($0.key) }.allSatisfy { committed[$0.key] == $0.value }
                }
                let committed = try harness.committedOffsets()
                for partition in taken {
                    #expect(committed[partition] == committedAtHandover[partition], "\(partition) moved after it was taken away")
                    #expect((committed[partition] ?? 0) < ends[partition]!, "\(partition)'s new events are the other member's")
                }
                // Only the keys of the bridge's own partitions carry v2.
                let values = Set(try haproxy.oracle.entries(of: haproxy.mapPath("hosts")).map(\.value))
                #expect(values == ["v1", "v2"])
                await other.close()
                try await harness.stop()
            }
        }
    }

    @Test("a fatal librdkafka error stops the bridge with that error, and nothing more is committed")
    func fatalErrorStops() async throws {
        // librdkafka 2.0.2's mock cluster does not fence static members (group.instance.id), the usual
        // cause of a consumer's fatal error, so the error is raised inside librdkafka instead.
        try await withHAProxy([TestMap("hosts")]) { haproxy in
            try await withBridgeHarness(topics: [("changes", 1)]) { harness in
                harness.start(
                    harness.configuration(
                        socket: haproxy.endpoint, maps: [("hosts", haproxy.mapPath("hosts"))], topics: [.init(name: "changes", format: .json)]))
                try harness.produce(topic: "changes", key: "a", value: EndToEndTests.jsonEvent("hosts", "a", "1"))
                try harness.flush()
                try await waitUntil("the first event committed", timeout: 60) { harness.committedEverything() }

                harness.service?.injectFatalKafkaError(code: 82, reason: "fenced by a newer instance")  // FENCED_INSTANCE_ID
                try await waitUntil("the bridge to stop by itself", timeout: 60) { harness.exit != nil }
                guard case .failure(let error)? = harness.exit else {
                    Issue.record("the bridge was expected to stop with the fatal error, not cleanly")
                    return
                }
                #expect("\(error)".contains("fatal"), "\(error)")
                #expect("\(error)".contains("FENCED_INSTANCE_ID"), "\(error)")
                let committed = try harness.committedOffsets()
                try harness.produce(topic: "changes", key: "b", value: EndToEndTests.jsonEvent("hosts", "b", "2"))
                try harness.flush()
                #expect(try harness.committedOffsets() == committed)
                #expect(try haproxy.oracle.entries(of: haproxy.mapPath("hosts")).map(\.key) == ["a"])
                await #expect(throws: (any Error).self) { try await harness.stop() }
            }
        }
    }

    @Test("the runtime API over tcp:// works like the unix socket")
    func tcpSocket() async throws {
        let port = try freePort()
        try await withHAProxy([TestMap("hosts")], tcpPort: port) { haproxy in
            try await withBridgeHarness(topics: [("changes", 2)]) { harness in
                harness.start(
                    harness.configuration(
                        socket: "tcp://127.0.0.1:\(port)", maps: [("hosts", haproxy.mapPath("hosts"))], topics: [.init(name: "changes", format: .json)]))
                for n in 0..<1000 {
                    try harness.produce(topic: "changes", key: "k\(n)", value: EndToEndTests.jsonEvent("hosts", "k\(n)", n % 2 == 0 ? "even" : "odd"))
                }
                try harness.flush()
                try await waitUntil("every offset committed", timeout: 60) { harness.committedEverything() }
                let (entries, duplicates) = try haproxy.oracle.snapshot(of: haproxy.mapPath("hosts"))
                #expect(entries.count == 1000 && duplicates.isEmpty)
                try await harness.stop()
            }
        }
    }
}
