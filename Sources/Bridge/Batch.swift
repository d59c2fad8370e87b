import Consumer
import Mapper

/// An event that cannot be applied, with what a dead letter needs to carry. A class, so that
/// the record of every valid message carries one pointer rather than all of this.
public final class InvalidEvent: Sendable {
    public let label: String
    public let reason: String
    public let key: [UInt8]?
    public let value: [UInt8]?
    public let headers: [KafkaHeader]

    init(label: String, reason: String, key: [UInt8]?, value: [UInt8]?, headers: [KafkaHeader]) {
        self.label = label
        self.reason = reason
        self.key = key
        self.value = value
        self.headers = headers
    }
}

/// One consumed message: where it came from, and why it is invalid when it is.
struct MessageRecord: Sendable {
    var partition: TopicPartition
    var offset: Int64
    /// The message's timestamp in milliseconds since the epoch, when known.
    var timestamp: Int64?
    var invalid: InvalidEvent?
}

/// One valid change read from a message.
struct PendingChange: Sendable {
    var map: Int
    var key: MapKey
    var value: String?
    /// Its message's index in the batch's (or chunk's) messages.
    var message: Int
}

/// Messages and their changes, in arrival order: what the consumer hands over in one burst, and,
/// merged, what the pipeline applies as one batch.
struct Batch: Sendable {
    var messages: [MessageRecord] = []
    var changes: [PendingChange] = []
    /// Approximate memory held, in bytes.
    var bytes = 0
    /// When the oldest message arrived.
    var arrival = ContinuousClock.now

    var isEmpty: Bool { messages.isEmpty }

    /// What counts against the batch and backlog limits: every change, and every invalid message.
    var events: Int { changes.count + invalidCount }
    var invalidCount = 0

    mutating func append(_ other: Batch) {
        if messages.isEmpty { arrival = other.arrival }
        let base = messages.count
        messages.append(contentsOf: other.messages)
        changes.append(
            contentsOf: other.changes.lazy.map {
                var change = $0; change.message += base; return change
            })
        bytes += other.bytes
        invalidCount += other.invalidCount
    }

    /// Splits off the first messages holding at most `events` events; with `atLeastOne`, the first
    /// message goes even when it alone holds more.
    mutating func splitPrefix(events limit: Int, atLeastOne: Bool = true) -> Batch {
        var taken = 0
        var messageCount = 0
        var changeIndex = 0
        while messageCount < messages.count {
            var weight = messages[messageCount].invalid == nil ? 0 : 1
            var end = changeIndex
            while end < changes.count && changes[end].message == messageCount { end += 1 }
            weight += end - changeIndex
            if (messageCount > 0 || !atLeastOne) && taken + weight > limit { break }
            taken += weight
            changeIndex = end
            messageCount += 1
        }
        var prefix = Batch()
        prefix.arrival = arrival
        prefix.messages = Array(messages[..<messageCount])
        prefix.changes = Array(changes[..<changeIndex])
        prefix.invalidCount = prefix.messages.reduce(0) { $0 + ($1.invalid == nil ? 0 : 1) }
        prefix.bytes = messages.isEmpty ? 0 : bytes * messageCount / messages.count
        messages.removeFirst(messageCount)
        changes.removeFirst(changeIndex)
        for index in changes.indices { changes[index].message -= messageCount }
        invalidCount -= prefix.invalidCount
        bytes -= prefix.bytes
        return prefix
    }

    /// Drops the messages (and changes) of these partitions.
    mutating func remove(partitions: Set<TopicPartition>) {
        guard messages.contains(where: { partitions.contains($0.partition) }) else { return }
        var kept = Batch()
        kept.arrival = arrival
        var newIndex = [Int](repeating: -1, count: messages.count)
        for (index, message) in messages.enumerated() where !partitions.contains(message.partition) {
            newIndex[index] = kept.messages.count
            kept.messages.append(message)
            if message.invalid != nil { kept.invalidCount += 1 }
        }
        for change in changes where newIndex[change.message] >= 0 {
            var moved = change
            moved.message = newIndex[change.message]
            kept.changes.append(moved)
        }
        kept.bytes = messages.isEmpty ? 0 : bytes * kept.messages.count / messages.count
        self = kept
    }

    /// The last offset of each partition in the batch.
    var lastOffsets: [TopicPartition: Int64] {
        var result: [TopicPartition: Int64] = [:]
        for message in messages {
            if let known = result[message.partition], known >= message.offset { continue }
            result[message.partition] = message.offset
        }
        return result
    }
}
