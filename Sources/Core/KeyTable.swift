/// A hash table from ``MapKey`` to a value that probes on the hash each key already carries
/// (``MapKey/hashCode``): no `Hasher` runs per look-up, and a probe compares the 32-bit hash kept
/// in its slot before it touches the key's bytes. The compaction index, the coalescer and a plan's
/// values before look up every event's key in one; a `Dictionary` hashed the hash again and
/// fetched the stored key for every slot it probed.
///
/// Entries stay in the order they were inserted, and there is no removal: the tables it serves are
/// dropped whole, not thinned.
public struct KeyTable<Value> {
    /// Per slot: 0 when empty, else the key's hash in the high 32 bits and its entry's index + 1
    /// in the low. Linear probing, at most half full.
    @usableFromInline var slots: [UInt64]
    @usableFromInline var keys: [MapKey] = []
    @usableFromInline var values: [Value] = []

    public init() {
        slots = []
    }

    public init(minimumCapacity: Int) {
        slots = []
        reserveCapacity(minimumCapacity)
    }

    public var count: Int { keys.count }
    public var isEmpty: Bool { keys.isEmpty }

    /// Room for `capacity` entries without growing.
    public mutating func reserveCapacity(_ capacity: Int) {
        keys.reserveCapacity(capacity)
        values.reserveCapacity(capacity)
        if capacity * 2 > slots.count { rehash(slotCount: Self.slotCount(for: capacity)) }
    }

    /// The value of `key`, if it is in the table.
    @inlinable
    public subscript(key: MapKey) -> Value? {
        guard let entry = find(key).entry else { return nil }
        return values[entry]
    }

    /// The value of `key`, inserting `defaultValue` first when it is absent: one probe to read and
    /// write it in place.
    @inlinable
    public subscript(key: MapKey, default defaultValue: @autoclosure () -> Value) -> Value {
        get { self[key] ?? defaultValue() }
        _modify {
            let entry = insert(key, defaultValue).entry
            yield &values[entry]
        }
    }

    /// The index of `key`'s entry, inserting it with `value` when absent; `inserted` says which.
    @inlinable
    public mutating func insert(_ key: MapKey, _ value: () -> Value) -> (entry: Int, inserted: Bool) {
        if (keys.count + 1) * 2 > slots.count { rehash(slotCount: Self.slotCount(for: keys.count + 1)) }
        let found = find(key)
        if let entry = found.entry { return (entry, false) }
        let entry = keys.count
        slots[found.slot] = UInt64(key.hashCode) << 32 | UInt64(entry + 1)
        keys.append(key)
        values.append(value())
        return (entry, true)
    }

    /// The value of the entry at `entry` (an index ``insert(_:_:)`` returned).
    @inlinable
    public subscript(entry entry: Int) -> Value {
        get { values[entry] }
        _modify { yield &values[entry] }
    }

    /// The slot that holds `key`, or the empty slot where it would go.
    @inlinable
    func find(_ key: MapKey) -> (slot: Int, entry: Int?) {
        guard !slots.isEmpty else { return (0, nil) }
        let mask = slots.count - 1
        let hash = UInt64(key.hashCode)
        return slots.withUnsafeBufferPointer { slots in
            var slot = Int(truncatingIfNeeded: hash) & mask
            while true {
                let word = slots[slot]
                if word == 0 { return (slot, nil) }
                if word >> 32 == hash {
                    let entry = Int(truncatingIfNeeded: word & 0xFFFF_FFFF) - 1
                    if keys[entry] == key { return (slot, entry) }
                }
                slot = (slot + 1) & mask
            }
        }
    }

    @usableFromInline
    static func slotCount(for capacity: Int) -> Int {
        var count = 16
        while count < capacity * 2 { count *= 2 }
        return count
    }

    @usableFromInline
    mutating func rehash(slotCount: Int) {
        var fresh = [UInt64](repeating: 0, count: slotCount)
        let mask = slotCount - 1
        fresh.withUnsafeMutableBufferPointer { fresh in
            for word in slots where word != 0 {
                var slot = Int(truncatingIfNeeded: word >> 32) & mask
                while fresh[slot] != 0 { slot = (slot + 1) & mask }
                fresh[slot] = word
            }
        }
        slots = fresh
    }
}

extension KeyTable: Sendable where Value: Sendable {}
