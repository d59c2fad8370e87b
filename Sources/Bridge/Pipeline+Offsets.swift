import Consumer
import Core
import Kafka
import Logging
import Mapper

/// Storing the state and committing offsets: only what HAProxy acknowledged, only once stored.
extension Pipeline {

    func collectCommitOutcomes() {
        for outcome in intake.commits.drain() {
            if let error = outcome.error {
                tracker.commitFailed(outcome.offsets)
                metrics.commitErrors.increment()
                logger.warning("offset commit failed; retrying at the next interval", metadata: ["error": "\(error.reason)"])
            } else {
                metrics.commits.increment(by: outcome.offsets.count)
                status.update { status in
                    status.commits += 1
                    for (partition, offset) in outcome.offsets where offset > status.committed[partition] ?? -1 { status.committed[partition] = offset }
                }
            }
        }
    }

    /// Stores the state of the changed maps durably, with the offsets it reflects; false when it
    /// could not be stored (then nothing may be committed).
    func persist() async -> Bool {
        fence()
        let offsets = tracker.committable
        // Offsets move without any map changing (dead letters, repeated values): they are stored
        // too, or a new owner would replay, and dead-letter again, what was already handled.
        guard !dirtyMaps.isEmpty || offsets != lastStoredOffsets else { return true }
        let started = clock.now
        let snapshots = dirtyMaps.sorted().map { map in
            let contents = applier.contents(of: map)
            // Only list-matched maps need HAProxy's order on disk; sorting a million entries
            // for the others took most of the time storing them (W2 in the benchmark).
            let ordered = configuration.maps[map].definition.isOrderSensitive
            return MapSnapshot(map: map, entries: contents.ownedEntries(ordered: ordered), tombstones: contents.tombstones)
        }
        let owned: Set<MapContents.Owner>? = isExclusive ? nil : Set(ownedPartitions.map(owners.id))
        do {
            try await store.store(snapshots, offsets: offsets, owned: owned)
        } catch {
            metrics.persistErrors.increment()
            logger.error("cannot store the maps' state; nothing is committed until it can be", metadata: ["error": "\(error)"])
            return false
        }
        applier.clearTombstones()
        dirtyMaps.removeAll()
        lastStoredOffsets = offsets
        let took = clock.now - started
        policy.stored(taking: took)
        logger.debug("state stored", metadata: ["maps": "\(snapshots.count)", "persist.ms": "\(took.nanoseconds / 1_000_000)"])
        metrics.persistDuration.recordNanoseconds(took.nanoseconds)
        return true
    }

    /// Stores the state, then commits every offset whose messages HAProxy has acknowledged.
    func commit() async {
        lastCommit = .now
        collectCommitOutcomes()
        let offsets = tracker.uncommitted
        guard !offsets.isEmpty || !dirtyMaps.isEmpty else { return }
        guard await persist(), !offsets.isEmpty else { return }
        consumer.commit(offsets)
        tracker.committed(offsets)
    }

    /// Partitions are being taken away: the work in flight is done (batches are applied one at a
    /// time), so store the state and hand back their offsets to commit.
    func revoke(_ request: RevokeRequest) async {
        collectCommitOutcomes()
        if let deadLetters, !request.lost {
            // Let the letters of these partitions reach the broker, so their offsets can be committed now.
            await deadLetters.flush(milliseconds: 2000)
            // A letter that stops the bridge does so at the loop's next turn.
            do { try collectDeadLetters() } catch { pendingFailure = error }
        }
        if request.lost {
            // Lost: the group may already have given them to another bridge, which stores their
            // state now; storing this bridge's older view would overwrite it.
            release(request.partitions)
        }
        let stored = await persist()
        let offsets = request.lost ? [:] : release(request.partitions)
        request.answer(stored && !request.lost ? offsets : [:])
        if stored && !offsets.isEmpty && !request.lost {
            status.update { status in
                for (partition, offset) in offsets where offset > status.committed[partition] ?? -1 { status.committed[partition] = offset }
            }
        }
        logger.info(
            "gave up partitions after finishing their work in flight",
            metadata: ["kafka.partitions": "\(request.partitions.sorted())", "kafka.lost": "\(request.lost)", "owned": "\(ownedPartitions.count)"])
    }

    /// At shutdown: store the state, then commit what HAProxy acknowledged, waiting a bounded time.
    func finalCommit() async {
        collectCommitOutcomes()
        guard await persist() else { return }
        let offsets = tracker.uncommitted
        guard !offsets.isEmpty else { return }
        // Bounded: a coordinator that does not answer must not hold the shutdown.
        let committed: Bool
        do {
            try await consumer.commitNow(offsets, timeout: .seconds(5))
            committed = true
        } catch {
            committed = false
        }
        if committed {
            tracker.committed(offsets)
            status.update { status in
                status.commits += 1
                for (partition, offset) in offsets { status.committed[partition] = offset }
            }
            logger.info("committed acknowledged offsets at shutdown", metadata: ["kafka.offsets": "\(describeOffsets(offsets))"])
        } else {
            logger.warning("could not commit at shutdown; the last changes are consumed again after restart (idempotent)")
        }
    }
}
