import Testing

@testable import Core

@Suite("Partition ownership")
struct PartitionOwnershipTests {
    let a0 = TopicPartition("a", 0)
    let a1 = TopicPartition("a", 1)
    let b0 = TopicPartition("b", 0)

    @Test("the only writer owns every partition of every topic, as the metadata last said")
    func exclusive() {
        var ownership = PartitionOwnership(topics: ["a", "b"])
        ownership.assign([a0, a1, b0])
        #expect(!ownership.isExclusive, "without partition counts, nothing proves it owns them all")
        ownership.learn(partitionCounts: ["a": 2])
        #expect(!ownership.isExclusive, "topic b's count is unknown")
        ownership.learn(partitionCounts: ["a": 2, "b": 1])
        #expect(ownership.isExclusive)
        ownership.learn(partitionCounts: ["a": 3, "b": 1])
        #expect(!ownership.isExclusive, "a new partition of a belongs to no one yet")
    }

    @Test("partitions the consumer dropped are fenced; messages of partitions not owned are foreign")
    func fencing() {
        var ownership = PartitionOwnership(topics: ["a"])
        ownership.assign([a0, a1])
        #expect(ownership.fence(assignment: [a0]) == [a1])
        ownership.release([a1])
        #expect(ownership.fence(assignment: [a0]).isEmpty)
        #expect(ownership.foreign([a0, a1, a0]) == [a1])
    }
}
