/// Where consumption of newly assigned partitions starts, from the bridge's durable state and the
/// group's committed offsets.
///
/// Guarantees: the state never misses an event (a partition starts no later than the first event
/// its stored state does not reflect), and a state built from another log (stored offsets beyond
/// the partition's end) is detected before anything is consumed.
public enum StartOffsets {
    /// The stored offsets beyond their partition's log end (a topic deleted and created again,
    /// another cluster). `logEnds` holds the partitions whose end is known.
    public static func beyondLogEnd(stored: [TopicPartition: Int64], logEnds: [TopicPartition: Int64]) -> [TopicPartition: (stored: Int64, logEnd: Int64)] {
        var beyond: [TopicPartition: (stored: Int64, logEnd: Int64)] = [:]
        for (partition, offset) in stored where offset > 0 {
            if let end = logEnds[partition], end >= 0, offset > end { beyond[partition] = (offset, end) }
        }
        return beyond
    }

    /// The partitions that must start from their stored offset: those whose group commit is
    /// missing or ahead of the state. The others start from the group's commit, as usual.
    public static func rewound(stored: [TopicPartition: Int64], committed: [TopicPartition: Int64]) -> [TopicPartition: Int64] {
        var starts: [TopicPartition: Int64] = [:]
        for (partition, start) in stored where start >= 0 {
            if let group = committed[partition], group >= 0, group <= start { continue }
            starts[partition] = start
        }
        return starts
    }
}
