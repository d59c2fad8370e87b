import Consumer
import Core
import Kafka
import Logging
import Mapper

/// Which partitions the pipeline writes for: assignments, fencing, audits while sharing the maps.
extension Pipeline {

    /// Stops writing for partitions the consumer no longer holds (revoked while a batch was in
    /// flight and the rebalance could not wait, or lost from the group): their keys now belong to
    /// another bridge, which must not find them overwritten with older values. Returns whether
    /// anything changed.
    @discardableResult
    func fence() -> Bool {
        let gone = ownership.fence(assignment: consumer.currentAssignment)
        guard !gone.isEmpty else { return false }
        release(Array(gone))
        logger.notice("partitions no longer assigned: their keys are not written any more", metadata: ["kafka.partitions": "\(gone.sorted())"])
        return true
    }

    /// Stops owning `partitions`: their tracking ends, returning what was still committable for
    /// them, and the applier writes only the keys of the partitions that remain.
    @discardableResult
    func release(_ partitions: [TopicPartition]) -> [TopicPartition: Int64] {
        ownership.release(partitions)
        let offsets = tracker.revoke(partitions)
        applier.setOwnership(exclusive: isExclusive, owned: Set(ownedPartitions.map(owners.id)))
        return offsets
    }

    /// While sharing the maps, compares this bridge's keys with HAProxy and repairs them: another
    /// bridge that has just lost partitions may have written to them before it knew.
    func audit() async throws -> Bool {
        lastAudit = .now
        fence()
        applier.invalidate()
        return try await synchronizeUntilDone(reason: "audit") != nil
    }

    /// Partitions were given to this bridge: what it did not own before is reloaded from the state
    /// files (the previous owner stored it before committing), then HAProxy is brought in line.
    func assigned(_ partitions: [TopicPartition]) async throws -> Bool {
        // The files are read below: this bridge's own store in flight lands first.
        await finishStore(committing: true)
        let before = Set(ownedPartitions.map(owners.id))
        ownership.assign(partitions)
        if let counts = try? await consumer.partitionCounts(configuration.topics.map(\.name)) {
            ownership.learn(partitionCounts: counts)
        }
        do {
            let stored = try await store.reload(except: before)
            let refresh = owners.allIDs.subtracting(before)
            for (map, view) in stored.enumerated() {
                guard let view else { continue }
                applier.replace(map: map, owners: refresh, entries: view.entries, tombstones: view.tombstones)
            }
        } catch {
            logger.error("cannot read the stored state of newly assigned partitions", metadata: ["error": "\(error)"])
        }
        applier.setOwnership(exclusive: isExclusive, owned: Set(ownedPartitions.map(owners.id)))
        // Compare again soon: the previous owner may still have written while it was losing them.
        lastAudit = .now - auditInterval + checkInterval
        logger.info(
            "partitions assigned",
            metadata: ["kafka.partitions": "\(partitions.sorted())", "owned": "\(ownedPartitions.count)", "exclusive": "\(isExclusive)"])
        return try await synchronizeUntilDone(reason: "assignment") != nil
    }
}
