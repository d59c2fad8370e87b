import Consumer
import Core
import DequeModule
import Foundation
import Kafka
import Synchronization

/// A rebalance waiting for the pipeline: which partitions go, and the offsets to commit for them.
final class RevokeRequest: Sendable {
    let partitions: [TopicPartition]
    let lost: Bool
    private let reply = Mutex<[TopicPartition: Int64]?>(nil)
    private let answered = DispatchSemaphore(value: 0)

    init(partitions: [TopicPartition], lost: Bool) {
        self.partitions = partitions
        self.lost = lost
    }

    func answer(_ offsets: [TopicPartition: Int64]) {
        reply.withLock { $0 = offsets }
        answered.signal()
    }

    /// The pipeline's answer, or nil when it did not come in time.
    func wait(milliseconds: Int) -> [TopicPartition: Int64]? {
        guard answered.wait(timeout: .now() + .milliseconds(milliseconds)) == .success else { return nil }
        return reply.withLock { $0 }
    }
}

/// What the pipeline takes from the backlog.
enum BacklogItem: Sendable {
    case batch(Batch)
    case revoke(RevokeRequest)
    /// Partitions were assigned; their messages follow.
    case assigned([TopicPartition])
    /// Nothing arrived before the caller's idle deadline.
    case idle
}

/// Consumed events waiting for the pipeline, bounded in events and bytes. What arrives while the
/// pipeline is busy is compacted as it arrives (see ``Batch/appendCompacting(_:index:)``): a
/// change to a key already waiting replaces it, so `events` counts distinct pending changes
/// (and invalid messages), and the next batch carries every event in it. Above the bound the
/// consumer is paused (its partitions stop fetching, the group membership stays); below half of
/// it, resumed. A batch closes when it holds `maxEvents` events or when its first event has
/// waited `maxWait`; a waiting rebalance goes before any batch.
final class Backlog: Sendable {
    private struct State {
        /// Chunks taken apart from ``tail`` (by a batch limit or a revoke), oldest first.
        var chunks = Deque<Batch>()
        /// How much of the oldest chunk earlier batches took.
        var taken = Batch.Cursor()
        /// What arrived since the pipeline last took a batch, compacted as it arrives.
        var tail = Batch()
        var index = CompactionIndex()
        var events = 0
        var bytes = 0
        var controls = Deque<BacklogItem>()
        var closed = false
        /// Set by ``poke()``: the pipeline has something to finish, so a wait ends as idle.
        var poked = false
        var failure: (any Error)?
        var paused = false
        var peakEvents = 0
        var peakBytes = 0
    }

    let maxEvents: Int
    let maxBytes: Int
    private let state = Mutex(State())
    private let wakeUp = WakeUp()

    init(maxEvents: Int, maxBytes: Int) {
        self.maxEvents = maxEvents
        self.maxBytes = maxBytes
    }

    /// Adds a burst; returns true, once, when the bound is reached and the consumer must pause.
    /// The consumer carries that pause out on its polling thread before it reads the resume that
    /// ``takeResume(_:)`` queues for it, so the two reach librdkafka in that order.
    @discardableResult
    func push(_ chunk: Batch) -> Bool {
        guard !chunk.isEmpty else { return false }
        let full = state.withLock { state -> Bool in
            guard !state.closed else { return false }
            let before = (state.tail.events, state.tail.bytes)
            state.tail.appendCompacting(chunk, index: &state.index)
            state.events += state.tail.events - before.0
            state.bytes += state.tail.bytes - before.1
            state.peakEvents = max(state.peakEvents, state.events)
            state.peakBytes = max(state.peakBytes, state.bytes)
            if !state.paused && (state.events >= maxEvents || state.bytes >= maxBytes) {
                state.paused = true
                return true
            }
            return false
        }
        wakeUp.signal()
        return full
    }

    /// Queues a rebalance ahead of every batch; false when the backlog is closed.
    func push(_ request: RevokeRequest) -> Bool {
        push(control: .revoke(request))
    }

    /// Queues an assignment ahead of every batch (its partitions' messages come after it).
    func pushAssigned(_ partitions: [TopicPartition]) {
        _ = push(control: .assigned(partitions))
    }

    private func push(control: BacklogItem) -> Bool {
        let accepted = state.withLock { state -> Bool in
            guard !state.closed else { return false }
            state.controls.append(control)
            return true
        }
        if accepted { wakeUp.signal() }
        return accepted
    }

    /// Drops queued messages of partitions given up (their new owner reads them again).
    func remove(partitions: Set<TopicPartition>) {
        state.withLock { state in
            Self.sealTail(&state)
            if !state.chunks.isEmpty { state.chunks[0].removeTaken(state.taken) }
            state.taken = Batch.Cursor()
            for index in state.chunks.indices {
                let before = (state.chunks[index].events, state.chunks[index].bytes)
                state.chunks[index].remove(partitions: partitions)
                state.events -= before.0 - state.chunks[index].events
                state.bytes -= before.1 - state.chunks[index].bytes
            }
            state.chunks.removeAll { $0.isEmpty }
        }
    }

    /// Stops accepting and hands out nothing more (queued events are dropped: they were not
    /// committed, so they are consumed again after a restart).
    func close() {
        state.withLock { $0.closed = true }
        wakeUp.signal()
    }

    /// Stops the pipeline with an error (a fatal consumer error).
    func fail(_ error: any Error) {
        state.withLock { state in
            state.failure = error
            state.closed = true
        }
        wakeUp.signal()
    }

    /// Ends the pipeline's wait now, as idle when no batch is due: work beside it (a store) has
    /// finished.
    func poke() {
        state.withLock { $0.poked = true }
        wakeUp.signal()
    }

    var isClosed: Bool { state.withLock { $0.closed } }

    /// True once when the consumer was paused and the backlog has drained below half its bound;
    /// `resume` is then called under the lock, so a resume and the next pause cannot cross.
    func takeResume(_ resume: () -> Void = {}) -> Bool {
        state.withLock { state in
            guard state.paused, state.events < maxEvents / 2, state.bytes < maxBytes / 2 else { return false }
            state.paused = false
            resume()
            return true
        }
    }

    var isPaused: Bool { state.withLock { $0.paused } }

    var size: (events: Int, bytes: Int, peakEvents: Int, peakBytes: Int) {
        state.withLock { ($0.events, $0.bytes, $0.peakEvents, $0.peakBytes) }
    }

    /// The next batch (at most `maxEvents` events, closed as described above) or rebalance; `.idle`
    /// at `idleDeadline` or after a ``poke()`` when nothing is due; nil once closed. Throws the failure given to ``fail(_:)``.
    func next(maxEvents batchLimit: Int, maxWait: Duration, idleDeadline: ContinuousClock.Instant?) async throws -> BacklogItem? {
        enum Decision {
            case item(BacklogItem)
            case wait(ContinuousClock.Instant?)
            case closed
            case failed(any Error)
        }
        while true {
            let now = ContinuousClock.now
            let decision = state.withLock { state -> Decision in
                if let failure = state.failure { return .failed(failure) }
                if state.closed { return .closed }
                if let control = state.controls.popFirst() { return .item(control) }
                let due = (state.chunks.first ?? (state.tail.isEmpty ? nil : state.tail)).map { $0.arrival + maxWait }
                // A full backlog (consumption paused) gains nothing by waiting longer.
                if let due, state.events >= batchLimit || now >= due || state.paused {
                    return .item(.batch(Self.take(&state, limit: batchLimit)))
                }
                if state.poked || (idleDeadline.map { now >= $0 } ?? false) {
                    state.poked = false
                    return .item(.idle)
                }
                switch (due, idleDeadline) {
                case (let due?, let idle?): return .wait(min(due, idle))
                case (let due?, nil): return .wait(due)
                case (nil, let idle): return .wait(idle)
                }
            }
            switch decision {
            case .item(let item): return item
            case .closed: return nil
            case .failed(let error): throw error
            case .wait(let deadline): await wakeUp.wait(until: deadline)
            }
        }
    }

    /// Ends compaction into the tail: it becomes the newest chunk.
    private static func sealTail(_ state: inout State) {
        guard !state.tail.isEmpty else { return }
        state.chunks.append(state.tail)
        state.tail = Batch()
        state.index.reset()
    }

    private static func take(_ state: inout State, limit batchLimit: Int) -> Batch {
        sealTail(&state)
        var batch = Batch()
        while !state.chunks.isEmpty, batch.events < batchLimit {
            if state.taken == Batch.Cursor() && batch.events + state.chunks[0].events <= batchLimit {
                batch.append(state.chunks.removeFirst())
                continue
            }
            // The messages that fit (at least one when the batch is still empty), from where the
            // last batch stopped.
            let prefix = state.chunks[0].takePrefix(from: &state.taken, events: batchLimit - batch.events, atLeastOne: batch.isEmpty)
            if !prefix.isEmpty { batch.append(prefix) }
            guard state.chunks[0].isTaken(by: state.taken) else { break }
            state.chunks.removeFirst()
            state.taken = Batch.Cursor()
        }
        state.events -= batch.events
        state.bytes -= batch.bytes
        return batch
    }
}
