/// Offsets waiting to be committed, merged, with at most one asynchronous commit unanswered.
///
/// One commit at a time matters with librdkafka 2.0.2: after a broker outage every commit queued
/// meanwhile fails with UNKNOWN_MEMBER_ID, and each failure makes the consumer rejoin its group
/// again, so a commit per interval kept it from ever rejoining.
///
/// Guarantees: offsets asked for are merged (the highest per partition); nothing is sent while a
/// commit is unanswered, unless it has been for ``patience``; offsets of partitions no longer
/// assigned are dropped, never committed.
public struct CommitQueue: Sendable, Equatable {
    /// How long an unanswered commit holds the next one back.
    public var patience: Duration

    public private(set) var pending: [TopicPartition: Int64] = [:]
    /// When the unanswered commit was sent.
    public private(set) var inFlightSince: ContinuousClock.Instant?

    public init(patience: Duration = .seconds(60)) {
        self.patience = patience
    }

    public mutating func request(_ offsets: [TopicPartition: Int64]) {
        for (partition, offset) in offsets { pending[partition] = max(pending[partition] ?? offset, offset) }
    }

    public enum Action: Sendable, Equatable {
        /// Nothing to send, or a commit is still unanswered.
        case wait
        /// Send these offsets as one asynchronous commit (call ``sent(at:)`` or ``answered()``).
        /// `abandoned` is true when an unanswered commit was given up on for it.
        case send([TopicPartition: Int64], abandoned: Bool)
    }

    /// What to send now, of the partitions `assigned`.
    public mutating func next(assigned: Set<TopicPartition>, now: ContinuousClock.Instant) -> Action {
        var abandoned = false
        if let since = inFlightSince {
            guard now - since > patience else { return .wait }
            abandoned = true
        }
        let offsets = pending.filter { assigned.contains($0.key) }
        pending.removeAll()
        guard !offsets.isEmpty else { return .wait }
        return .send(offsets, abandoned: abandoned)
    }

    /// The commit went out and awaits its answer.
    public mutating func sent(at now: ContinuousClock.Instant) {
        inFlightSince = now
    }

    /// The unanswered commit was answered (or could not be sent): the next may go.
    public mutating func answered() {
        inFlightSince = nil
    }

    /// These partitions were given up: what was pending for them is dropped.
    public mutating func revoked(_ partitions: some Sequence<TopicPartition>) {
        for partition in partitions { pending[partition] = nil }
    }
}
