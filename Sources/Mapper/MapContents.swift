/// The desired contents of one map: each key's value, and the order HAProxy holds the entries in.
///
/// Order follows HAProxy's own rules, so the bridge's view and HAProxy's stay identical: a new key
/// is appended, `set` keeps a key where it is, and a key deleted and set again moves to the end.
/// Order matters only for list-matched maps (``MatchType/isOrderSensitive``); it is kept for all.
/// Every operation is O(1); the order is materialised (a sort) only when asked for.
public struct MapContents: Sendable {
    struct Slot: Sendable {
        var value: String
        var sequence: UInt64
    }

    private(set) var slots: [MapKey: Slot]
    private var nextSequence: UInt64 = 0

    public init() {
        slots = [:]
    }

    /// Builds contents from entries in HAProxy's order; for a key listed more than once, the first
    /// entry wins (the one HAProxy's lookups return).
    public init(entries: some Sequence<(key: String, value: String)>) {
        slots = [:]
        for (key, value) in entries {
            let mapKey = MapKey(key)
            if slots[mapKey] == nil { append(mapKey, value) }
        }
    }

    public var count: Int { slots.count }
    public var isEmpty: Bool { slots.isEmpty }

    public subscript(key: MapKey) -> String? { slots[key]?.value }

    public func contains(_ key: MapKey) -> Bool { slots[key] != nil }

    /// Sets the value, keeping the key's position, or appends the key when it is new.
    public mutating func set(_ key: MapKey, _ value: String) {
        if slots[key] != nil {
            slots[key]!.value = value
        } else {
            append(key, value)
        }
    }

    /// Removes the key (wherever it is) and appends it with the value: what `del` then `add` does.
    public mutating func moveToEnd(_ key: MapKey, _ value: String) {
        slots[key] = nil
        append(key, value)
    }

    @discardableResult
    public mutating func remove(_ key: MapKey) -> String? {
        slots.removeValue(forKey: key)?.value
    }

    private mutating func append(_ key: MapKey, _ value: String) {
        slots[key] = Slot(value: value, sequence: nextSequence)
        nextSequence &+= 1
    }

    /// The position rank of a key (larger is later), for order comparisons.
    func sequence(of key: MapKey) -> UInt64? { slots[key]?.sequence }

    /// Every entry, in HAProxy's order when `ordered` (a sort), otherwise in no particular order.
    public func entries(ordered: Bool = true) -> [(key: MapKey, value: String)] {
        if !ordered {
            return slots.map { ($0.key, $0.value.value) }
        }
        var all = slots.map { (sequence: $0.value.sequence, key: $0.key, value: $0.value.value) }
        all.sort { $0.sequence < $1.sequence }
        return all.map { ($0.key, $0.value) }
    }

    /// True when both hold the same keys with the same values (byte for byte), ignoring order.
    public func sameEntries(as other: MapContents) -> Bool {
        guard count == other.count else { return false }
        for (key, slot) in slots {
            guard let theirs = other.slots[key], bytesEqual(theirs.value, slot.value) else { return false }
        }
        return true
    }
}
