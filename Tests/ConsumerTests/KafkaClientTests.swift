import Core
import Foundation
import Kafka
import Logging
import TestSupport
import Testing

@testable import Consumer

/// Records what a consumer reports, for assertions.
final class RecordingDelegate: KafkaConsumerDelegate, @unchecked Sendable {
    struct Record: Equatable {
        var partition: TopicPartition
        var offset: Int64
        var key: [UInt8]?
        var value: [UInt8]?
        var headers: [KafkaHeader]
    }

    private let lock = NSLock()
    private var records: [Record] = []
    private var assignedPartitions: [TopicPartition] = []
    private var revokedPartitions: [TopicPartition] = []
    var commitOnRevoke: @Sendable ([TopicPartition]) -> [TopicPartition: Int64] = { _ in [:] }
    /// The answer to every burst.
    var flowControl: FlowControl = .proceed
    private var pauseCount = 0
    var pauses: Int { lock.withLock { pauseCount } }

    var messages: [Record] { lock.withLock { records } }
    var assigned: [TopicPartition] { lock.withLock { assignedPartitions } }
    var revoked: [TopicPartition] { lock.withLock { revokedPartitions } }

    func consume(_ message: ConsumedMessage) {
        let record = Record(
            partition: message.topicPartition, offset: message.offset, key: message.keyBytes, value: message.valueBytes, headers: message.headers())
        lock.withLock { records.append(record) }
    }
    func endOfBurst() -> FlowControl {
        lock.withLock {
            if flowControl == .pause && !records.isEmpty { pauseCount += 1 }
            return records.isEmpty ? .proceed : flowControl
        }
    }
    func assigned(_ partitions: [TopicPartition]) -> FlowControl {
        lock.withLock { assignedPartitions += partitions }
        return .proceed
    }
    func revoking(_ partitions: [TopicPartition], lost: Bool) -> [TopicPartition: Int64] {
        lock.withLock { revokedPartitions += partitions }
        return commitOnRevoke(partitions)
    }
    func committed(_ offsets: [TopicPartition: Int64], error: KafkaError?) {}
    func failed(_ error: KafkaError) {}
}

@Suite("librdkafka consumer and producer against the embedded cluster", .serialized)
struct KafkaClientTests {
    static let logger = testLogger("test.kafka")

    func consumer(
        _ cluster: EmbeddedKafkaCluster, group: String, topics: [String], delegate: RecordingDelegate, strategy: AssignmentStrategy? = nil
    ) throws -> KafkaConsumer {
        var configuration = KafkaConsumer.Configuration(bootstrapServers: cluster.bootstrapServers, groupID: group, topics: topics)
        if let strategy {
            // The tests of group membership: a short session timeout, because they are about
            // rebalances, which the 45 s default would only slow down.
            configuration.membership = .group
            configuration.assignmentStrategy = strategy
            configuration.properties["session.timeout.ms"] = "6000"
            configuration.properties["heartbeat.interval.ms"] = "500"
        }
        return try KafkaConsumer(configuration: configuration, delegate: delegate, logger: Self.logger)
    }

    @Test("every message arrives once, in partition order, with keys, headers and tombstones intact")
    func consumesEverything() async throws {
        let cluster = try EmbeddedKafkaCluster(logger: Self.logger)
        try cluster.createTopic("events", partitions: 3)
        let producer = try KafkaProducer(bootstrapServers: cluster.bootstrapServers, logger: Self.logger)
        for index in 0..<900 {
            try producer.produce(
                topic: "events", key: Array("k\(index % 50)".utf8), value: index % 10 == 0 ? nil : Array("v\(index)".utf8),
                headers: index == 1 ? [KafkaHeader("trace", "abc"), KafkaHeader("empty", nil)] : [])
        }
        try producer.flush()
        let delegate = RecordingDelegate()
        let consumer = try consumer(cluster, group: "g1", topics: ["events"], delegate: delegate)
        try consumer.start()
        try await waitUntil("900 messages") { delegate.messages.count >= 900 }
        let messages = delegate.messages
        #expect(messages.count == 900)
        #expect(messages.filter { $0.value == nil }.count == 90)
        #expect(messages.first { $0.value == Array("v1".utf8) }?.headers == [KafkaHeader("trace", "abc"), KafkaHeader("empty", nil)])
        for partition in Set(messages.map(\.partition)) {
            let offsets = messages.filter { $0.partition == partition }.map(\.offset)
            #expect(offsets == Array(0..<Int64(offsets.count)))
        }
        await consumer.close()
    }

    @Test("only explicit commits move the group's offsets, and they move exactly there")
    func explicitCommits() async throws {
        let cluster = try EmbeddedKafkaCluster(logger: Self.logger)
        try cluster.createTopic("events", partitions: 2)
        let producer = try KafkaProducer(bootstrapServers: cluster.bootstrapServers, logger: Self.logger)
        for index in 0..<100 { try producer.produce(topic: "events", key: Array("\(index)".utf8), value: [1], partition: Int32(index % 2)) }
        try producer.flush()
        let delegate = RecordingDelegate()
        let consumer = try consumer(cluster, group: "g2", topics: ["events"], delegate: delegate)
        try consumer.start()
        try await waitUntil("100 messages") { delegate.messages.count >= 100 }
        let partitions = [TopicPartition("events", 0), TopicPartition("events", 1)]
        let before = try await consumer.committedOffsets(partitions)
        #expect(before.values.allSatisfy { $0 < 0 }, "nothing committed automatically: \(before)")
        try await consumer.commitNow([partitions[0]: 17, partitions[1]: 42])
        #expect(try await consumer.committedOffsets(partitions) == [partitions[0]: 17, partitions[1]: 42])
        consumer.commit([partitions[0]: 50])
        try await waitUntil("the asynchronous commit") { (try await consumer.committedOffsets(partitions))[partitions[0]] == 50 }
        await consumer.close()

        // A new member of the group starts from the committed offsets.
        let second = RecordingDelegate()
        let again = try self.consumer(cluster, group: "g2", topics: ["events"], delegate: second)
        try again.start()
        try await waitUntil("the uncommitted rest") { second.messages.count >= 8 }
        #expect(second.messages.filter { $0.partition == partitions[1] }.map(\.offset).first == 42)
        #expect(second.messages.filter { $0.partition == partitions[0] }.isEmpty)
        await again.close()
    }

    @Test("pausing and resuming loses and repeats nothing")
    func pauseResume() async throws {
        let cluster = try EmbeddedKafkaCluster(logger: Self.logger)
        try cluster.createTopic("events", partitions: 2)
        let producer = try KafkaProducer(bootstrapServers: cluster.bootstrapServers, logger: Self.logger)
        let delegate = RecordingDelegate()
        // The delegate asks for a pause after every burst; only a resume fetches more.
        delegate.flowControl = .pause
        let consumer = try consumer(cluster, group: "g3", topics: ["events"], delegate: delegate)
        try consumer.start()
        try await waitUntil("an assignment") { consumer.currentAssignment.count == 2 }
        var produced = 0
        for _ in 0..<5 {
            for _ in 0..<400 {
                try producer.produce(topic: "events", key: Array("\(produced)".utf8), value: Array("\(produced)".utf8))
                produced += 1
            }
            try producer.flush()
            consumer.resume()
        }
        try await waitUntil("every message") {
            consumer.resume()
            return delegate.messages.count >= produced
        }
        // At least once: the first burst is answered with a pause (how many bursts the messages
        // come in depends on timing).
        #expect(delegate.pauses >= 1, "the consumer paused")
        let values = delegate.messages.compactMap { $0.value.map { String(decoding: $0, as: UTF8.self) } }
        #expect(values.count == produced)
        #expect(Set(values).count == produced)
        await consumer.close()
    }

    /// Counts messages and the long waits between two of them.
    final class GapDelegate: KafkaConsumerDelegate, @unchecked Sendable {
        private let lock = NSLock()
        private var last: ContinuousClock.Instant?
        private var received = 0
        private var gaps: [Duration] = []
        let longGap: Duration

        init(longGap: Duration) { self.longGap = longGap }

        var count: Int { lock.withLock { received } }
        var longGaps: [Duration] { lock.withLock { gaps } }

        func consume(_ message: ConsumedMessage) {
            let now = ContinuousClock.now
            lock.withLock {
                if let last, now - last >= longGap { gaps.append(now - last) }
                last = now
                received += 1
            }
        }
        func endOfBurst() -> FlowControl { .proceed }
        func assigned(_ partitions: [TopicPartition]) -> FlowControl { .proceed }
        func revoking(_ partitions: [TopicPartition], lost: Bool) -> [TopicPartition: Int64] { [:] }
        func committed(_ offsets: [TopicPartition: Int64], error: KafkaError?) {}
        func failed(_ error: KafkaError) {}
    }

    /// librdkafka 2.0.2 stops fetching once its queue holds `queued.min.messages` (or
    /// `queued.max.messages.kbytes`) and looks again only when its broker thread next wakes, up to
    /// a second later: a consumer far behind then read a bound's worth of messages a second, with
    /// most of each second spent waiting. The consumer now wakes the fetcher when it has drained
    /// the queue. With the product's defaults, 300,000 small messages are several times the
    /// queue's bound: without the wake-up every refill waits for the rest of a second (0.5-1 s
    /// here, five or more times); with it, no wait between two messages comes near half a second.
    @Test("a consumer far behind reads on without waiting a second at each refill of librdkafka's queue")
    func refillsWithoutStalls() async throws {
        let cluster = try EmbeddedKafkaCluster(logger: Self.logger)
        try cluster.createTopic("backlog", partitions: 8)
        let producer = try KafkaProducer(bootstrapServers: cluster.bootstrapServers, logger: Self.logger)
        let total = 300_000
        let value = Array("a value of twenty b.".utf8)
        for index in 0..<total { try producer.produce(topic: "backlog", key: Array("k\(index % 1000)".utf8), value: value) }
        try producer.flush()
        let delegate = GapDelegate(longGap: .milliseconds(500))
        let configuration = KafkaConsumer.Configuration(bootstrapServers: cluster.bootstrapServers, groupID: "refill", topics: ["backlog"])
        let consumer = try KafkaConsumer(configuration: configuration, delegate: delegate, logger: Self.logger)
        try consumer.start()
        try await waitUntil("every message", timeout: 120) { delegate.count >= total }
        let gaps = delegate.longGaps
        // One long wait is tolerated (a busy machine can stall a thread); the stall this is about
        // happens at every refill.
        #expect(gaps.count <= 1, "waits of half a second or more between two messages: \(gaps)")
        #expect(consumer.fetcherWakeUps > 0)
        #expect(delegate.count == total)
        await consumer.close()
    }

    /// The prefetch's bounds must not refuse a configuration librdkafka accepts by itself: an
    /// explicit `fetch.max.bytes` below `message.max.bytes` is an error at creation, so the
    /// consumer leaves it to librdkafka, which fits it between the two.
    @Test("a consumer configured for messages larger than its prefetch bound is created")
    func largeMessages() throws {
        var configuration = KafkaConsumer.Configuration(bootstrapServers: "127.0.0.1:1", groupID: "large", topics: ["events"])
        configuration.properties["message.max.bytes"] = "\(16 << 20)"
        _ = try KafkaConsumer(configuration: configuration, delegate: RecordingDelegate(), logger: Self.logger)
    }

    /// A consumer never started (or whose start failed) destroys its handle as it goes away,
    /// and librdkafka serves what is queued meanwhile: an error about a broker it could not
    /// reach reached a callback holding the consumer unowned, and stopped the process.
    @Test("a consumer dropped without being started, with an error waiting in its queue, goes away quietly")
    func droppedUnstarted() async throws {
        let configuration = KafkaConsumer.Configuration(bootstrapServers: "127.0.0.1:1", groupID: "dropped", topics: ["events"])
        var consumer: KafkaConsumer? = try KafkaConsumer(configuration: configuration, delegate: RecordingDelegate(), logger: Self.logger)
        try await waitUntil("librdkafka queued the connection error") { (consumer?.queuedEvents ?? 0) > 0 }
        consumer = nil
        #expect(consumer == nil)
    }

    @Test("a second member takes half the partitions; the first is asked before giving them up", arguments: [AssignmentStrategy.cooperativeSticky, .range])
    func rebalance(strategy: AssignmentStrategy) async throws {
        let cluster = try EmbeddedKafkaCluster(logger: Self.logger)
        try cluster.createTopic("events", partitions: 4)
        let first = RecordingDelegate()
        let one = try consumer(cluster, group: "g4", topics: ["events"], delegate: first, strategy: strategy)
        try one.start()
        try await waitUntil("all four partitions", timeout: 30) { one.currentAssignment.count == 4 }
        let second = RecordingDelegate()
        let two = try consumer(cluster, group: "g4", topics: ["events"], delegate: second, strategy: strategy)
        try two.start()
        try await waitUntil("a split assignment", timeout: 60) { one.currentAssignment.count == 2 && two.currentAssignment.count == 2 }
        #expect(one.currentAssignment.isDisjoint(with: two.currentAssignment))
        #expect(Set(first.revoked).isSuperset(of: two.currentAssignment))
        await two.close()
        try await waitUntil("the first to get them back", timeout: 60) { one.currentAssignment.count == 4 }
        await one.close()
    }

    @Test("secrets never appear in configuration errors or redacted settings")
    func secrets() {
        var settings = KafkaSettings([
            "sasl.password": "hunter2-secret", "ssl.key.password": "k3y-pass", "security.protocol": "SASL_SSL", "bootstrap.servers": "x:1",
        ])
        #expect(settings.redacted["sasl.password"] == "<redacted>")
        #expect(settings.redacted["security.protocol"] == "SASL_SSL")
        settings["sasl.mechanism"] = "hunter2-secret"  // an invalid value that echoes a secret
        do {
            _ = try KafkaProducer(bootstrapServers: "127.0.0.1:1", properties: settings, logger: Self.logger)
            Issue.record("an invalid property must be refused")
        } catch {
            #expect(!"\(error)".contains("hunter2-secret"), "\(error)")
        }
        settings["sasl.mechanism"] = nil
        settings["no.such.property"] = "hunter2-secret"
        do {
            _ = try KafkaProducer(bootstrapServers: "127.0.0.1:1", properties: settings, logger: Self.logger)
            Issue.record("an unknown property must be refused")
        } catch {
            #expect(!"\(error)".contains("hunter2-secret"), "\(error)")
            #expect("\(error)".contains("no.such.property"), "\(error)")
        }
    }
}

@Suite("Consumer across broker outages", .serialized)
struct BrokerOutageTests {
    @Test("after the broker is down and up again, consumption resumes", arguments: [AssignmentStrategy.cooperativeSticky, .range])
    func outage(strategy: AssignmentStrategy) async throws {
        let cluster = try EmbeddedKafkaCluster(logger: KafkaClientTests.logger)
        try cluster.createTopic("events", partitions: 4)
        let producer = try KafkaProducer(bootstrapServers: cluster.bootstrapServers, logger: KafkaClientTests.logger)
        let delegate = RecordingDelegate()
        var configuration = KafkaConsumer.Configuration(bootstrapServers: cluster.bootstrapServers, groupID: "outage", topics: ["events"])
        // Group membership, both strategies: the test is about a group rejoining after an outage
        // (direct membership is covered by the bridge's own broker-fault test); a short session
        // timeout, which the test is not about, keeps it quick.
        configuration.membership = .group
        configuration.assignmentStrategy = strategy
        configuration.properties["session.timeout.ms"] = "6000"
        configuration.properties["heartbeat.interval.ms"] = "500"
        if let debug = ProcessInfo.processInfo.environment["RDKAFKA_DEBUG"] { configuration.properties["debug"] = debug }
        let consumer = try KafkaConsumer(configuration: configuration, delegate: delegate, logger: KafkaClientTests.logger)
        try consumer.start()
        for index in 0..<200 { try producer.produce(topic: "events", key: Array("\(index)".utf8), value: [1]) }
        try producer.flush()
        try await waitUntil("the first messages", timeout: 30) { delegate.messages.count >= 200 }
        // Commit what was received every 200 ms, as the bridge does, through the whole outage.
        let committer = Task {
            while !Task.isCancelled {
                var next: [TopicPartition: Int64] = [:]
                for message in delegate.messages { next[message.partition] = max(next[message.partition] ?? 0, message.offset + 1) }
                consumer.commit(next)
                try await Task.sleep(for: .milliseconds(200))
            }
        }
        defer { committer.cancel() }
        cluster.failRequests(
            .offsetCommit,
            with: [KafkaErrorCode.requestTimedOut, KafkaErrorCode.requestTimedOut, KafkaErrorCode.notCoordinator, KafkaErrorCode.coordinatorNotAvailable])
        for index in 0..<50 { try producer.produce(topic: "events", key: Array("\(index)".utf8), value: [4]) }
        try producer.flush()
        try await waitUntil("messages after the commit errors", timeout: 60) { delegate.messages.count >= 250 }
        cluster.failRequests(.fetch, with: Array(repeating: KafkaErrorCode.notLeaderForPartition, count: 5))
        for index in 0..<50 { try producer.produce(topic: "events", key: Array("\(index)".utf8), value: [3]) }
        try producer.flush()
        try await waitUntil("messages after the fetch errors", timeout: 60) { delegate.messages.count >= 300 }
        try cluster.setBroker(1, up: false)
        // Longer than the session timeout: the group evicts the member, whose assignment is lost.
        let until = ContinuousClock.now + .seconds(8)
        try await waitUntil("8 s of outage", timeout: 15) { ContinuousClock.now >= until }
        try cluster.setBroker(1, up: true)
        for index in 0..<200 { try producer.produce(topic: "events", key: Array("\(index)".utf8), value: [2]) }
        try producer.flush()
        try await waitUntil("the messages after the outage", timeout: 60) { delegate.messages.count >= 500 }
        await consumer.close()
    }
}
