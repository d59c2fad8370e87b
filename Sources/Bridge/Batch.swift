import Consumer
import Core
import Kafka
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
    /// How many changes it held (they may since be compacted into others').
    var changeCount: Int32 = 0
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
    /// The changes its messages held before any compaction.
    var changeEvents: Int { messages.reduce(0) { $0 + Int($1.changeCount) } }
    var invalidCount = 0
    /// No two changes share a (map, key), so coalescing has nothing to merge (see
    /// ``coalesced(mapCount:owners:)``). Only ever true when ``appendCompacting(_:index:)`` made it
    /// so (a chunk the backlog compacted as it arrived) or it came from such a batch whole or in
    /// part; false for a batch built any other way, which is merely the slower path.
    var keysDistinct = false

    mutating func append(_ other: Batch) {
        // Into an empty batch, as it is (no copy).
        guard !messages.isEmpty || bytes != 0 || invalidCount != 0 else {
            self = other
            return
        }
        if messages.isEmpty { arrival = other.arrival }
        // Two chunks' changes may share keys; either alone keeps what it knew.
        keysDistinct = changes.isEmpty ? other.keysDistinct : other.changes.isEmpty && keysDistinct
        let base = messages.count
        messages.append(contentsOf: other.messages)
        changes.append(
            contentsOf: other.changes.lazy.map {
                var change = $0
                change.message += base
                change.source += base
                return change
            })
        bytes += other.bytes
        invalidCount += other.invalidCount
    }

    /// How far a batch taken apart a prefix at a time has been taken
    /// (``takePrefix(from:events:atLeastOne:)``): its first message and change not taken yet, and
    /// the invalid messages and bytes already taken.
    struct Cursor: Equatable {
        var message = 0
        var change = 0
        var invalid = 0
        var bytes = 0
    }

    /// True when every message has been taken.
    func isTaken(by cursor: Cursor) -> Bool { cursor.message >= messages.count }

    /// Takes the first messages after `cursor` holding at most `events` events, as a batch of their
    /// own, and moves `cursor` past them; with `atLeastOne`, the first message goes even when it
    /// alone holds more. What they hold here (keys, values, invalid events) moves to the prefix, so
    /// it is released with it. Costs what it takes: removing each prefix from the front instead
    /// moved and renumbered the whole rest every time (a large chunk in W2 is taken 10,000
    /// events at a time, under the backlog's lock).
    mutating func takePrefix(from cursor: inout Cursor, events limit: Int, atLeastOne: Bool = true) -> Batch {
        let first = (message: cursor.message, change: cursor.change)
        var taken = 0
        var invalid = 0
        var messageEnd = first.message
        var changeEnd = first.change
        while messageEnd < messages.count {
            let isInvalid = messages[messageEnd].invalid != nil
            var end = changeEnd
            while end < changes.count && changes[end].message == messageEnd { end += 1 }
            let weight = end - changeEnd + (isInvalid ? 1 : 0)
            if (messageEnd > first.message || !atLeastOne) && taken + weight > limit { break }
            taken += weight
            if isInvalid { invalid += 1 }
            changeEnd = end
            messageEnd += 1
        }
        var prefix = Batch()
        prefix.arrival = arrival
        prefix.keysDistinct = keysDistinct
        // Moved, not copied: no reference counting, and nothing left here to release later.
        prefix.messages = Self.moveOut(first.message..<messageEnd, of: &messages, leaving: Self.vacantMessage)
        prefix.changes = Self.moveOut(first.change..<changeEnd, of: &changes, leaving: Self.vacantChange)
        prefix.invalidCount = invalid
        for index in prefix.changes.indices {
            prefix.changes[index].message -= first.message
            // Its deciding message stays behind (its value goes early, which a replay repeats).
            let source = prefix.changes[index].source
            prefix.changes[index].source = source < messageEnd ? source - first.message : prefix.changes[index].message
        }
        let remaining = messages.count - first.message
        prefix.bytes = remaining == 0 ? 0 : (bytes - cursor.bytes) * prefix.messages.count / remaining
        cursor = Cursor(
            message: messageEnd, change: changeEnd, invalid: cursor.invalid + prefix.invalidCount, bytes: cursor.bytes + prefix.bytes)
        return prefix
    }

    /// Drops what `cursor` took, and renumbers the rest from 0.
    mutating func removeTaken(_ cursor: Cursor) {
        guard cursor != Cursor() else { return }
        messages.removeFirst(cursor.message)
        changes.removeFirst(cursor.change)
        for index in changes.indices {
            changes[index].message -= cursor.message
            changes[index].source -= cursor.message
        }
        invalidCount -= cursor.invalid
        bytes -= cursor.bytes
    }

    /// The elements of `range` as an array of their own; `vacant` takes their places.
    private static func moveOut<Element>(_ range: Range<Int>, of elements: inout [Element], leaving vacant: Element) -> [Element] {
        elements.withUnsafeMutableBufferPointer { source in
            Array(unsafeUninitializedCapacity: range.count) { target, count in
                guard let from = source.baseAddress.map({ $0 + range.lowerBound }), let to = target.baseAddress, !range.isEmpty else { return }
                to.moveInitialize(from: from, count: range.count)
                from.initialize(repeating: vacant, count: range.count)
                count = range.count
            }
        }
    }

    /// What a taken message or change leaves in its place: nothing to release.
    private static let vacantMessage = MessageRecord(partition: TopicPartition("", 0), offset: 0, timestamp: nil, invalid: nil)
    private static let vacantChange = PendingChange(map: 0, key: MapKey(""), value: nil, message: 0)

    /// Drops the messages (and changes) of these partitions.
    mutating func remove(partitions: Set<TopicPartition>) {
        guard messages.contains(where: { partitions.contains($0.partition) }) else { return }
        var kept = Batch()
        kept.arrival = arrival
        kept.keysDistinct = keysDistinct
        var newIndex = [Int](repeating: -1, count: messages.count)
        for (index, message) in messages.enumerated() where !partitions.contains(message.partition) {
            newIndex[index] = kept.messages.count
            kept.messages.append(message)
            if message.invalid != nil { kept.invalidCount += 1 }
        }
        for change in changes where newIndex[change.message] >= 0 {
            var moved = change
            moved.message = newIndex[change.message]
            // Compacted changes come from one partition: the deciding message stays too.
            moved.source = newIndex[change.source] >= 0 ? newIndex[change.source] : moved.message
            kept.changes.append(moved)
        }
        kept.bytes = messages.isEmpty ? 0 : bytes * kept.messages.count / messages.count
        self = kept
    }

    /// The runs of consecutive messages from one partition, in order (a partition may have
    /// several). A batch holds long runs: what is looked up per partition is looked up once per
    /// run, not once per message (hashing each message's topic name was 3% of the bridge's time
    /// in W2).
    var runs: [Run] {
        var result: [Run] = []
        var index = messages.startIndex
        while index < messages.endIndex {
            let start = index
            let partition = messages[index].partition
            index += 1
            while index < messages.endIndex && messages[index].partition.partition == partition.partition
                && messages[index].partition.topic == partition.topic
            {
                index += 1
            }
            result.append((partition, start..<index))
        }
        return result
    }

    typealias Run = (partition: TopicPartition, messages: Range<Int>)

    /// The last offset of each partition in the batch.
    var lastOffsets: [TopicPartition: Int64] { lastOffsets(of: runs) }

    /// The last offset of each partition, from the batch's ``runs`` (computed once by a caller
    /// that needs them for more than this).
    func lastOffsets(of runs: [Run]) -> [TopicPartition: Int64] {
        var result: [TopicPartition: Int64] = [:]
        for run in runs {
            let highest = messages[run.messages].reduce(Int64.min) { max($0, $1.offset) }
            if let known = result[run.partition], known >= highest { continue }
            result[run.partition] = highest
        }
        return result
    }

    /// Each message's owner (`id` of its partition), asked once per run of the batch's ``runs``.
    func messageOwners(of runs: [Run], _ id: (TopicPartition) -> MapContents.Owner) -> [MapContents.Owner] {
        var owners: [MapContents.Owner] = []
        owners.reserveCapacity(messages.count)
        for run in runs { owners.append(contentsOf: repeatElement(id(run.partition), count: run.messages.count)) }
        return owners
    }

    /// Its changes reduced to one per (map, key) (``Coalescer``), each owned by its message's
    /// owner; without hashing a key when they are known distinct.
    func coalesced(mapCount: Int, owners: [MapContents.Owner] = []) -> [[KeyChange]] {
        keysDistinct
            ? Coalescer.distinct(changes, mapCount: mapCount, owners: owners)
            : Coalescer.coalesce(changes, mapCount: mapCount, owners: owners)
    }
}

extension Batch {
    /// Appends `other`, compacting each change into this batch's pending change of the same
    /// (map, key) from the same partition, exactly as ``Coalescer`` will reduce them: a set after a
    /// delete goes in as a change of its own (it re-enters the key at the end, where order
    /// matters); any other change replaces the value in place. Every message stays (its offset is
    /// committed with the batch); only changes are compacted, so that events of a busy key cost
    /// memory once while HAProxy is busy, and the batch that follows carries them all.
    mutating func appendCompacting(_ other: Batch, index: inout CompactionIndex) {
        if messages.isEmpty { arrival = other.arrival }
        // Every change goes through the index from the first: distinct until two must stay apart.
        if changes.isEmpty { keysDistinct = true }
        let base = messages.count
        messages.append(contentsOf: other.messages)
        invalidCount += other.invalidCount
        bytes += other.bytes
        for var change in other.changes {
            change.message += base
            change.source += base
            index.prepare(map: change.map)
            // One hash and probe per event: the slot is read and written in place.
            merge(change, into: &index.positions[change.map][change.key, default: .absent])
        }
    }

    private mutating func merge(_ change: PendingChange, into position: inout ChangePosition) {
        guard let at = position.index else {
            // Absent: the first change of the key; mixed: every change is kept as it came.
            if position == .absent { bytes += Self.indexBytes } else { keysDistinct = false }
            position = position == .absent ? ChangePosition(changes.count) : .mixed
            changes.append(change)
            return
        }
        let pending = changes[at]
        let sameSource = messages[pending.message].partition == messages[change.message].partition
        switch Compaction.merge(pendingIsDelete: pending.value == nil, incomingIsSet: change.value != nil, sameSource: sameSource) {
        case .separate:
            position = .mixed
            keysDistinct = false
            changes.append(change)
        case .reenter:
            // The delete stays: the batch's coalescing sees delete then set, and moves the key.
            keysDistinct = false
            position = ChangePosition(changes.count)
            changes.append(change)
        case .replace:
            bytes -= MessageIntake.changeBytes + MessageIntake.stringBytes(change.key.string) + (pending.value.map(MessageIntake.stringBytes) ?? 0)
            changes[at].value = change.value
            changes[at].source = change.source
            changes[at].events += change.events
        }
    }

    /// What one key of a ``CompactionIndex`` costs in memory (the key's string is shared).
    static let indexBytes = 40
}
