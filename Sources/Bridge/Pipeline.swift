import Consumer
import Core
import Foundation
import Kafka
import Logging
import Mapper

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
    var tracker = OffsetTracker()
    /// An error that must stop the bridge, found where it could not be thrown.
    var pendingFailure: (any Error)?
    /// Dead letters the broker refused, waiting for their next attempt.
    var deadLetterRetries: [(DeadLetter, ContinuousClock.Instant)] = []
    var retryPolicy: RetryPolicy { RetryPolicy(timeout: .milliseconds(configuration.deadLetterRetryTimeoutMilliseconds)) }
    /// The partitions this bridge owns now.
    var ownership: PartitionOwnership
    /// When batches close, how often the state is stored.
    var policy: BatchPolicy
    /// Maps changed since their state was last stored (or since the store in flight began).
    var dirtyMaps: Set<Int> = []
    /// The store of the state being written beside the pipeline, if any.
    var storeInFlight: StoreInFlight?
    /// When owned keys were last compared with HAProxy while sharing the maps.
    var lastAudit = ContinuousClock.now
    var lastCommit = ContinuousClock.now
    var lastCheck = ContinuousClock.now
    var shutdownDeadline: ContinuousClock.Instant?
    let clock = ContinuousClock()

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
        // A session that ends (HAProxy restarted, a reload's old worker gone) wakes the loop, which
        // synchronises at once rather than at the next periodic check, up to an interval later.
        applier.onDisconnect = { [backlog] in backlog.poke() }
    }

    /// The offsets the state directory last recorded (see ``startStore()``).
    var lastStoredOffsets: [TopicPartition: Int64] = [:]
    var checkInterval: Duration { .milliseconds(configuration.haproxy.checkIntervalMilliseconds) }
    /// How soon after the last check an ended session is answered: at once after a quiet spell,
    /// but never more than once a second, should HAProxy end every session as soon as it opens.
    var reconnectCheckInterval: Duration { min(checkInterval, .seconds(1)) }
    var ownedPartitions: Set<TopicPartition> { ownership.owned }
    var isExclusive: Bool { ownership.isExclusive }

    /// How long the next batch waits for more events after its first.
    var batchWindow: Duration {
        let unconsumed = policy.rebuilding ? intake.unconsumed(highWatermarks: consumer.highWatermarks, assigned: ownedPartitions) : 0
        return policy.window(catchingUp: policy.isCatchingUp(unconsumed: unconsumed))
    }

    /// How often owned keys are compared with HAProxy while sharing the maps with other bridges.
    var auditInterval: Duration { checkInterval * 6 }

    /// Synchronises with HAProxy, starts consuming, and runs until the backlog is closed (graceful
    /// shutdown) or fails (a fatal consumer error, thrown).
    func run() async throws {
        do {
            try await loop()
        } catch {
            // A store in flight is never left behind: it finishes (and commits nothing) first.
            await finishStore(committing: false)
            throw error
        }
    }

    private func loop() async throws {
        guard try await synchronizeUntilDone(reason: "start-up") != nil else { return }
        status.update { $0.firstSyncDone = true }
        try consumer.start()
        status.update { $0.consumerStarted = true }
        while true {
            let idleDeadline = min(lastCommit + policy.storeInterval, lastCheck + (applier.isConnected ? checkInterval : reconnectCheckInterval))
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
            if let storeInFlight, storeInFlight.isFinished { await finishStore(committing: true) }
            let now = ContinuousClock.now
            if now >= lastCommit + policy.storeInterval { await commit() }
            if now >= lastCheck + (applier.isConnected ? checkInterval : reconnectCheckInterval) {
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

    func resumeIfDrained() {
        if backlog.takeResume({ consumer.resume() }) {
            logger.notice("backlog drained: resuming consumption")
        }
    }

    // MARK: - Batches

    /// Applies one batch; false when it was abandoned at shutdown (its offsets are not committed).
    func process(_ incoming: Batch) async throws -> Bool {
        let started = clock.now
        fence()
        var batch = incoming
        var runs = batch.runs
        let foreign = ownership.foreign(runs.map(\.partition))
        if !foreign.isEmpty {
            // Messages of partitions this bridge no longer owns: their new owner reads them again.
            batch.remove(partitions: foreign)
            if batch.isEmpty { return true }
            runs = batch.runs
        }
        let tickets = Dictionary(uniqueKeysWithValues: batch.lastOffsets(of: runs).map { ($0.key, tracker.register($0.key, through: $0.value)) })
        metrics.consumed.increment(by: batch.messages.count)
        for message in batch.messages {
            guard let invalid = message.invalid else { continue }
            reportInvalid(message, invalid)
            if let deadLetters, let ticket = tickets[message.partition] {
                tracker.addParts(ticket, 1)
                deadLetters.send(.invalid(message, invalid, ticket: ticket))
            }
        }
        let owners = self.owners
        let coalesced = batch.coalesced(mapCount: configuration.maps.count, owners: batch.messageOwners(of: runs) { owners.id($0) })
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
            for (map, changes) in coalesced.enumerated() where !changes.isEmpty {
                metrics.entries(of: configuration.maps[map], applier.contents(of: map).count)
            }
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
    func refusedEvents(_ rejections: [Rejection], in batch: Batch) -> Int {
        guard !rejections.isEmpty else { return 0 }
        struct Target: Hashable {
            var map: Int
            var key: MapKey
        }
        let refused = Set(rejections.map { Target(map: $0.map, key: $0.key) })
        return batch.changes.reduce(0) { $0 + (refused.contains(Target(map: $1.map, key: $1.key)) ? Int($1.events) : 0) }
    }

    /// Applies a batch until HAProxy has acknowledged it; nil when abandoned at shutdown.
    func applyUntilAcknowledged(_ coalesced: [[KeyChange]]) async throws -> ApplyReport? {
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

}
