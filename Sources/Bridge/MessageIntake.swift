import Consumer
import Core
import Events
import Kafka
import Logging
import Mapper
import Synchronization

/// The consumer's delegate: on the polling thread it decodes and validates each message, gathers a
/// burst into a chunk for the backlog, pauses the consumer when the backlog is full, and answers
/// rebalances once the pipeline has finished what is in flight for the partitions.
///
/// Decoding and validation happen here, on the polling thread, so the pipeline task only
/// coalesces and applies: the two run on different cores.
final class MessageIntake: KafkaConsumerDelegate, Sendable {
    private let backlog: Backlog
    private let checker: EventChecker
    private let formats: [String: EventFormat]
    private let revokeTimeoutMilliseconds: Int
    private let logger: Logger
    let commits = CommitLedger()
    /// What the polling thread gathers between bursts. Only that thread takes the lock, so it is
    /// never contended (about 20 ns a message); it lets the compiler check what confinement alone
    /// promised before.
    private let gathering = Mutex(Gathering())

    private struct Gathering {
        var chunk = Batch()
        var scratch: [DecodedChange] = []
        var lastTopic: (name: String, format: EventFormat?)?
    }
    /// The next offset to consume per partition, published at the end of each burst.
    private let positions = Mutex<[TopicPartition: Int64]>([:])

    private let store: StateStore?

    init(configuration: BridgeConfiguration, backlog: Backlog, store: StateStore?, logger: Logger) {
        self.backlog = backlog
        self.store = store
        checker = EventChecker(configuration: configuration)
        formats = configuration.topicFormats
        revokeTimeoutMilliseconds = configuration.kafka.revokeTimeoutMilliseconds
        self.logger = logger
    }

    func consume(_ message: ConsumedMessage) {
        gathering.withLock { state in
            let format: EventFormat?
            if let lastTopic = state.lastTopic, lastTopic.name == message.topic {
                format = lastTopic.format
            } else {
                format = formats[message.topic]
                state.lastTopic = (message.topic, format)
            }
            if state.chunk.messages.isEmpty { state.chunk.arrival = .now }
            let messageIndex = state.chunk.messages.count
            var record = MessageRecord(partition: message.topicPartition, offset: message.offset, timestamp: message.timestamp, invalid: nil)
            state.scratch.removeAll(keepingCapacity: true)
            var failure: (label: String, reason: String)?
            if let format {
                failure = checker.check(key: message.key, value: message.value, format: format, into: &state.scratch)
            } else {
                failure = ("unknown_topic", "topic \(message.topic) is not configured")
            }
            if let failure {
                record.invalid = InvalidEvent(
                    label: failure.label, reason: failure.reason, key: message.keyBytes, value: message.valueBytes, headers: message.headers())
                state.chunk.invalidCount += 1
                state.chunk.bytes += 128 + (message.key?.count ?? 0) + (message.value?.count ?? 0)
            } else {
                record.changeCount = Int32(state.scratch.count)
                for change in state.scratch {
                    state.chunk.changes.append(PendingChange(map: change.map, key: MapKey(change.key), value: change.value, message: messageIndex))
                    state.chunk.bytes += Self.changeBytes + Self.stringBytes(change.key) + (change.value.map(Self.stringBytes) ?? 0)
                }
            }
            state.chunk.messages.append(record)
            state.chunk.bytes += Self.messageBytes
        }
    }

    /// What a message record and a change cost in memory, besides their strings (measured from
    /// the struct layouts with their array slots).
    static let messageBytes = MemoryLayout<MessageRecord>.stride + 16
    static let changeBytes = MemoryLayout<PendingChange>.stride + 16

    /// A string's heap storage: none up to 15 UTF-8 bytes (stored inline), else its bytes plus a header.
    static func stringBytes(_ text: String) -> Int {
        let count = text.utf8.count
        return count <= 15 ? 0 : count + 32
    }

    /// Messages the broker holds that this bridge has not consumed yet, from the consumer's high
    /// watermarks (refreshed every second, so possibly behind).
    func unconsumed(highWatermarks: [TopicPartition: Int64], assigned: Set<TopicPartition>) -> Int64 {
        let consumed = positions.withLock { $0 }
        var total: Int64 = 0
        for (partition, high) in highWatermarks where assigned.contains(partition) {
            // A partition not consumed from yet counts as nothing known: its start is unknown here.
            guard let next = consumed[partition] else { continue }
            total += max(0, high - next)
        }
        return total
    }

    /// Hands the chunk to the backlog; pauses the consumer when that filled it.
    func endOfBurst() -> FlowControl {
        let chunk = gathering.withLock { state -> Batch? in
            guard !state.chunk.isEmpty else { return nil }
            defer { state.chunk = Batch() }
            return state.chunk
        }
        guard let chunk else { return .proceed }
        let last = chunk.lastOffsets
        positions.withLock { positions in
            for (partition, offset) in last { positions[partition] = offset + 1 }
        }
        let full = backlog.push(chunk)
        guard full else { return .proceed }
        let size = backlog.size
        logger.notice(
            "backlog full: pausing consumption until HAProxy catches up", metadata: ["backlog.events": "\(size.events)", "backlog.bytes": "\(size.bytes)"])
        return .pause
    }

    func assigned(_ partitions: [TopicPartition]) -> FlowControl {
        let flow = endOfBurst()
        backlog.pushAssigned(partitions)
        return flow
    }

    func startingOffsets(_ partitions: [TopicPartition]) -> [TopicPartition: Int64] {
        guard let store else { return [:] }
        do {
            return try store.storedOffsets(partitions)
        } catch {
            logger.error("cannot read the stored offsets; starting from the committed ones", metadata: ["error": "\(error)"])
            return [:]
        }
    }

    /// The consumer hands over what was gathered (``endOfBurst()``) before it asks.
    func revoking(_ partitions: [TopicPartition], lost: Bool) -> [TopicPartition: Int64] {
        backlog.remove(partitions: Set(partitions))
        let request = RevokeRequest(partitions: partitions, lost: lost)
        guard backlog.push(request) else { return [:] }
        guard let offsets = request.wait(milliseconds: revokeTimeoutMilliseconds) else {
            logger.warning(
                "the batch in flight did not finish in time: giving up partitions without committing them (their new owner replays from the last commit)",
                metadata: ["kafka.partitions": "\(partitions.sorted())", "kafka.revoke_timeout_ms": "\(revokeTimeoutMilliseconds)"])
            return [:]
        }
        return lost ? [:] : offsets
    }

    /// Set when the consumer reached a cluster the stored state does not belong to.
    private let refusalStorage = Mutex<ForeignStateError?>(nil)
    var refusal: ForeignStateError? { refusalStorage.withLock { $0 } }

    func verify(clusterID: String?) -> KafkaError? {
        guard let store else { return nil }
        do {
            try store.verifyCluster(clusterID)
            return nil
        } catch let error as ForeignStateError {
            refusalStorage.withLock { $0 = error }
            return KafkaError(.operation, error.description)
        } catch {
            return KafkaError(.operation, "cannot record the Kafka cluster in the state directory: \(error)")
        }
    }

    func verify(storedOffsets beyond: [TopicPartition: (stored: Int64, logEnd: Int64)]) -> KafkaError? {
        let details = beyond.sorted { $0.key < $1.key }.map { "\($0.key) is at \($0.value.stored) but its log ends at \($0.value.logEnd)" }
        let error = ForeignStateError(
            directory: store?.directory ?? "?",
            problems: [
                "its offsets are beyond the end of the partitions' logs (a topic deleted and created again, or another cluster): \(details.joined(separator: ", "))"
            ])
        refusalStorage.withLock { $0 = error }
        return KafkaError(.operation, error.description)
    }

    func committed(_ offsets: [TopicPartition: Int64], error: KafkaError?) {
        commits.record(offsets, error: error)
    }

    func failed(_ error: KafkaError) {
        backlog.fail(error)
    }
}

/// Outcomes of asynchronous commits, recorded on the polling thread and read by the pipeline.
final class CommitLedger: Sendable {
    private let outcomes = Mutex<[(offsets: [TopicPartition: Int64], error: KafkaError?)]>([])

    func record(_ offsets: [TopicPartition: Int64], error: KafkaError?) {
        outcomes.withLock { $0.append((offsets, error)) }
    }

    func drain() -> [(offsets: [TopicPartition: Int64], error: KafkaError?)] {
        outcomes.withLock { outcomes in
            defer { outcomes.removeAll() }
            return outcomes
        }
    }
}
