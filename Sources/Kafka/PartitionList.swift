import CRdKafka
import Core

/// Helpers for librdkafka's partition lists; lists are created and destroyed within one call.
package enum PartitionList {
    /// Reads a C list as (partition, offset, error) triples.
    package static func read(_ list: UnsafePointer<rd_kafka_topic_partition_list_t>?) -> [(TopicPartition, Int64, rd_kafka_resp_err_t)] {
        guard let list else { return [] }
        var result: [(TopicPartition, Int64, rd_kafka_resp_err_t)] = []
        result.reserveCapacity(Int(list.pointee.cnt))
        for index in 0..<Int(list.pointee.cnt) {
            let element = list.pointee.elems[index]
            result.append((TopicPartition(String(cString: element.topic), element.partition), element.offset, element.err))
        }
        return result
    }

    /// Calls `body` with a C list holding the partitions (and offsets, or RD_KAFKA_OFFSET_INVALID).
    package static func with<T>(
        _ partitions: [(TopicPartition, Int64?)], _ body: (UnsafeMutablePointer<rd_kafka_topic_partition_list_t>) throws -> T
    ) rethrows -> T {
        let list = rd_kafka_topic_partition_list_new(Int32(max(partitions.count, 1)))!
        defer { rd_kafka_topic_partition_list_destroy(list) }
        for (partition, offset) in partitions {
            let element = rd_kafka_topic_partition_list_add(list, partition.topic, partition.partition)!
            element.pointee.offset = offset ?? Int64(RD_KAFKA_OFFSET_INVALID)
        }
        return try body(list)
    }
}
