import Consumer
import Core
import Kafka
import Logging
import Mapper
import Synchronization

/// A store of the state written beside the pipeline, and what it covers: the offsets it records,
/// the maps it writes, and the tombstones it took from them.
struct StoreInFlight {
    /// The store's outcome: its error, or how long writing it took (from its own start to its
    /// end, not to when the pipeline got round to finishing it).
    let task: Task<Result<Duration, any Error>, Never>
    let done: DoneFlag
    let offsets: [TopicPartition: Int64]
    let maps: Set<Int>
    let tombstones: [Int: [MapKey: MapContents.Owner]]

    /// Its task has ended: awaiting it returns at once.
    var isFinished: Bool { done.isSet }
}

/// Set once, from any thread.
final class DoneFlag: Sendable {
    private let value = Atomic<Bool>(false)

    func set() { value.store(true, ordering: .releasing) }
    var isSet: Bool { value.load(ordering: .acquiring) }
}

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

    /// Starts storing the changed maps and the offsets they reflect beside the pipeline, which
    /// goes on applying batches meanwhile; false when nothing changed since the last store. The
    /// snapshot is taken now, between batches, so the files hold exactly the state those offsets
    /// produced. One store at a time (see ``finishStore(committing:)``).
    func startStore() -> Bool {
        precondition(storeInFlight == nil, "one store at a time")
        fence()
        let offsets = tracker.committable
        // Offsets move without any map changing (dead letters, repeated values): they are stored
        // too, or a new owner would replay, and dead-letter again, what was already handled.
        guard !dirtyMaps.isEmpty || offsets != lastStoredOffsets else { return false }
        let maps = dirtyMaps
        dirtyMaps.removeAll()
        var tombstones: [Int: [MapKey: MapContents.Owner]] = [:]
        let snapshots = maps.sorted().map { map in
            let taken = applier.takeTombstones(of: map)
            tombstones[map] = taken
            return MapSnapshot(map: map, entries: applier.contents(of: map).listing, tombstones: taken)
        }
        let owned: Set<MapContents.Owner>? = isExclusive ? nil : Set(ownedPartitions.map(owners.id))
        let (store, backlog) = (self.store, self.backlog)
        // The pipeline awaits every store it starts (finishStore) before it returns, so this task
        // never outlives it; its end wakes the pipeline to commit what it covers.
        let done = DoneFlag()
        let task = Task<Result<Duration, any Error>, Never> {
            defer {
                done.set()
                backlog.poke()
            }
            let started = ContinuousClock.now
            do {
                try await store.store(snapshots, offsets: offsets, owned: owned)
                return .success(ContinuousClock.now - started)
            } catch {
                return .failure(error)
            }
        }
        storeInFlight = StoreInFlight(task: task, done: done, offsets: offsets, maps: maps, tombstones: tombstones)
        return true
    }

    /// Waits for the store in flight, if any. Stored: its offsets are committed (with
    /// `committing`). Failed: its maps and tombstones wait for the next store, and nothing it
    /// covers is committed. False when it failed.
    @discardableResult
    func finishStore(committing: Bool) async -> Bool {
        guard let inFlight = storeInFlight else { return true }
        storeInFlight = nil
        let took: Duration
        switch await inFlight.task.value {
        case .failure(let error):
            metrics.persistErrors.increment()
            logger.error("cannot store the maps' state; nothing is committed until it can be", metadata: ["error": "\(error)"])
            dirtyMaps.formUnion(inFlight.maps)
            for (map, tombstones) in inFlight.tombstones { applier.restoreTombstones(tombstones, of: map) }
            return false
        case .success(let duration):
            took = duration
        }
        lastStoredOffsets = inFlight.offsets
        // The store's own duration: time the pipeline spent on a batch (HAProxy frozen, say) before
        // finishing it must not stretch the interval to the next store, and so to the next commit.
        policy.stored(taking: took)
        logger.debug("state stored", metadata: ["maps": "\(inFlight.maps.count)", "persist.ms": "\(took.nanoseconds / 1_000_000)"])
        metrics.persistDuration.recordNanoseconds(took.nanoseconds)
        if committing {
            // Only what the stored state covers: batches applied since are in the next store.
            let offsets = tracker.uncommitted(upTo: inFlight.offsets)
            if !offsets.isEmpty {
                consumer.commit(offsets)
                tracker.committed(offsets)
            }
        }
        return true
    }

    /// Stores the state of the changed maps durably, with the offsets it reflects, waiting for it
    /// (after the store in flight); false when it could not be stored (then nothing may be
    /// committed). The caller commits.
    func persist() async -> Bool {
        // The store in flight lands first; one that failed gives its maps back to this one.
        await finishStore(committing: false)
        guard startStore() else { return true }
        return await finishStore(committing: false)
    }

    /// On the store interval: commits what is stored, or starts a store when something changed
    /// since; the store's end commits what it covers.
    func commit() async {
        lastCommit = .now
        collectCommitOutcomes()
        guard storeInFlight == nil else { return }
        guard !tracker.uncommitted.isEmpty || !dirtyMaps.isEmpty else { return }
        if startStore() { return }
        let offsets = tracker.uncommitted
        guard !offsets.isEmpty else { return }
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
