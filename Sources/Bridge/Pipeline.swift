import Consumer
import Core
import Foundation
import Logging
import Mapper
import NIOPosix

/// Joins the consumer and HAProxy: takes batches from the backlog, coalesces them, has the applier
/// apply them until HAProxy acknowledges every command, and only then counts their offsets as done;
/// commits what is done on an interval; answers rebalances; checks HAProxy for restarts.
///
/// One task owns a pipeline (it is not thread-safe); the consumer thread talks to it through the
/// backlog only.
final class Pipeline {
    let configuration: BridgeConfiguration
    let applier: MapApplier
    let backlog: Backlog
    let intake: MessageIntake
    let consumer: KafkaConsumer
    let status: BridgeStatus
    let metrics: BridgeMetrics
    let owners: OwnerTable
    let store: StateStore
    /// Where invalid events and refused changes go, when a dead-letter topic is configured.
    let deadLetters: DeadLetterQueue?
    var logger: Logger
    private var tracker = OffsetTracker()
    /// An error that must stop the bridge, found where it could not be thrown.
    private var pendingFailure: (any Error)?
    /// Dead letters the broker refused, waiting for their next attempt.
    private var deadLetterRetries: [(DeadLetter, ContinuousClock.Instant)] = []
    /// The partitions this bridge owns now.
    private var ownership: PartitionOwnership
    /// When batches close, how often the state is stored.
    private var policy: BatchPolicy
    /// Maps changed since their state was last stored.
    private var dirtyMaps: Set<Int> = []
    /// When owned keys were last compared with HAProxy while sharing the maps.
    private var lastAudit = ContinuousClock.now
    private var lastCommit = ContinuousClock.now
    private var lastCheck = ContinuousClock.now
    private var shutdownDeadline: ContinuousClock.Instant?
    private let clock = ContinuousClock()

    init(
        configuration: BridgeConfiguration, applier: MapApplier, backlog: Backlog, intake: MessageIntake, consumer: KafkaConsumer,
        status: BridgeStatus, metrics: BridgeMetrics, owners: OwnerTable, store: StateStore, deadLetters: DeadLetterQueue? = nil,
        logger: Logger
    ) {
        self.deadLetters = deadLetters
        self.owners = owners
        self.store = store
        self.configuration = configuration
        self.applier = applier
        self.backlog = backlog
        self.intake = intake
        self.consumer = consumer
        self.status = status
        self.metrics = metrics
        self.logger = logger
        ownership = PartitionOwnership(topics: configuration.topics.map(\.name))
        policy = BatchPolicy(
            maxEvents: configuration.batch.maxEvents, maxWait: .milliseconds(configuration.batch.maxWaitMilliseconds),
            backlogMaxEvents: backlog.maxEvents, commitInterval: .milliseconds(configuration.commitIntervalMilliseconds))
    }

    /// The offsets the state directory last recorded (see ``persist()``).
    private var lastStoredOffsets: [TopicPartition: Int64] = [:]
    private var checkInterval: Duration { .milliseconds(configuration.haproxy.checkIntervalMilliseconds) }
    private var ownedPartitions: Set<TopicPartition> { ownership.owned }
    private var isExclusive: Bool { ownership.isExclusive }

    /// How long the next batch waits for more events after its first.
    var batchWindow: Duration {
        let unconsumed = policy.rebuilding ? intake.unconsumed(highWatermarks: consumer.highWatermarks, assigned: ownedPartitions) : 0
        return policy.window(catchingUp: policy.isCatchingUp(unconsumed: unconsumed))
    }

    /// How often owned keys are compared with HAProxy while sharing the maps with other bridges.
    private var auditInterval: Duration { checkInterval * 6 }

    /// Synchronises with HAProxy, starts consuming, and runs until the backlog is closed (graceful
    /// shutdown) or fails (a fatal consumer error, thrown).
    func run() async throws {
        guard try await synchronizeUntilDone(reason: "start-up") != nil else { return }
        status.update { $0.firstSyncDone = true }
        try consumer.start()
        status.update { $0.consumerStarted = true }
        while true {
            let idleDeadline = min(lastCommit + policy.storeInterval, lastCheck + checkInterval)
            guard
                let item = try await backlog.next(maxEvents: policy.limit, maxWait: batchWindow, idleDeadline: idleDeadline)
            else { break }
            // Resumed as soon as a batch is taken, not once it is applied: the consumer then fetches
            // the next one while HAProxy applies this one.
            resumeIfDrained()
            switch item {
            case .batch(let batch):
                guard try await process(batch) else { break }
            case .revoke(let request):
                await revoke(request)
            case .assigned(let partitions):
                guard try await assigned(partitions) else { break }
            case .idle:
                break
            }
            resumeIfDrained()
            try collectDeadLetters()
            if let pendingFailure { throw pendingFailure }
            let now = ContinuousClock.now
            if now >= lastCommit + policy.storeInterval { await commit() }
            if now >= lastCheck + checkInterval {
                lastCheck = now
                guard try await checkHAProxy() else { break }
            }
            if !isExclusive && !ownedPartitions.isEmpty && now >= lastAudit + auditInterval {
                guard try await audit() else { break }
            }
            let size = backlog.size
            metrics.backlogEvents.record(size.events)
            metrics.backlogBytes.record(size.bytes)
        }
        if let deadLetters {
            // Dead letters acknowledged now still count for the last commit.
            await deadLetters.flush(milliseconds: min(configuration.shutdownTimeoutMilliseconds, 5000))
            try? collectDeadLetters()
        }
        await finalCommit()
    }

    private func resumeIfDrained() {
        if backlog.takeResume({ consumer.resume() }) {
            logger.notice("backlog drained: resuming consumption")
        }
    }

    // MARK: - Ownership

    /// Stops writing for partitions the consumer no longer holds (revoked while a batch was in
    /// flight and the rebalance could not wait, or lost from the group): their keys now belong to
    /// another bridge, which must not find them overwritten with older values. Returns whether
    /// anything changed.
    @discardableResult
    private func fence() -> Bool {
        let gone = ownership.fence(assignment: consumer.currentAssignment)
        guard !gone.isEmpty else { return false }
        release(Array(gone))
        logger.notice("partitions no longer assigned: their keys are not written any more", metadata: ["kafka.partitions": "\(gone.sorted())"])
        return true
    }

    /// Stops owning `partitions`: their tracking ends, returning what was still committable for
    /// them, and the applier writes only the keys of the partitions that remain.
    @discardableResult
    private func release(_ partitions: [TopicPartition]) -> [TopicPartition: Int64] {
        ownership.release(partitions)
        let offsets = tracker.revoke(partitions)
        applier.setOwnership(exclusive: isExclusive, owned: Set(ownedPartitions.map(owners.id)))
        return offsets
    }

    /// While sharing the maps, compares this bridge's keys with HAProxy and repairs them: another
    /// bridge that has just lost partitions may have written to them before it knew.
    private func audit() async throws -> Bool {
        lastAudit = .now
        fence()
        applier.invalidate()
        return try await synchronizeUntilDone(reason: "audit") != nil
    }

    /// Partitions were given to this bridge: what it did not own before is reloaded from the state
    /// files (the previous owner stored it before committing), then HAProxy is brought in line.
    private func assigned(_ partitions: [TopicPartition]) async throws -> Bool {
        let before = Set(ownedPartitions.map(owners.id))
        ownership.assign(partitions)
        if let counts = try? await consumer.partitionCounts(configuration.topics.map(\.name)) {
            ownership.learn(partitionCounts: counts)
        }
        do {
            let stored = try await NIOThreadPool.singleton.runIfActive { [store] in try store.reload(except: before) }
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

    // MARK: - Batches

    /// Applies one batch; false when it was abandoned at shutdown (its offsets are not committed).
    private func process(_ incoming: Batch) async throws -> Bool {
        let started = clock.now
        fence()
        var batch = incoming
        let foreign = ownership.foreign(batch.messages.lazy.map(\.partition))
        if !foreign.isEmpty {
            // Messages of partitions this bridge no longer owns: their new owner reads them again.
            batch.remove(partitions: foreign)
            if batch.isEmpty { return true }
        }
        let tickets = Dictionary(uniqueKeysWithValues: batch.lastOffsets.map { ($0.key, tracker.register($0.key, through: $0.value)) })
        metrics.consumed.increment(by: batch.messages.count)
        for message in batch.messages {
            guard let invalid = message.invalid else { continue }
            reportInvalid(message, invalid)
            if let deadLetters, let ticket = tickets[message.partition] {
                tracker.addParts(ticket, 1)
                deadLetters.send(.invalid(message, invalid, ticket: ticket))
            }
        }
        var partitionOwners: [TopicPartition: MapContents.Owner] = [:]
        let messageOwners = batch.messages.map { message in
            if let id = partitionOwners[message.partition] { return id }
            let id = owners.id(message.partition)
            partitionOwners[message.partition] = id
            return id
        }
        let coalesced = Coalescer.coalesce(batch.changes, mapCount: configuration.maps.count, owners: messageOwners)
        let changeEvents = batch.changeEvents
        let distinct = coalesced.reduce(0) { $0 + $1.count }
        var applied: ApplyReport?
        if distinct > 0 {
            metrics.coalescingRatio.record(Double(changeEvents) / Double(distinct))
            for (map, changes) in coalesced.enumerated() where !changes.isEmpty { dirtyMaps.insert(map) }
            if !applier.isInSync {
                guard try await synchronizeUntilDone(reason: "before a batch") != nil else { return false }
            }
            guard let report = try await applyUntilAcknowledged(coalesced) else {
                logger.warning(
                    "shutting down: abandoning the batch in flight; it is consumed again after restart", metadata: ["batch.events": "\(batch.events)"])
                return false
            }
            for rejection in report.rejections { reportRefused(rejection, batch, tickets) }
            metrics.commands.increment(by: report.commands)
            metrics.entriesWritten.increment(by: report.entriesWritten)
            for strategy in Set(report.strategies) where strategy != .none { metrics.batch(strategy: strategy.rawValue) }
            applied = report
        }
        for ticket in tickets.values { tracker.finish(ticket) }
        policy.batchDone(events: batch.events, strategies: applied?.strategies, sendDuration: .nanoseconds(applied?.sendNanoseconds ?? 0))
        let elapsed = clock.now - started
        metrics.applyDuration.recordNanoseconds(elapsed.nanoseconds)
        // Only what HAProxy applied: the events of a key whose change it refused did not change it.
        let appliedEvents = changeEvents - refusedEvents(applied?.rejections ?? [], in: batch)
        metrics.changesApplied.increment(by: appliedEvents)
        let nowMillis = Int64(Date().timeIntervalSince1970 * 1000)
        if let oldest = batch.messages.compactMap(\.timestamp).min(), nowMillis >= oldest {
            metrics.eventToApplied.recordMilliseconds(nowMillis - oldest)
        }
        status.update {
            $0.batches += 1
            $0.eventsConsumed += batch.messages.count
            $0.changesApplied += appliedEvents
            $0.inSync = true
            $0.haproxyConnected = true
        }
        logger.debug(
            "batch applied",
            metadata: [
                "batch.messages": "\(batch.messages.count)", "batch.changes": "\(changeEvents)", "batch.distinct": "\(distinct)",
                "batch.ms": "\(elapsed.nanoseconds / 1_000_000)", "batch.strategy": "\(applied?.strategies.map(\.rawValue) ?? [])",
                "batch.entries_written": "\(applied?.entriesWritten ?? 0)", "batch.plan_ms": "\((applied?.planNanoseconds ?? 0) / 1_000_000)",
                "batch.send_ms": "\((applied?.sendNanoseconds ?? 0) / 1_000_000)",
            ])
        return true
    }

    /// How many change events of the batch were to keys whose (coalesced) change HAProxy refused.
    private func refusedEvents(_ rejections: [Rejection], in batch: Batch) -> Int {
        guard !rejections.isEmpty else { return 0 }
        struct Target: Hashable {
            var map: Int
            var key: MapKey
        }
        let refused = Set(rejections.map { Target(map: $0.map, key: $0.key) })
        return batch.changes.reduce(0) { $0 + (refused.contains(Target(map: $1.map, key: $1.key)) ? Int($1.events) : 0) }
    }

    /// Applies a batch until HAProxy has acknowledged it; nil when abandoned at shutdown.
    private func applyUntilAcknowledged(_ coalesced: [[KeyChange]]) async throws -> ApplyReport? {
        do {
            // Every change passed the same rules in the intake (invalid events never get here).
            let report = try await applier.apply(coalesced, validated: true)
            if report.resyncs > 0 { metrics.resyncs.increment(by: report.resyncs) }
            return report
        } catch {
            metrics.haproxyErrors.increment()
            logger.warning("HAProxy did not acknowledge the batch; retrying until it does (nothing is committed meanwhile)", metadata: ["error": "\(error)"])
            status.update {
                $0.haproxyConnected = self.applier.isConnected
                $0.inSync = false
                $0.lastError = "\(error)"
            }
        }
        guard let rejections = try await synchronizeUntilDone(reason: "retry") else { return nil }
        var report = ApplyReport(mapCount: coalesced.count)
        report.rejections = rejections
        return report
    }

    /// Brings HAProxy in line with the desired state, retrying with backoff; the refused changes
    /// found on the way, or nil when shutdown came first.
    @discardableResult
    private func synchronizeUntilDone(reason: String) async throws -> [Rejection]? {
        var backoff = Backoff(
            initialMilliseconds: configuration.haproxy.reconnectInitialMilliseconds, maxMilliseconds: configuration.haproxy.reconnectMaxMilliseconds)
        var failures = 0
        while true {
            fence()
            do {
                let report = try await applier.synchronize()
                noteSync(report, reason: reason)
                if failures > 0 { logger.notice("HAProxy is back: synchronised", metadata: ["attempts": "\(failures + 1)"]) }
                status.update {
                    $0.haproxyConnected = true
                    $0.inSync = true
                    $0.lastError = nil
                }
                metrics.inSync.record(1)
                return report.rejections
            } catch {
                failures += 1
                metrics.haproxyErrors.increment()
                metrics.inSync.record(0)
                status.update {
                    $0.haproxyConnected = false
                    $0.inSync = false
                    $0.syncFailures += 1
                    $0.lastError = "\(error)"
                }
                // Log the first failures, then one in ten, so an outage does not flood the logs.
                if failures <= 3 || failures % 10 == 0 {
                    logger.warning(
                        "cannot synchronise with HAProxy; retrying", metadata: ["error": "\(error)", "attempt": "\(failures)", "during": "\(reason)"])
                }
            }
            if backlog.isClosed {
                let deadline = shutdownDeadline ?? (ContinuousClock.now + .milliseconds(configuration.shutdownTimeoutMilliseconds))
                shutdownDeadline = deadline
                if ContinuousClock.now >= deadline { return nil }
                try await Task.sleep(for: min(backoff.next(), deadline - ContinuousClock.now))
            } else {
                try await Task.sleep(for: backoff.next())
            }
        }
    }

    private func noteSync(_ report: SyncReport, reason: String) {
        if report.connected { metrics.reconnects.increment() }
        if report.processChanged {
            metrics.restarts.increment()
            status.update { $0.haproxyRestarts += 1 }
        }
        if report.processChanged {
            for resync in report.resynced {
                logger.notice(
                    "map compared with HAProxy after a restart or reload",
                    metadata: [
                        "map": "\(configuration.maps[resync.map].name)",
                        "outcome": "\(resync.strategy == .none ? "exact (HAProxy loaded the stored state)" : "repaired by \(resync.strategy.rawValue)")",
                    ])
            }
        }
        for resync in report.resynced where resync.strategy != .none {
            metrics.resyncs.increment()
            status.update { $0.resyncs += 1 }
            logger.notice(
                "resynchronised a map with HAProxy",
                metadata: [
                    "map": "\(configuration.maps[resync.map].name)", "strategy": "\(resync.strategy.rawValue)",
                    "map.missing": "\(resync.comparison.missing.count)",
                    "map.extra": "\(resync.comparison.extra.count)", "map.different": "\(resync.comparison.different.count)", "during": "\(reason)",
                ])
        }
    }

    /// Asks HAProxy whether it restarted or reloaded, and resynchronises when it did.
    private func checkHAProxy() async throws -> Bool {
        if applier.isInSync {
            do {
                try await applier.checkProcess()
            } catch {
                logger.warning("HAProxy check failed", metadata: ["error": "\(error)"])
            }
        }
        if !applier.isInSync {
            return try await synchronizeUntilDone(reason: "check") != nil
        }
        return true
    }

    // MARK: - Invalid events

    private func reportInvalid(_ message: MessageRecord, _ invalid: InvalidEvent) {
        metrics.invalid(reason: invalid.label)
        status.update { $0.invalidEvents += 1 }
        // With a dead-letter topic the letter carries all of this; the log line is then for debugging.
        logger.log(
            level: deadLetters == nil ? .warning : .debug,
            deadLetters == nil ? "invalid event skipped" : "invalid event dead-lettered",
            metadata: [
                "kafka.topic": "\(message.partition.topic)", "kafka.partition": "\(message.partition.partition)", "kafka.offset": "\(message.offset)",
                "reason": "\(invalid.label)", "detail": "\(invalid.reason)",
            ])
    }

    private func reportRefused(_ rejection: Rejection, _ batch: Batch, _ tickets: [TopicPartition: OffsetTracker.Ticket]) {
        metrics.refused.increment()
        status.update { $0.refusedChanges += 1 }
        let change = rejection.tag.flatMap { $0 < batch.changes.count ? batch.changes[$0] : nil }
        let message = change.map { batch.messages[$0.source] }
        if let deadLetters, let change, let message, let ticket = tickets[message.partition] {
            tracker.addParts(ticket, 1)
            deadLetters.send(
                .refused(
                    map: configuration.maps[change.map].name, key: change.key.string, value: change.value, detail: rejection.reason, message: message,
                    ticket: ticket))
        }
        logger.warning(
            "HAProxy refused a change; skipped",
            metadata: [
                "map": "\(configuration.maps[rejection.map].name)", "key": "\(rejection.key)", "reason": "\(rejection.reason)",
                "kafka.topic": "\(message?.partition.topic ?? "?")", "kafka.partition": "\(message.map { String($0.partition.partition) } ?? "?")",
                "kafka.offset": "\(message.map { String($0.offset) } ?? "?")",
            ])
    }

    // MARK: - Dead letters

    /// Counts acknowledged dead letters as done. A failed one is sent again with backoff (its
    /// source offset stays uncommitted meanwhile) until the broker refuses it for good or
    /// `dead_letter.retry_timeout_ms` has passed; then `dead_letter.on_failure` decides: stop the
    /// bridge (thrown), or drop the letter and commit past it.
    private func collectDeadLetters() throws {
        guard let deadLetters else { return }
        let now = ContinuousClock.now
        for (letter, error) in deadLetters.drain() {
            guard let error else {
                metrics.deadLettered.increment()
                status.update { $0.deadLettered += 1 }
                tracker.finish(letter.ticket)
                continue
            }
            metrics.deadLetterErrors.increment()
            status.update { $0.deadLetterFailures += 1 }
            var failed = letter
            let since = failed.firstFailure ?? now
            failed.firstFailure = since
            let timeout = Duration.milliseconds(configuration.deadLetterRetryTimeoutMilliseconds)
            guard error.isPermanent || now - since >= timeout else {
                // 100 ms after the first failure, doubling up to 2 s.
                let delay = Duration.milliseconds(min(2000, 100 << min(max(failed.attempts - 1, 0), 5)))
                if failed.attempts <= 3 || failed.attempts % 10 == 0 {
                    logger.warning(
                        "dead letter not delivered; sending it again (its source offset is not committed meanwhile)",
                        metadata: ["error": "\(error.reason)", "source": "\(letter.source)", "topic": "\(deadLetters.topic)", "attempt": "\(failed.attempts)"])
                }
                deadLetterRetries.append((failed, now + delay))
                continue
            }
            let why = error.isPermanent ? "the broker refuses it for good" : "still failing after \(configuration.deadLetterRetryTimeoutMilliseconds) ms"
            switch configuration.deadLetterFailure {
            case .stop:
                throw DeadLetterFailure(source: letter.source, topic: deadLetters.topic, reason: letter.reason, error: error.reason, why: why)
            case .skip:
                metrics.deadLettersDropped.increment()
                logger.error(
                    "dead letter dropped (dead_letter.on_failure: skip): \(why); its source offset is committed",
                    metadata: ["error": "\(error.reason)", "source": "\(letter.source)", "topic": "\(deadLetters.topic)", "reason": "\(letter.reason)"])
                tracker.finish(letter.ticket)
            }
        }
        // Letters whose backoff is over go again.
        var waiting: [(DeadLetter, ContinuousClock.Instant)] = []
        for (letter, due) in deadLetterRetries {
            if due <= now { deadLetters.send(letter) } else { waiting.append((letter, due)) }
        }
        deadLetterRetries = waiting
    }

    // MARK: - Offsets

    private func collectCommitOutcomes() {
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
    private func persist() async -> Bool {
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
            let ordered = configuration.maps[map].match.isOrderSensitive
            return MapSnapshot(map: map, entries: contents.ownedEntries(ordered: ordered), tombstones: contents.tombstones)
        }
        let owned: Set<MapContents.Owner>? = isExclusive ? nil : Set(ownedPartitions.map(owners.id))
        do {
            try await NIOThreadPool.singleton.runIfActive { [store] in try store.store(snapshots, offsets: offsets, owned: owned) }
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
    private func commit() async {
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
    private func revoke(_ request: RevokeRequest) async {
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
    private func finalCommit() async {
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

/// A dead letter could not be delivered and `dead_letter.on_failure` is `stop`: the bridge stops,
/// and the letter's source offset (and everything after it in its partition) stays uncommitted.
struct DeadLetterFailure: Error, CustomStringConvertible {
    var source: String
    var topic: String
    var reason: String
    var error: String
    var why: String

    var description: String {
        "the dead letter of \(source) (\(reason)) cannot be delivered to \(topic): \(why) (\(error)). The bridge stops (dead_letter.on_failure: stop); "
            + "fix the topic (size limits, permissions) and restart, or set dead_letter.on_failure: skip to drop such letters"
    }
}
