import CRdKafka
import Core
import Foundation
import Kafka
import Logging
import Synchronization

/// How partitions are shared among the members of a consumer group.
public enum AssignmentStrategy: String, Sendable, CaseIterable {
    /// Incremental (cooperative) rebalancing: members keep their partitions across a rebalance.
    case cooperativeSticky = "cooperative-sticky"
    /// Eager rebalancing: every member gives up every partition on each rebalance.
    case range
    case roundrobin
}

/// How a consumer gets its partitions.
public enum Membership: String, Sendable, CaseIterable {
    /// Every partition of the topics, assigned by the consumer itself: no group membership, so a
    /// restart after a crash consumes at once instead of waiting for the group to time the dead
    /// member out (`session.timeout.ms`, 45 s by default). The group is used only to store
    /// committed offsets, where lag tools read them. New partitions are picked up as they appear.
    case direct
    /// A member of the consumer group, subscribed: the group shares the partitions among its
    /// members and moves them on rebalances.
    case group
}

/// The delegate's answer to a burst or an assignment: whether the consumer goes on fetching.
public enum FlowControl: Sendable, Equatable {
    case proceed
    /// Stop fetching from every assigned partition (and those assigned later) until ``KafkaConsumer/resume()``.
    case pause
}

/// What the consumer reports to its owner. Every method is called on the consumer's polling thread.
public protocol KafkaConsumerDelegate: AnyObject, Sendable {
    /// One message; valid only during the call.
    func consume(_ message: ConsumedMessage)
    /// The poll came back empty, or a burst of messages reached its size: hand over what was
    /// gathered. The answer is carried out on the polling thread before anything else it does.
    func endOfBurst() -> FlowControl
    /// These partitions are now ours; their messages follow.
    func assigned(_ partitions: [TopicPartition]) -> FlowControl
    /// Where the owner's durable state says consumption of these partitions should resume (the
    /// next offset its state does not reflect), for the partitions it knows. The consumer starts
    /// each partition at the lower of this and the group's committed offset.
    func startingOffsets(_ partitions: [TopicPartition]) -> [TopicPartition: Int64]
    /// These partitions are being taken away. Return, for each partition that should be committed
    /// before they go, the next offset to consume. When `lost` is true (the group evicted us),
    /// nothing is committed whatever is returned. The polling thread waits for the answer, so it
    /// must come within a bounded time.
    func revoking(_ partitions: [TopicPartition], lost: Bool) -> [TopicPartition: Int64]
    /// The outcome of an asynchronous commit.
    func committed(_ offsets: [TopicPartition: Int64], error: KafkaError?)
    /// The cluster the consumer reached (its id from the metadata, nil when the broker has none),
    /// before any partition is assigned. An error stops the consumer: it is reported through
    /// ``failed(_:)`` and nothing is consumed.
    func verify(clusterID: String?) -> KafkaError?
    /// Stored offsets (from ``startingOffsets(_:)``) beyond their partition's log end: the state
    /// was built from another log. An error stops the consumer, as for ``verify(clusterID:)``.
    func verify(storedOffsets beyond: [TopicPartition: (stored: Int64, logEnd: Int64)]) -> KafkaError?
    /// librdkafka reported a fatal error; the consumer has stopped.
    func failed(_ error: KafkaError)
}

extension KafkaConsumerDelegate {
    public func startingOffsets(_ partitions: [TopicPartition]) -> [TopicPartition: Int64] { [:] }
    public func verify(clusterID: String?) -> KafkaError? { nil }
    public func verify(storedOffsets beyond: [TopicPartition: (stored: Int64, logEnd: Int64)]) -> KafkaError? { nil }
}

/// librdkafka's high-level consumer, polled on a thread of its own so that nothing blocks the Swift
/// concurrency pool. Offsets are never stored or committed automatically: only ``commit(_:)`` and
/// ``commitNow(_:)`` commit, with exactly the offsets given. Every librdkafka call on the handle
/// happens on the polling thread, but for the request that wakes librdkafka's fetcher (see
/// ``FetcherWaker``); other threads enqueue commands.
public final class KafkaConsumer: Sendable {
    enum Command {
        case commit([TopicPartition: Int64])
        case commitNow([TopicPartition: Int64], OneShot)
        case pause
        case resume
        /// Work on the handle; `abandon` answers its caller when the consumer closes first.
        case query(run: @Sendable (OpaquePointer) -> Void, abandon: @Sendable () -> Void)
    }

    struct Shared {
        var lifecycle = ConsumerLifecycle<Command, CheckedContinuation<Void, Never>>()
        var assignment: Set<TopicPartition> = []
        var fatal: KafkaError?
        var highWatermarks: [TopicPartition: Int64] = [:]
    }

    public let configuration: Configuration
    let client: RdKafkaClient
    let delegate: any KafkaConsumerDelegate
    let logger: Logger
    let shared = Mutex(Shared())
    /// The polling thread's own state (see ``ThreadBound``); reached through the properties below.
    let polling: ThreadBound<Polling>
    let waker = FetcherWaker()

    struct Polling {
        var assignment: Set<TopicPartition> = []
        var paused: Set<TopicPartition> = []
        var pauseRequested = false
        var topicNames: [UnsafeMutableRawPointer: String] = [:]
        /// Offsets to commit, merged, one asynchronous commit unanswered at a time.
        var commits = CommitQueue()
        /// Whether the cluster was checked with the delegate (before the first assignment).
        var clusterVerified = false
        /// Direct membership: when the topics are next checked for partitions, and the topics not
        /// found so far (each reported once).
        var nextDiscovery = ContinuousClock.now
        var missingTopics: Set<String> = []
        /// When to wake librdkafka's fetcher (see ``PrefetchRefill``).
        var refill: PrefetchRefill
        /// The queue every partition's messages are forwarded to (read for its length), held
        /// while the polling thread runs.
        var consumerQueue: OpaquePointer?
    }

    // The polling thread's state, by name (checked to be used on that thread only).
    var assignment: Set<TopicPartition> {
        _read { yield polling.value.assignment }
        _modify { yield &polling.value.assignment }
    }
    var paused: Set<TopicPartition> {
        _read { yield polling.value.paused }
        _modify { yield &polling.value.paused }
    }
    var pauseRequested: Bool {
        _read { yield polling.value.pauseRequested }
        _modify { yield &polling.value.pauseRequested }
    }
    private var topicNames: [UnsafeMutableRawPointer: String] {
        _read { yield polling.value.topicNames }
        _modify { yield &polling.value.topicNames }
    }
    var commits: CommitQueue {
        _read { yield polling.value.commits }
        _modify { yield &polling.value.commits }
    }
    var clusterVerified: Bool {
        _read { yield polling.value.clusterVerified }
        _modify { yield &polling.value.clusterVerified }
    }
    var nextDiscovery: ContinuousClock.Instant {
        _read { yield polling.value.nextDiscovery }
        _modify { yield &polling.value.nextDiscovery }
    }
    var missingTopics: Set<String> {
        _read { yield polling.value.missingTopics }
        _modify { yield &polling.value.missingTopics }
    }

    public init(configuration: Configuration, delegate: any KafkaConsumerDelegate, logger: Logger) throws(KafkaError) {
        self.configuration = configuration
        self.delegate = delegate
        self.logger = logger
        let callbacks = RdKafkaClient.Callbacks(logger: logger, settings: configuration.settings)
        client = try RdKafkaClient.make(RD_KAFKA_CONSUMER, settings: configuration.settings, callbacks: callbacks)
        polling = ThreadBound(Polling(refill: PrefetchRefill(settings: configuration.settings.properties)))
        // Weak: a consumer dropped without being started (or whose start failed) destroys its
        // handle as it goes away, and librdkafka may call back meanwhile (a broker it could not
        // reach); an unowned reference then stopped the process. A started consumer's polling
        // thread holds it until the handle is destroyed, so these calls always find it then.
        callbacks.rebalance = { [weak self] handle, error, partitions in
            self?.rebalance(handle, error, partitions)
        }
        callbacks.commit = { [weak self] error, offsets in
            guard let self else { return }
            let done = Dictionary(offsets.map { ($0.0, $0.1) }, uniquingKeysWith: { $1 })
            let failure =
                error == RD_KAFKA_RESP_ERR_NO_ERROR
                ? offsets.first { $0.2 != RD_KAFKA_RESP_ERR_NO_ERROR }.map { KafkaError(.operation, "commit of \($0.0)", $0.2) }
                : KafkaError(.operation, "commit", error)
            // Runs inside a poll on the polling thread: the next, merged commit may go now.
            self.commits.answered()
            self.delegate.committed(done, error: failure)
            self.sendPendingCommit()
        }
        callbacks.error = { [weak self] error, fatal in
            guard let self else { return }
            if fatal {
                self.logger.critical("librdkafka fatal error; the consumer stops", metadata: ["error": "\(error.reason)"])
                self.shared.withLock { $0.fatal = $0.fatal ?? error }
            } else {
                self.logger.warning("librdkafka reported an error (it retries by itself)", metadata: ["error": "\(error.reason)"])
            }
        }
        rd_kafka_poll_set_consumer(client.handle)
    }

    /// Subscribes (group membership) and starts the polling thread, which assigns every partition
    /// itself in direct membership.
    public func start() throws(KafkaError) {
        if configuration.membership == .group {
            let topics = rd_kafka_topic_partition_list_new(Int32(configuration.topics.count))!
            defer { rd_kafka_topic_partition_list_destroy(topics) }
            for topic in configuration.topics {
                rd_kafka_topic_partition_list_add(topics, topic, RD_KAFKA_PARTITION_UA)
            }
            let error = rd_kafka_subscribe(client.handle, topics)
            guard error == RD_KAFKA_RESP_ERR_NO_ERROR else { throw KafkaError(.operation, "subscribe to \(configuration.topics)", error) }
        }
        guard shared.withLock({ $0.lifecycle.start() }) == .startPolling else { return }
        // The thread holds the consumer until its loop ends, and no longer.
        let thread = Thread { [self] in self.pollLoop() }
        thread.name = "mapbridge-kafka-poll"
        thread.start()
        logger.info(
            "consumer started",
            metadata: [
                "kafka.brokers": "\(configuration.bootstrapServers)", "kafka.group": "\(configuration.groupID)",
                "kafka.topics": "\(configuration.topics.joined(separator: ","))", "kafka.membership": "\(configuration.membership.rawValue)",
            ])
    }

    /// Commits these offsets (the next offset to consume per partition) without waiting.
    public func commit(_ offsets: [TopicPartition: Int64]) {
        guard !offsets.isEmpty else { return }
        enqueue(.commit(offsets))
    }

    /// Commits these offsets and waits for the group coordinator's answer, at most `timeout`: then
    /// it throws, and the commit may still complete in the background.
    public func commitNow(_ offsets: [TopicPartition: Int64], timeout: Duration = .seconds(30)) async throws {
        guard !offsets.isEmpty else { return }
        let answer = OneShot()
        guard enqueue(.commitNow(offsets, answer)) else { throw KafkaError(.operation, "the consumer is closed") }
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await answer.wait() }
            group.addTask {
                try await Task.sleep(for: timeout)
                // No answer in time: stop waiting (the commit may still complete in the background).
                let late = KafkaError(.operation, "the commit got no answer within \(timeout)")
                answer.resume(throwing: late)
                throw late
            }
            // The first to finish decides: the answer, or the timeout.
            defer { group.cancelAll() }
            try await group.next()
        }
    }

    /// An outcome delivered once, to a waiter that may come before or after it.
    final class OneShot: Sendable {
        private struct State {
            var waiter: CheckedContinuation<Void, any Error>?
            var outcome: Result<Void, any Error>?
            var delivered = false
        }
        private let state = Mutex(State())

        /// Waits for the outcome (at most one waiter).
        func wait() async throws {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                let outcome = state.withLock { state -> Result<Void, any Error>? in
                    guard let outcome = state.outcome else {
                        state.waiter = continuation
                        return nil
                    }
                    state.outcome = nil
                    return outcome
                }
                if let outcome { continuation.resume(with: outcome) }
            }
        }

        /// Delivers the outcome (nil: success); only the first call counts.
        func resume(throwing error: (any Error)? = nil) {
            let outcome: Result<Void, any Error> = error.map { .failure($0) } ?? .success(())
            let waiter = state.withLock { state -> CheckedContinuation<Void, any Error>? in
                guard !state.delivered else { return nil }
                state.delivered = true
                guard let waiter = state.waiter else {
                    state.outcome = outcome
                    return nil
                }
                state.waiter = nil
                return waiter
            }
            waiter?.resume(with: outcome)
        }
    }

    /// Fetches again after the delegate answered ``FlowControl/pause``. A pause stops fetching from
    /// every assigned partition (and from those assigned later) while the group membership stays
    /// alive; librdkafka drops what it prefetched, and fetching resumes from the position after
    /// the last message handed over.
    public func resume() { enqueue(.resume) }

    /// How many partitions each topic has, from the cluster's metadata (asked on the polling thread).
    public func partitionCounts(_ topics: [String], timeoutMilliseconds: Int32 = 5000) async throws -> [String: Int32] {
        try await ask { handle in
            var counts: [String: Int32] = [:]
            for topic in topics {
                switch Self.partitionCount(handle, topic, timeoutMilliseconds: timeoutMilliseconds) {
                case .success(let count?): counts[topic] = count
                case .success(nil): break
                case .failure(let error): return .failure(error)
                }
            }
            return .success(counts)
        }
    }

    /// Runs `body` on the polling thread and returns its result; throws when the consumer closes first.
    private func ask<T: Sendable>(_ body: @escaping @Sendable (OpaquePointer) -> Result<T, KafkaError>) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            let closed = KafkaError(.operation, "the consumer is closed")
            let accepted = enqueue(
                .query(
                    run: { handle in continuation.resume(with: body(handle).mapError { $0 as any Error }) },
                    abandon: { continuation.resume(throwing: closed) }))
            if !accepted { continuation.resume(throwing: closed) }
        }
    }

    /// Raises a fatal error inside librdkafka (`rd_kafka_test_fatal_error`), exactly as a real one
    /// would arrive: for fault-injection tests of what happens next.
    public func injectFatalError(code: Int32, reason: String) {
        enqueue(
            .query(
                run: { handle in _ = rd_kafka_test_fatal_error(handle, rd_kafka_resp_err_t(rawValue: code), reason) },
                abandon: {}))
    }

    /// The end of each assigned partition's log (the next offset to be written) as last seen in
    /// fetch responses, refreshed every second: with the committed offsets, the consumer's lag.
    public var highWatermarks: [TopicPartition: Int64] { shared.withLock { $0.highWatermarks } }

    /// Reads the cached high watermarks (no request to the broker) on the polling thread.
    private func readHighWatermarks() {
        var marks: [TopicPartition: Int64] = [:]
        for partition in assignment {
            if let high = cachedHighWatermark(of: partition) { marks[partition] = high }
        }
        shared.withLock { $0.highWatermarks = marks }
    }

    /// The partition's log end as last seen in a fetch response (no request to the broker).
    func cachedHighWatermark(of partition: TopicPartition) -> Int64? {
        var low: Int64 = -1
        var high: Int64 = -1
        guard rd_kafka_get_watermark_offsets(client.handle, partition.topic, partition.partition, &low, &high) == RD_KAFKA_RESP_ERR_NO_ERROR, high >= 0
        else { return nil }
        return high
    }

    /// Events (errors, rebalances, messages) waiting in the consumer's queue, for tests.
    var queuedEvents: Int { Int(rd_kafka_outq_len(client.handle)) }

    /// The partitions currently assigned to this member.
    public var currentAssignment: Set<TopicPartition> { shared.withLock { $0.assignment } }

    /// The fatal error that stopped the consumer, if any.
    public var fatalError: KafkaError? { shared.withLock { $0.fatal } }

    /// The group's committed offsets for these partitions (asks the coordinator).
    public func committedOffsets(_ partitions: [TopicPartition], timeoutMilliseconds: Int32 = 10000) async throws -> [TopicPartition: Int64] {
        try await ask { handle in
            PartitionList.with(partitions.map { ($0, nil) }) { list in
                let error = rd_kafka_committed(handle, list, timeoutMilliseconds)
                guard error == RD_KAFKA_RESP_ERR_NO_ERROR else { return .failure(KafkaError(.operation, "committed offsets", error)) }
                return .success(Dictionary(PartitionList.read(list).map { ($0.0, $0.1) }, uniquingKeysWith: { $1 }))
            }
        }
    }

    /// Leaves the group (revoking every partition through the delegate) and stops the polling
    /// thread, waiting for it at most `timeout`: a thread still blocked in librdkafka then (a
    /// commit whose answer is late) is left to finish on its own, and false is returned.
    @discardableResult
    public func close(timeout: Duration = .seconds(5)) async -> Bool {
        switch shared.withLock({ $0.lifecycle.close() }) {
        case .closed: return true
        case .wakeAndWait: rd_kafka_yield(client.handle)
        case .wait: break
        }
        let closed = await withTaskGroup(of: Bool.self) { group in
            group.addTask { await self.waitForPollingEnd() }
            group.addTask {
                try? await Task.sleep(for: timeout)
                return false
            }
            let first = await group.next() ?? false
            group.cancelAll()
            return first
        }
        if !closed {
            logger.warning("the consumer did not close in time (a request to the broker is still unanswered); not waiting for it")
        }
        return closed
    }

    /// Returns true when the polling thread has ended, false when cancelled first.
    private func waitForPollingEnd() async -> Bool {
        let id = Mutex<Int?>(nil)
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let added = shared.withLock { $0.lifecycle.addWaiter(continuation) }
                if let added { id.withLock { $0 = added } } else { continuation.resume() }
                if Task.isCancelled, let added, let waiter = shared.withLock({ $0.lifecycle.removeWaiter(added) }) { waiter.resume() }
            }
        } onCancel: {
            if let added = id.withLock({ $0 }), let waiter = shared.withLock({ $0.lifecycle.removeWaiter(added) }) { waiter.resume() }
        }
        return shared.withLock { $0.lifecycle.state == .closed }
    }

    @discardableResult
    private func enqueue(_ command: Command) -> Bool {
        let accepted = shared.withLock { $0.lifecycle.enqueue(command) }
        if accepted { rd_kafka_yield(client.handle) }
        return accepted
    }

    // MARK: - The polling thread

    private func pollLoop() {
        polling.bindToCurrentThread()
        polling.value.consumerQueue = rd_kafka_queue_get_consumer(client.handle)
        var burst = 0
        var watermarksRead = ContinuousClock.now
        while true {
            // Between bursts (a burst is at most `maximumBurst` messages, handed over at once):
            // commands, stopping, watermarks and partition discovery. Within one, only polls, so
            // that a message costs no clock reading and no lock.
            if burst == 0 {
                let now = ContinuousClock.now
                if now - watermarksRead >= .seconds(1) {
                    watermarksRead = now
                    readHighWatermarks()
                }
                let (turn, fatal) = shared.withLock { ($0.lifecycle.nextTurn(), $0.fatal) }
                let (commands, stopping) = turn
                for command in commands { execute(command) }
                if configuration.membership == .direct && !stopping && fatal == nil && now >= nextDiscovery {
                    discoverPartitions()
                    continue
                }
                if let fatal {
                    delegate.failed(fatal)
                    break
                }
                if stopping { break }
            }
            guard let message = rd_kafka_consumer_poll(client.handle, burst > 0 ? 0 : configuration.pollTimeoutMilliseconds) else {
                if burst > 0 {
                    follow(delegate.endOfBurst())
                    burst = 0
                }
                refillIfStalled()
                continue
            }
            if message.pointee.err == RD_KAFKA_RESP_ERR__FATAL {
                // A fatal error reaches a consumer through its queue as well as through error_cb.
                var text = [CChar](repeating: 0, count: 512)
                let underlying = rd_kafka_fatal_error(client.handle, &text, text.count)
                let error = KafkaError(.fatal, "\(String(cString: rd_kafka_err2name(underlying))): \(configuration.settings.scrub(string(fromBuffer: text)))")
                logger.critical("librdkafka fatal error; the consumer stops", metadata: ["error": "\(error.reason)"])
                shared.withLock { $0.fatal = $0.fatal ?? error }
            } else if message.pointee.err != RD_KAFKA_RESP_ERR_NO_ERROR {
                let error = KafkaError(.operation, "consume", message.pointee.err)
                logger.warning("consumer error (librdkafka retries by itself)", metadata: ["error": "\(error.reason)"])
            } else {
                delegate.consume(view(of: message))
                polling.value.refill.consumed(payloadBytes: message.pointee.len)
                burst += 1
            }
            rd_kafka_message_destroy(message)
            if burst >= configuration.maximumBurst {
                follow(delegate.endOfBurst())
                burst = 0
                refillIfStalled()
            }
        }
        // Leaving the group revokes every partition through the rebalance callback.
        let error = rd_kafka_consumer_close(client.handle)
        if error != RD_KAFKA_RESP_ERR_NO_ERROR {
            logger.warning("closing the consumer", metadata: ["error": "\(String(cString: rd_kafka_err2str(error)))"])
        }
        logger.info(
            configuration.membership == .group ? "consumer closed; left the group" : "consumer closed", metadata: ["kafka.group": "\(configuration.groupID)"])
        // Destroyed here, on this thread: destroying blocks, and must not run on the Swift pool.
        waker.drain()
        if let queue = polling.value.consumerQueue { rd_kafka_queue_destroy(queue) }
        polling.value.consumerQueue = nil
        client.destroy(flags: RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE)
        let (unexecuted, waiters) = shared.withLock { $0.lifecycle.pollingEnded() }
        for case .commitNow(_, let answer) in unexecuted {
            answer.resume(throwing: KafkaError(.operation, "the consumer closed before committing"))
        }
        for case .query(_, let abandon) in unexecuted { abandon() }
        for waiter in waiters { waiter.resume() }
    }

    private func view(of message: UnsafeMutablePointer<rd_kafka_message_t>) -> ConsumedMessage {
        let pointee = message.pointee
        let topicKey = UnsafeMutableRawPointer(pointee.rkt)!
        let topic: String
        if let known = topicNames[topicKey] {
            topic = known
        } else {
            topic = String(cString: rd_kafka_topic_name(pointee.rkt))
            topicNames[topicKey] = topic
        }
        var timestampType = RD_KAFKA_TIMESTAMP_NOT_AVAILABLE
        let timestamp = rd_kafka_message_timestamp(message, &timestampType)
        return ConsumedMessage(
            topic: topic, partition: pointee.partition, offset: pointee.offset,
            timestamp: timestampType == RD_KAFKA_TIMESTAMP_NOT_AVAILABLE ? nil : timestamp,
            key: pointee.key.map { UnsafeRawBufferPointer(start: $0, count: pointee.key_len) },
            value: pointee.payload.map { UnsafeRawBufferPointer(start: $0, count: pointee.len) },
            raw: message)
    }

    /// Carries out the delegate's flow control at once, on the polling thread: a pause decided
    /// before a resume is always carried out before it (the resume comes as a command).
    func follow(_ flow: FlowControl) {
        if flow == .pause { execute(.pause) }
    }

    func execute(_ command: Command) {
        switch command {
        case .commit(let offsets):
            commits.request(offsets)
            sendPendingCommit()
        case .commitNow(let offsets, let answer):
            answer.resume(throwing: commitSynchronously(offsets))
        case .pause:
            pauseRequested = true
            setPaused(assignment.subtracting(paused), true)
        case .resume:
            pauseRequested = false
            setPaused(paused, false)
        case .query(let run, _):
            run(client.handle)
        }
    }

    /// Sends what ``CommitQueue`` says may go now, as one asynchronous commit.
    func sendPendingCommit() {
        guard case .send(let offsets, let abandoned) = commits.next(assigned: assignment, now: .now) else { return }
        if abandoned { logger.warning("an offset commit got no answer for a minute; sending the next one") }
        let error = PartitionList.with(offsets.map { ($0.key, $0.value) }) { rd_kafka_commit(client.handle, $0, 1) }
        if error != RD_KAFKA_RESP_ERR_NO_ERROR {
            commits.answered()
            delegate.committed(offsets, error: KafkaError(.operation, "commit", error))
        } else {
            commits.sent(at: .now)
        }
    }

    /// Commits and waits, serving the result on a temporary queue (not the consumer's).
    func commitSynchronously(_ offsets: [TopicPartition: Int64]) -> KafkaError? {
        final class Outcome: @unchecked Sendable {
            var error: rd_kafka_resp_err_t = RD_KAFKA_RESP_ERR_NO_ERROR; var partitions: [(TopicPartition, Int64, rd_kafka_resp_err_t)] = []
        }
        let outcome = Outcome()
        let error = PartitionList.with(offsets.map { ($0.key, $0.value) }) { list in
            rd_kafka_commit_queue(
                client.handle, list, nil,
                { _, error, offsets, opaque in
                    let outcome = Unmanaged<Outcome>.fromOpaque(opaque!).takeUnretainedValue()
                    outcome.error = error
                    outcome.partitions = PartitionList.read(offsets)
                }, Unmanaged.passUnretained(outcome).toOpaque())
        }
        withExtendedLifetime(outcome) {}
        if error != RD_KAFKA_RESP_ERR_NO_ERROR { return KafkaError(.operation, "commit", error) }
        if outcome.error != RD_KAFKA_RESP_ERR_NO_ERROR { return KafkaError(.operation, "commit", outcome.error) }
        if let failed = outcome.partitions.first(where: { $0.2 != RD_KAFKA_RESP_ERR_NO_ERROR }) {
            return KafkaError(.operation, "commit of \(failed.0)", failed.2)
        }
        return nil
    }

    func setPaused(_ partitions: Set<TopicPartition>, _ pause: Bool) {
        guard !partitions.isEmpty else { return }
        let error = PartitionList.with(partitions.map { ($0, nil) }) { list in
            pause ? rd_kafka_pause_partitions(client.handle, list) : rd_kafka_resume_partitions(client.handle, list)
        }
        if error != RD_KAFKA_RESP_ERR_NO_ERROR {
            logger.warning("\(pause ? "pausing" : "resuming") partitions failed", metadata: ["error": "\(String(cString: rd_kafka_err2str(error)))"])
            return
        }
        if pause { paused.formUnion(partitions) } else { paused.subtract(partitions) }
        logger.debug("\(pause ? "paused" : "resumed") partitions", metadata: ["kafka.partitions": "\(partitions.sorted())"])
    }
}
