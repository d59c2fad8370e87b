/// When to wake librdkafka's fetcher. librdkafka (2.0.2 as on Debian 12) stops fetching a
/// partition once the consumer queue holds `queued.min.messages` messages or
/// `queued.max.messages.kbytes` of payload, and looks at the queue again only when its broker
/// thread next wakes up: on a request to send, an answer, or after a second. Nothing wakes it
/// when the application drains the queue, so a consumer that is behind reads in bursts with up
/// to a second of nothing between them, and the only way around that used to be bounds large
/// enough to hold a second of consumption, which is memory (librdkafka 2.1 made the wait
/// configurable: `fetch.queue.backoff.ms`, 1 s by default).
///
/// The polling thread asks ``check(queued:now:)`` now and then (at most every `interval`) with
/// the queue's length. It answers true when the queue has drained below half of both bounds and
/// nothing has entered it since the previous check: the fetcher is asleep, or slower than the
/// application. The consumer then sends a cheap request (the log end of the partitions it is
/// behind on) to their brokers, which wakes their threads, and they fetch again at once, and
/// reports it with ``woke()``. Wake-ups that bring nothing (a partition whose log ends with a
/// transaction marker looks behind forever) stop after ``fruitlessLimit`` in a row, until
/// messages arrive again.
public struct PrefetchRefill: Sendable {
    /// librdkafka's `queued.min.messages` and `queued.max.messages.kbytes` (in bytes).
    public let maxMessages: Int
    public let maxBytes: Int
    public let interval: Duration

    private var lastCheck: ContinuousClock.Instant
    private var lastQueued = 0
    @usableFromInline var consumedMessages = 0
    @usableFromInline var consumedBytes = 0
    /// The mean payload of consumed messages, which the queue's byte bound counts.
    private var meanPayload = 0.0
    /// Whether the fetcher was woken since the last check, and how many wake-ups in a row
    /// brought nothing.
    private var wokeSinceCheck = false
    private var fruitless = 0
    public static let fruitlessLimit = 5

    public init(maxMessages: Int, maxBytes: Int, interval: Duration = .milliseconds(50), now: ContinuousClock.Instant = .now) {
        self.maxMessages = maxMessages
        self.maxBytes = maxBytes
        self.interval = interval
        self.lastCheck = now
    }

    /// Reads librdkafka's bounds from its settings (its defaults when they are not set).
    public init(settings: [String: String], interval: Duration = .milliseconds(50), now: ContinuousClock.Instant = .now) {
        let messages = settings["queued.min.messages"].flatMap { Int($0) } ?? 100_000
        let kilobytes = settings["queued.max.messages.kbytes"].flatMap { Int($0) } ?? 65_536
        self.init(maxMessages: messages, maxBytes: kilobytes * 1024, interval: interval, now: now)
    }

    /// One message handed to the application, with its payload's size.
    @inlinable public mutating func consumed(payloadBytes: Int) {
        consumedMessages &+= 1
        consumedBytes &+= payloadBytes
    }

    /// Whether a check is due (cheap: one clock reading); call ``check(queued:now:)`` then.
    public func isDue(_ now: ContinuousClock.Instant) -> Bool { now - lastCheck >= interval }

    /// True when the fetcher should be woken: `queued` (the consumer queue's length now) is below
    /// half of both bounds and no message entered the queue since the last check.
    public mutating func check(queued: Int, now: ContinuousClock.Instant) -> Bool {
        let arrived = queued - lastQueued + consumedMessages
        if consumedMessages > 0 {
            let mean = Double(consumedBytes) / Double(consumedMessages)
            meanPayload = meanPayload == 0 ? mean : (meanPayload + mean) / 2
        }
        if arrived > 0 {
            fruitless = 0
        } else if wokeSinceCheck {
            fruitless += 1
        }
        wokeSinceCheck = false
        lastQueued = queued
        lastCheck = now
        consumedMessages = 0
        consumedBytes = 0
        let low = queued < maxMessages / 2 && Double(queued) * meanPayload < Double(maxBytes / 2)
        return low && arrived <= 0 && fruitless < Self.fruitlessLimit
    }

    /// The fetcher was woken after a check answered true.
    public mutating func woke() { wokeSinceCheck = true }
}
