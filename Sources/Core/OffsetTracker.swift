import DequeModule

/// Which offsets are safe to commit: per partition, the end of the longest run of finished work
/// from where tracking started. Work is registered in offset order (as messages arrive) and may
/// finish in any order (a batch is acknowledged by HAProxy, a dead letter by its broker later); an
/// offset is committable only when it and everything before it in its partition is finished.
///
/// Revoking a partition forgets it; work registered before that can still be finished but no
/// longer counts, even if the partition comes back (each assignment is a new epoch).
public struct OffsetTracker: Sendable {
    /// A registered unit of work in one partition.
    public struct Ticket: Hashable, Sendable {
        public let partition: TopicPartition
        let epoch: UInt64
        let sequence: UInt64
    }

    private struct Segment {
        /// The next offset after this unit's messages.
        var end: Int64
        var pending: Int
    }

    private struct PartitionState {
        var epoch: UInt64
        var firstSequence: UInt64 = 0
        var segments = Deque<Segment>()
        /// The next offset to consume after the finished prefix.
        var committable: Int64?
        var committed: Int64?
    }

    private var partitions: [TopicPartition: PartitionState] = [:]
    private var nextEpoch: UInt64 = 1

    public init() {}

    /// Registers work on the messages of `partition` up to and including `lastOffset`, finished
    /// after `parts` calls to ``finish(_:parts:)``.
    public mutating func register(_ partition: TopicPartition, through lastOffset: Int64, parts: Int = 1) -> Ticket {
        if partitions[partition] == nil {
            partitions[partition] = PartitionState(epoch: nextEpoch)
            nextEpoch += 1
        }
        let state = partitions[partition]!
        let sequence = state.firstSequence + UInt64(state.segments.count)
        partitions[partition]!.segments.append(Segment(end: lastOffset + 1, pending: parts))
        let ticket = Ticket(partition: partition, epoch: state.epoch, sequence: sequence)
        if parts <= 0 { finish(ticket, parts: 0) }
        return ticket
    }

    /// Adds parts to a registered unit that has not finished (a dead letter to produce, say).
    public mutating func addParts(_ ticket: Ticket, _ parts: Int) {
        guard let index = index(of: ticket), partitions[ticket.partition]!.segments[index].pending > 0 else { return }
        partitions[ticket.partition]!.segments[index].pending += parts
    }

    /// Marks parts of a unit finished; ignored when the partition was revoked since.
    public mutating func finish(_ ticket: Ticket, parts: Int = 1) {
        guard let index = index(of: ticket) else { return }
        partitions[ticket.partition]!.segments[index].pending -= parts
        var state = partitions[ticket.partition]!
        while let first = state.segments.first, first.pending <= 0 {
            state.committable = first.end
            state.segments.removeFirst()
            state.firstSequence += 1
        }
        partitions[ticket.partition] = state
    }

    private func index(of ticket: Ticket) -> Int? {
        guard let state = partitions[ticket.partition], state.epoch == ticket.epoch, ticket.sequence >= state.firstSequence else { return nil }
        let index = Int(ticket.sequence - state.firstSequence)
        return index < state.segments.count ? index : nil
    }

    /// Offsets finished but not yet committed: the next offset to consume, per partition.
    public var uncommitted: [TopicPartition: Int64] {
        var result: [TopicPartition: Int64] = [:]
        for (partition, state) in partitions {
            if let committable = state.committable, committable != state.committed { result[partition] = committable }
        }
        return result
    }

    /// What ``uncommitted`` holds, each partition's at most up to its offset in `limits` (the
    /// offsets a stored state covers); partitions `limits` does not name are left out.
    public func uncommitted(upTo limits: [TopicPartition: Int64]) -> [TopicPartition: Int64] {
        var result: [TopicPartition: Int64] = [:]
        for (partition, limit) in limits {
            guard let state = partitions[partition], let committable = state.committable else { continue }
            let offset = min(committable, limit)
            if let committed = state.committed, committed >= offset { continue }
            result[partition] = offset
        }
        return result
    }

    /// The next offset to consume after the finished prefix, per partition.
    public var committable: [TopicPartition: Int64] {
        partitions.compactMapValues(\.committable)
    }

    /// Work registered and not yet finished, in messages' units, per partition.
    public var unfinished: Int { partitions.values.reduce(0) { $0 + $1.segments.count } }

    /// Records a successful commit.
    public mutating func committed(_ offsets: [TopicPartition: Int64]) {
        for (partition, offset) in offsets where partitions[partition] != nil {
            if let known = partitions[partition]!.committed, known >= offset { continue }
            partitions[partition]!.committed = offset
        }
    }

    /// Forgets commits that failed, so their offsets are committed again.
    public mutating func commitFailed(_ offsets: [TopicPartition: Int64]) {
        for (partition, offset) in offsets where partitions[partition]?.committed == offset {
            partitions[partition]!.committed = nil
        }
    }

    /// Stops tracking the partitions and returns, for each, what is committable and not committed yet.
    public mutating func revoke(_ revoked: [TopicPartition]) -> [TopicPartition: Int64] {
        var result: [TopicPartition: Int64] = [:]
        for partition in revoked {
            guard let state = partitions.removeValue(forKey: partition) else { continue }
            if let committable = state.committable, committable != state.committed { result[partition] = committable }
        }
        return result
    }

    /// The partitions being tracked.
    public var partitionsTracked: [TopicPartition] { Array(partitions.keys) }
}
