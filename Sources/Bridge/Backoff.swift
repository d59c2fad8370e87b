/// Capped exponential backoff with full jitter: the n-th wait is random in [initial, min(max, initial * 2^n)].
struct Backoff: Sendable {
    let initial: Duration
    let maximum: Duration
    private(set) var attempt = 0

    init(initialMilliseconds: Int, maxMilliseconds: Int) {
        initial = .milliseconds(initialMilliseconds)
        maximum = .milliseconds(maxMilliseconds)
    }

    mutating func next() -> Duration {
        let factor = 1 << min(attempt, 20)
        attempt += 1
        let ceiling = min(maximum, initial * factor)
        let lower = Double(initial.components.attoseconds) / 1e18 + Double(initial.components.seconds)
        let upper = Double(ceiling.components.attoseconds) / 1e18 + Double(ceiling.components.seconds)
        return .milliseconds(Int(Double.random(in: lower...max(lower, upper)) * 1000))
    }

    mutating func reset() { attempt = 0 }
}
