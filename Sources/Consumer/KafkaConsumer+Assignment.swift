import CRdKafka
import Core
import Foundation
import Kafka
import Logging
import Synchronization

/// Getting partitions: direct discovery, the group's rebalances, and where each partition starts.
extension KafkaConsumer {
    /// Sets, in the list about to be assigned, the offset each partition starts at when the
    /// delegate's durable state is behind the group's commit (or the group has none): the state
    /// must not miss the events between. Otherwise the committed offset applies, as usual.
    ///
    /// Stored offsets beyond a partition's log end mean the state was built from another log (a
    /// topic deleted and created again, another cluster): the delegate is asked, and false is
    /// returned (the consumer stops) when it refuses.
    func applyStartingOffsets(_ handle: OpaquePointer, _ partitions: UnsafeMutablePointer<rd_kafka_topic_partition_list_t>) -> Bool {
        let list = PartitionList.read(partitions).map(\.0)
        let stored = delegate.startingOffsets(list)
        guard !stored.isEmpty else { return true }
        var logEnds: [TopicPartition: Int64] = [:]
        for (partition, offset) in stored where offset > 0 {
            var low: Int64 = -1
            var high: Int64 = -1
            let error = rd_kafka_query_watermark_offsets(handle, partition.topic, partition.partition, &low, &high, 5000)
            if error == RD_KAFKA_RESP_ERR_NO_ERROR { logEnds[partition] = high }
        }
        let beyond = StartOffsets.beyondLogEnd(stored: stored, logEnds: logEnds)
        if !beyond.isEmpty, let refusal = delegate.verify(storedOffsets: beyond) {
            logger.critical("the consumer stops", metadata: ["error": "\(refusal.reason)"])
            shared.withLock { $0.fatal = $0.fatal ?? refusal }
            return false
        }
        var committed: [TopicPartition: Int64] = [:]
        let error = PartitionList.with(list.map { ($0, nil) }) { query in
            let error = rd_kafka_committed(handle, query, 10000)
            for (partition, offset, partitionError) in PartitionList.read(query) where partitionError == RD_KAFKA_RESP_ERR_NO_ERROR {
                committed[partition] = offset
            }
            return error
        }
        if error != RD_KAFKA_RESP_ERR_NO_ERROR {
            // Without the group's offsets, starting from the stored ones is still right: the state
            // reflects exactly the events before them.
            logger.warning(
                "cannot read the committed offsets; starting from the stored state's offsets",
                metadata: ["error": "\(String(cString: rd_kafka_err2str(error)))"])
        }
        let starts = StartOffsets.rewound(stored: stored, committed: committed)
        var rewound: [String] = []
        for index in 0..<Int(partitions.pointee.cnt) {
            let element = partitions.pointee.elems[index]
            let partition = TopicPartition(String(cString: element.topic), element.partition)
            guard let start = starts[partition] else { continue }
            partitions.pointee.elems[index].offset = start
            rewound.append("\(partition)=\(start) (committed \(committed[partition].map { $0 >= 0 ? String($0) : "none" } ?? "none"))")
        }
        if !rewound.isEmpty {
            logger.notice(
                "starting partitions from the stored state's offsets, behind the group's commit",
                metadata: ["kafka.offsets": "\(rewound.joined(separator: " "))"])
        }
        return true
    }

    /// Asks the delegate whether the cluster reached is the one its state belongs to, once, before
    /// the first assignment; false (and the consumer stops) when it is not.
    func verifyCluster(_ handle: OpaquePointer) -> Bool {
        if clusterVerified { return true }
        let id = rd_kafka_clusterid(handle, 5000).map { pointer in
            defer { rd_kafka_mem_free(handle, pointer) }
            return String(cString: pointer)
        }
        if let refusal = delegate.verify(clusterID: id) {
            logger.critical("the consumer stops", metadata: ["error": "\(refusal.reason)"])
            shared.withLock { $0.fatal = $0.fatal ?? refusal }
            return false
        }
        clusterVerified = true
        return true
    }

    /// Direct membership: assigns every partition of the topics not assigned yet, from where the
    /// delegate's state or the group's commit says (see ``applyStartingOffsets(_:_:)``).
    func discoverPartitions() {
        var found: [TopicPartition] = []
        var complete = true
        for topic in configuration.topics {
            guard case .success(let count?) = Self.partitionCount(client.handle, topic, timeoutMilliseconds: 1000) else {
                complete = false
                if missingTopics.insert(topic).inserted {
                    logger.warning("topic not found (yet); checking again every second", metadata: ["kafka.topic": "\(topic)"])
                }
                continue
            }
            if missingTopics.remove(topic) != nil { logger.notice("topic found", metadata: ["kafka.topic": "\(topic)"]) }
            found += (0..<count).map { TopicPartition(topic, $0) }
        }
        nextDiscovery = .now + (complete ? configuration.discoveryInterval : .seconds(1))
        let new = found.filter { !assignment.contains($0) }
        guard !new.isEmpty, verifyCluster(client.handle) else { return }
        PartitionList.with(new.map { ($0, nil) }) { list in
            guard applyStartingOffsets(client.handle, list) else { return }
            if let failure = rd_kafka_incremental_assign(client.handle, list) {
                logger.error("assigning partitions failed; trying again", metadata: ["error": "\(String(cString: rd_kafka_error_string(failure)))"])
                rd_kafka_error_destroy(failure)
                nextDiscovery = .now + .seconds(1)
                return
            }
            assignment.formUnion(new)
            shared.withLock { $0.assignment = assignment }
            logger.info("partitions assigned", metadata: ["kafka.partitions": "\(new.sorted())", "kafka.membership": "direct"])
            follow(delegate.assigned(new))
            if pauseRequested { setPaused(Set(new), true) }
        }
    }

    /// A topic's partition count from the cluster's metadata: nil when the cluster does not know
    /// the topic, an error when it did not answer in time. (A consumer's metadata request does
    /// not create topics: `allow.auto.create.topics` is false unless configured.)
    static func partitionCount(_ handle: OpaquePointer, _ topic: String, timeoutMilliseconds: Int32) -> Result<Int32?, KafkaError> {
        guard let rkt = rd_kafka_topic_new(handle, topic, nil) else { return .success(nil) }
        defer { rd_kafka_topic_destroy(rkt) }
        var metadata: UnsafePointer<rd_kafka_metadata>?
        let error = rd_kafka_metadata(handle, 0, rkt, &metadata, timeoutMilliseconds)
        guard error == RD_KAFKA_RESP_ERR_NO_ERROR, let metadata else { return .failure(KafkaError(.operation, "metadata of \(topic)", error)) }
        defer { rd_kafka_metadata_destroy(metadata) }
        guard metadata.pointee.topic_cnt > 0 else { return .success(nil) }
        let described = metadata.pointee.topics[0]
        guard described.err == RD_KAFKA_RESP_ERR_NO_ERROR, described.partition_cnt > 0 else { return .success(nil) }
        return .success(described.partition_cnt)
    }

    func rebalance(_ handle: OpaquePointer, _ error: rd_kafka_resp_err_t, _ partitions: UnsafeMutablePointer<rd_kafka_topic_partition_list_t>?) {
        let list = PartitionList.read(partitions).map(\.0)
        let cooperative = String(cString: rd_kafka_rebalance_protocol(handle)) == "COOPERATIVE"
        switch error {
        case RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS:
            guard verifyCluster(handle) else { return }
            if let partitions, !applyStartingOffsets(handle, partitions) { return }
            if cooperative {
                if let failure = rd_kafka_incremental_assign(handle, partitions) {
                    logger.error("incremental assign failed", metadata: ["error": "\(String(cString: rd_kafka_error_string(failure)))"])
                    rd_kafka_error_destroy(failure)
                }
            } else {
                let failure = rd_kafka_assign(handle, partitions)
                if failure != RD_KAFKA_RESP_ERR_NO_ERROR {
                    logger.error("assign failed", metadata: ["error": "\(String(cString: rd_kafka_err2str(failure)))"])
                }
            }
            assignment.formUnion(list)
            shared.withLock { $0.assignment = assignment }
            logger.info(
                "partitions assigned", metadata: ["kafka.partitions": "\(list.sorted())", "kafka.protocol": "\(cooperative ? "cooperative" : "eager")"])
            follow(delegate.assigned(list))
            if pauseRequested { setPaused(Set(list), true) }
        case RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS:
            let lost = rd_kafka_assignment_lost(handle) != 0
            // What was gathered goes first, with its flow control, while this thread still decides.
            follow(delegate.endOfBurst())
            let offsets = delegate.revoking(list, lost: lost)
            if lost {
                logger.warning("partitions lost (evicted from the group): nothing is committed for them", metadata: ["kafka.partitions": "\(list.sorted())"])
            } else if !offsets.isEmpty {
                if let failure = commitSynchronously(offsets) {
                    logger.warning(
                        "commit before giving up partitions failed; their new owner replays from the last commit", metadata: ["error": "\(failure.reason)"])
                } else {
                    delegate.committed(offsets, error: nil)
                }
            }
            if cooperative {
                if let failure = rd_kafka_incremental_unassign(handle, partitions) {
                    logger.error("incremental unassign failed", metadata: ["error": "\(String(cString: rd_kafka_error_string(failure)))"])
                    rd_kafka_error_destroy(failure)
                }
            } else {
                _ = rd_kafka_assign(handle, nil)
            }
            assignment.subtract(list)
            paused.subtract(list)
            commits.revoked(list)
            shared.withLock { $0.assignment = assignment }
            logger.info("partitions revoked", metadata: ["kafka.partitions": "\(list.sorted())", "kafka.lost": "\(lost)"])
        default:
            logger.error("rebalance error", metadata: ["error": "\(String(cString: rd_kafka_err2str(error)))"])
            let all = Array(assignment)
            follow(delegate.endOfBurst())
            _ = delegate.revoking(all, lost: true)
            if cooperative {
                if let failure = rd_kafka_incremental_unassign(handle, partitions) { rd_kafka_error_destroy(failure) }
            } else {
                _ = rd_kafka_assign(handle, nil)
            }
            assignment.removeAll()
            paused.removeAll()
            shared.withLock { $0.assignment = [] }
        }
    }
}
