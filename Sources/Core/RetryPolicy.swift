/// Whether a failed delivery (a dead letter the broker did not take) is tried again, and when.
///
/// Guarantees: a permanent failure is given up at once; a retriable one is tried again after
/// 100 ms, doubling to at most 2 s, until `timeout` has passed since its first failure.
public struct RetryPolicy: Sendable, Equatable {
    public var timeout: Duration
    public var firstDelay: Duration = .milliseconds(100)
    public var longestDelay: Duration = .seconds(2)

    public init(timeout: Duration) {
        self.timeout = timeout
    }

    public enum Decision: Sendable, Equatable {
        case retry(after: Duration)
        case giveUp(permanent: Bool)
    }

    /// The decision after failure number `attempt` (1 for the first), first failed at `since`.
    public func decide(permanent: Bool, attempt: Int, since: ContinuousClock.Instant, now: ContinuousClock.Instant) -> Decision {
        if permanent { return .giveUp(permanent: true) }
        if now - since >= timeout { return .giveUp(permanent: false) }
        let doublings = min(max(attempt - 1, 0), 30)
        return .retry(after: min(longestDelay, firstDelay * (1 << doublings)))
    }
}
