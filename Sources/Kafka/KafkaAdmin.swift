import CRdKafka
import Core
import Foundation
import Logging
import Synchronization

/// Reads a consumer group's committed offsets without joining the group (for `check`, `diff`,
/// the tests and the benchmark).
public enum KafkaGroupOffsets {
    public static func committed(
        bootstrapServers: String, groupID: String, partitions: [TopicPartition], properties: KafkaSettings = .init(),
        timeoutMilliseconds: Int32 = 10000, logger: Logger
    ) throws(KafkaError) -> [TopicPartition: Int64] {
        var settings = properties
        settings["bootstrap.servers"] = bootstrapServers
        settings["group.id"] = groupID
        settings["enable.auto.commit"] = "false"
        settings["client.id"] = settings["client.id"] ?? "mapbridge-offsets"
        let client = try RdKafkaClient.make(RD_KAFKA_CONSUMER, settings: settings, callbacks: .init(logger: logger, settings: settings))
        let (error, offsets) = PartitionList.with(partitions.map { ($0, nil) }) { list in
            (rd_kafka_committed(client.handle, list, timeoutMilliseconds), PartitionList.read(list))
        }
        guard error == RD_KAFKA_RESP_ERR_NO_ERROR else { throw KafkaError(.operation, "committed offsets of group \(groupID)", error) }
        return Dictionary(offsets.map { ($0.0, $0.1) }, uniquingKeysWith: { $1 })
    }
}

/// The cluster's view of topics, without joining a group or creating anything.
public enum KafkaMetadata {
    /// Partition counts of the given topics that exist (asking for every topic, so that none is
    /// auto-created by the question).
    public static func partitionCounts(
        bootstrapServers: String, topics: [String], properties: KafkaSettings = .init(), timeoutMilliseconds: Int32 = 10000, logger: Logger
    ) throws(KafkaError) -> [String: Int32] {
        var settings = properties
        settings["bootstrap.servers"] = bootstrapServers
        settings["client.id"] = settings["client.id"] ?? "mapbridge-check"
        let client = try RdKafkaClient.make(RD_KAFKA_PRODUCER, settings: settings, callbacks: .init(logger: logger, settings: settings))
        defer { client.destroy(flags: 0) }
        var metadata: UnsafePointer<rd_kafka_metadata>?
        let error = rd_kafka_metadata(client.handle, 1, nil, &metadata, timeoutMilliseconds)
        guard error == RD_KAFKA_RESP_ERR_NO_ERROR, let metadata else { throw KafkaError(.operation, "cluster metadata", error) }
        defer { rd_kafka_metadata_destroy(metadata) }
        var counts: [String: Int32] = [:]
        for index in 0..<Int(metadata.pointee.topic_cnt) {
            let topic = metadata.pointee.topics[index]
            let name = String(cString: topic.topic)
            if topics.contains(name) && topic.err == RD_KAFKA_RESP_ERR_NO_ERROR { counts[name] = topic.partition_cnt }
        }
        return counts
    }
}
