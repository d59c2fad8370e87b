/// HAProxy's list-matched map as the runtime API changes it, for tests that compare the bridge's
/// commands with events applied one by one: `set` keeps an entry in place, `del` removes every
/// entry of a key, `add` appends.
public struct ListMap: Equatable, CustomStringConvertible, Sendable {
    public var entries: [(key: String, value: String)] = []

    public init(entries: [(key: String, value: String)] = []) {
        self.entries = entries
    }

    public mutating func set(_ key: String, _ value: String) {
        if let index = entries.firstIndex(where: { $0.key == key }) { entries[index].value = value }
    }

    public mutating func del(_ key: String) { entries.removeAll { $0.key == key } }

    public mutating func add(_ key: String, _ value: String) { entries.append((key, value)) }

    /// One event as a user means it: upsert in place, or remove.
    public mutating func apply(_ key: String, _ value: String?) {
        guard let value else { return del(key) }
        if entries.contains(where: { $0.key == key }) { set(key, value) } else { add(key, value) }
    }

    public static func == (lhs: ListMap, rhs: ListMap) -> Bool {
        lhs.entries.map(\.key) == rhs.entries.map(\.key) && lhs.entries.map(\.value) == rhs.entries.map(\.value)
    }

    public var description: String { entries.map { "\($0.key)=\($0.value)" }.joined(separator: " ") }
}

/// A small seeded generator (SplitMix64), so that a failing seed can be replayed.
public struct SplitMix: RandomNumberGenerator, Sendable {
    public var state: UInt64

    public init(seed: UInt64) { state = seed &+ 0x9E37_79B9_7F4A_7C15 }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
