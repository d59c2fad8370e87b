/// Which partitions of its topics this bridge owns, and so which keys it writes.
///
/// Guarantees: the bridge is HAProxy's only writer (``isExclusive``) only while it owns every
/// partition of every topic as the cluster's metadata last described them; a topic whose count is
/// unknown makes it a sharer. Partitions the consumer no longer holds are found by
/// ``fence(assignment:)`` before anything more is written for them.
public struct PartitionOwnership: Sendable, Equatable {
    public let topics: [String]
    public private(set) var owned: Set<TopicPartition> = []
    /// Partitions per topic, from the cluster's metadata.
    public private(set) var partitionCounts: [String: Int32] = [:]

    public init(topics: [String]) {
        self.topics = topics
    }

    /// True when this bridge owns every partition of its topics.
    public var isExclusive: Bool {
        var total = 0
        for topic in topics {
            guard let count = partitionCounts[topic] else { return false }
            total += Int(count)
        }
        return total > 0 && owned.count == total
    }

    public mutating func assign(_ partitions: some Sequence<TopicPartition>) {
        owned.formUnion(partitions)
    }

    public mutating func learn(partitionCounts counts: [String: Int32]) {
        partitionCounts = counts
    }

    /// Stops owning `partitions`.
    public mutating func release(_ partitions: some Sequence<TopicPartition>) {
        owned.subtract(partitions)
    }

    /// The owned partitions the consumer no longer holds: their keys belong to another bridge now.
    public func fence(assignment: Set<TopicPartition>) -> Set<TopicPartition> {
        owned.subtracting(assignment)
    }

    /// The partitions among `partitions` this bridge does not own (their messages are another's).
    public func foreign(_ partitions: some Sequence<TopicPartition>) -> Set<TopicPartition> {
        // A batch holds runs of messages from one partition: one look-up per run, not per message.
        var foreign = Set<TopicPartition>()
        var last: TopicPartition?
        for partition in partitions where partition != last {
            last = partition
            if !owned.contains(partition) { foreign.insert(partition) }
        }
        return foreign
    }
}
