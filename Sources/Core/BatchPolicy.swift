/// When a batch closes and how often the state is stored and offsets committed, from what the
/// last batches and stores cost.
///
/// Guarantees: at low rates a lone event goes at once (no window); under load the window grows to
/// `maxWait`; while batches rebuild a map (a rebuild costs the same whatever it carries) a batch
/// may take the whole backlog and, when far behind, wait as long as the last rebuild took (at most
/// ``longestCatchUpWait``); storing the state takes at most a tenth of the time.
public struct BatchPolicy: Sendable, Equatable {
    /// `batch.max_events`.
    public var maxEvents: Int
    /// `batch.max_wait_ms`.
    public var maxWait: Duration
    /// `backlog.max_events`: the most a batch can take while batches rebuild.
    public var backlogMaxEvents: Int
    /// `commit.interval_ms`.
    public var commitInterval: Duration

    /// Batches of this many events or more get the full window.
    public static let fullWindowBatch = 1000
    public static let longestCatchUpWait = Duration.seconds(2)

    public private(set) var lastBatchEvents = 0
    /// The last batch that changed a map rebuilt one.
    public private(set) var rebuilding = false
    public private(set) var lastRebuildDuration: Duration = .zero
    public private(set) var lastStoreDuration: Duration = .zero

    public init(maxEvents: Int, maxWait: Duration, backlogMaxEvents: Int, commitInterval: Duration) {
        self.maxEvents = maxEvents
        self.maxWait = maxWait
        self.backlogMaxEvents = backlogMaxEvents
        self.commitInterval = commitInterval
    }

    /// The most events in the next batch.
    public var limit: Int { rebuilding ? max(maxEvents, backlogMaxEvents) : maxEvents }

    /// Whether the broker holds more unconsumed events than a batch takes: the bridge is behind,
    /// and throughput matters more than each event's latency.
    public func isCatchingUp(unconsumed: Int64) -> Bool { unconsumed >= Int64(maxEvents) }

    /// How long the next batch waits for more events after its first.
    public func window(catchingUp: Bool) -> Duration {
        if rebuilding && catchingUp {
            return max(maxWait, min(lastRebuildDuration, Self.longestCatchUpWait))
        }
        return maxWait * min(1.0, Double(lastBatchEvents) / Double(Self.fullWindowBatch))
    }

    /// How long between stores and commits: `commit.interval_ms`, stretched so that storing the
    /// state takes at most a tenth of the time (on a map of millions of entries, storing it every
    /// second would otherwise dominate).
    public var storeInterval: Duration { max(commitInterval, lastStoreDuration * 9) }

    /// A batch of `events` events (changes and invalid messages) was done. `strategies` is nil
    /// when it changed no map; `sendDuration` is how long HAProxy took.
    public mutating func batchDone(events: Int, strategies: [ApplyStrategy]?, sendDuration: Duration) {
        lastBatchEvents = events
        guard let strategies else { return }
        rebuilding = strategies.contains(.rebuild)
        if rebuilding { lastRebuildDuration = sendDuration }
    }

    public mutating func stored(taking duration: Duration) {
        lastStoreDuration = duration
    }
}
