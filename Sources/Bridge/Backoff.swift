import Mapper

/// Capped exponential backoff with full jitter: the n-th wait is random in [initial, min(max, initial * 2^n)].
///
/// A HAProxy that refuses the connection (not running yet, restarting, its socket not there) is
/// looked for again at least every ``refusedCeiling``: a refused connect costs it nothing, and
/// HAProxy comes back when it has loaded its maps, at a moment no backoff can guess. With the
/// exponential wait alone (up to `haproxy.reconnect.max_ms`, 5 s by default), the bridge found a
/// HAProxy restarted with a 5,000,000-entry map 0-4 s after it was back (the benchmark's W5
/// resync ranged over 2.4-6.5 s for 2.3 s of work). Failures once connected (a timeout, a
/// connection closed mid-way) keep the exponential wait: those can be HAProxy under load.
struct Backoff: Sendable {
    let initial: Duration
    let maximum: Duration
    private(set) var attempt = 0

    static let refusedCeiling = Duration.milliseconds(250)

    init(initialMilliseconds: Int, maxMilliseconds: Int) {
        initial = .milliseconds(initialMilliseconds)
        maximum = .milliseconds(maxMilliseconds)
    }

    /// The next wait; `refused` when the failure was that no connection could be made.
    mutating func next(refused: Bool = false) -> Duration {
        let factor = 1 << min(attempt, 20)
        attempt += 1
        var ceiling = min(maximum, initial * factor)
        if refused { ceiling = min(ceiling, max(initial, Self.refusedCeiling)) }
        let lower = Double(initial.components.attoseconds) / 1e18 + Double(initial.components.seconds)
        let upper = Double(ceiling.components.attoseconds) / 1e18 + Double(ceiling.components.seconds)
        return .milliseconds(Int(Double.random(in: lower...max(lower, upper)) * 1000))
    }

    mutating func reset() { attempt = 0 }

    /// Whether a failure is a refused connection (no HAProxy to talk to), as ``next(refused:)``
    /// takes it. A payload session that cannot be opened while the main one is up is not: that
    /// HAProxy is there, and may be busy.
    static func isRefusal(_ error: any Error) -> Bool { (error as? MapperError)?.code == .unreachable }
}
