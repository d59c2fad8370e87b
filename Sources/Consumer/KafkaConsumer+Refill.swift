import CRdKafka
import Core
import Dispatch
import Kafka
import Synchronization

/// Waking librdkafka's fetcher when the application has drained its queue (see
/// ``PrefetchRefill``): the request that wakes it runs on a queue of its own, one at a time, so
/// the polling thread never waits for a broker's answer.
final class FetcherWaker: Sendable {
    private let queue = DispatchQueue(label: "mapbridge-kafka-refill")
    private let inFlight = Atomic<Bool>(false)
    private let count = Atomic<Int>(0)

    /// How many times the fetcher was woken.
    var wakeUps: Int { count.load(ordering: .relaxed) }

    /// Asks the brokers leading `partitions` for their log end, which wakes their threads; does
    /// nothing (and returns false) while the previous request is unanswered.
    func wake(_ handle: OpaquePointer, _ partitions: [TopicPartition]) -> Bool {
        guard !partitions.isEmpty, inFlight.compareExchange(expected: false, desired: true, ordering: .acquiringAndReleasing).exchanged else {
            return false
        }
        count.add(1, ordering: .relaxed)
        nonisolated(unsafe) let handle = handle
        queue.async { [self] in
            // RD_KAFKA_OFFSET_END as the timestamp: the log end, the cheapest ListOffsets there is.
            _ = PartitionList.with(partitions.map { ($0, Int64(RD_KAFKA_OFFSET_END)) }) { list in
                rd_kafka_offsets_for_times(handle, list, 500)
            }
            self.inFlight.store(false, ordering: .releasing)
        }
        return true
    }

    /// Waits for a request under way (before the handle is destroyed).
    func drain() { queue.sync {} }
}

extension KafkaConsumer {
    /// How many times the consumer woke librdkafka's fetcher after draining its queue.
    public var fetcherWakeUps: Int { waker.wakeUps }

    /// Called between bursts on the polling thread: wakes the fetcher of the partitions this
    /// consumer is behind on when the queue has drained and nothing is arriving.
    func refillIfStalled() {
        let now = ContinuousClock.now
        guard polling.value.refill.isDue(now) else { return }
        guard let queue = polling.value.consumerQueue else { return }
        let queued = Int(rd_kafka_queue_length(queue))
        guard polling.value.refill.check(queued: queued, now: now), !pauseRequested else { return }
        if waker.wake(client.handle, partitionsBehind()) { polling.value.refill.woke() }
    }

    /// Assigned, unpaused partitions with a position (a message was consumed since they were
    /// assigned) before their log end as last fetched.
    private func partitionsBehind() -> [TopicPartition] {
        let active = assignment.subtracting(paused)
        guard !active.isEmpty else { return [] }
        let positions = PartitionList.with(active.map { ($0, Int64?.none) }) { list -> [(TopicPartition, Int64)] in
            guard rd_kafka_position(client.handle, list) == RD_KAFKA_RESP_ERR_NO_ERROR else { return [] }
            return PartitionList.read(list).filter { $0.2 == RD_KAFKA_RESP_ERR_NO_ERROR }.map { ($0.0, $0.1) }
        }
        return positions.compactMap { partition, position in
            guard position >= 0, let high = cachedHighWatermark(of: partition), position < high else { return nil }
            return partition
        }
    }
}
