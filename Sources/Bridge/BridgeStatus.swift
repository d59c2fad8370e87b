import Consumer
import Core
import Kafka
import Synchronization

/// What the bridge is doing, for health and readiness checks, `check`, logs and tests.
public final class BridgeStatus: Sendable {
    public struct Snapshot: Sendable, Equatable {
        /// The session with HAProxy is open.
        public var haproxyConnected = false
        /// Every managed map is known to equal the desired state.
        public var inSync = false
        /// The first synchronisation with HAProxy has completed.
        public var firstSyncDone = false
        /// The consumer has joined its group.
        public var consumerStarted = false
        public var eventsConsumed = 0
        public var changesApplied = 0
        public var batches = 0
        public var invalidEvents = 0
        public var refusedChanges = 0
        /// Invalid events and refused changes acknowledged by the dead-letter topic.
        public var deadLettered = 0
        /// Dead letters the broker did not take (each sent again).
        public var deadLetterFailures = 0
        public var resyncs = 0
        /// Failed attempts to synchronise with HAProxy (each retried after a backoff).
        public var syncFailures = 0
        public var haproxyRestarts = 0
        public var commits = 0
        /// The last offsets committed, per partition (the next offset to consume).
        public var committed: [TopicPartition: Int64] = [:]
        public var lastError: String?
        /// Waiting for another bridge to release the state directory.
        public var standby = false

        public init() {}

        /// Ready: consuming, connected to HAProxy, and synchronised at least once.
        public var isReady: Bool { consumerStarted && haproxyConnected && firstSyncDone }
    }

    private let state = Mutex(Snapshot())

    public init() {}

    public var snapshot: Snapshot { state.withLock { $0 } }

    func update(_ change: (inout Snapshot) -> Void) {
        state.withLock { change(&$0) }
    }
}
