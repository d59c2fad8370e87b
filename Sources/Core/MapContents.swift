/// The desired contents of one map: each key's value, the order HAProxy holds the entries in, and
/// which source owns each entry (the Kafka partition of its latest event, as an ``Owner`` id the
/// caller assigns, or ``unowned`` for entries found in HAProxy or a file before any event).
///
/// Order follows HAProxy's own rules, so the bridge's view and HAProxy's stay identical: a new key
/// is appended, `set` keeps a key where it is, and a key deleted and set again moves to the end.
/// Order matters only for list-matched maps (``MatchType/isOrderSensitive``); it is kept for all.
/// Keys removed by an owner are remembered as tombstones until ``takeTombstones()``, so a merge
/// with another bridge's view, or a repair of a reloaded map, knows to remove them too.
/// Every operation is O(1); the order is materialised (a sort) only when asked for.
public struct MapContents: Sendable {
    public typealias Owner = Int32
    /// The owner of entries no event has changed.
    public static let unowned: Owner = -1

    struct Slot: Sendable {
        var value: String
        var sequence: UInt64
        var owner: Owner
    }

    /// One desired entry and its owner.
    public struct Entry: Sendable, Equatable {
        public var key: MapKey
        public var value: String
        public var owner: Owner

        public init(key: MapKey, value: String, owner: Owner) {
            self.key = key
            self.value = value
            self.owner = owner
        }
    }

    private(set) var slots: [MapKey: Slot]
    /// Keys removed since the last ``takeTombstones()``, with the owner that removed them.
    public private(set) var tombstones: [MapKey: Owner] = [:]
    private var nextSequence: UInt64 = 0

    public init() {
        slots = [:]
    }

    /// Builds contents from entries in HAProxy's order; for a key listed more than once, the first
    /// entry wins (the one HAProxy's lookups return).
    /// `capacity`: how many entries to make room for at once (growing toward millions of entries
    /// rehashes every key at each doubling).
    public init(entries: some Sequence<(key: String, value: String)>, owner: Owner = unowned, capacity: Int? = nil) {
        self = Self.adopting(entries, owner: owner, capacity: capacity).contents
    }

    /// Contents built from HAProxy's live entries as ``init(entries:owner:capacity:)`` builds
    /// them, with how many entries were read and whether any key was listed more than once. With
    /// none listed twice, the contents are exactly the live map, in its order.
    public static func adopting(
        _ entries: some Sequence<(key: String, value: String)>, owner: Owner = unowned, capacity: Int? = nil
    ) -> (contents: MapContents, liveCount: Int, duplicated: Bool) {
        var contents = MapContents()
        contents.slots = Dictionary(minimumCapacity: capacity ?? entries.underestimatedCount)
        var count = 0
        var duplicated = false
        for (key, value) in entries {
            count += 1
            let mapKey = MapKey(key)
            if contents.slots[mapKey] == nil {
                contents.append(mapKey, value, owner)
            } else {
                duplicated = true
            }
        }
        return (contents, count, duplicated)
    }

    /// Builds contents from owned entries in order (a state file).
    public init(owned entries: some Sequence<Entry>) {
        slots = Dictionary(minimumCapacity: entries.underestimatedCount)
        for entry in entries where slots[entry.key] == nil { append(entry.key, entry.value, entry.owner) }
    }

    public var count: Int { slots.count }
    public var isEmpty: Bool { slots.isEmpty }

    public subscript(key: MapKey) -> String? { slots[key]?.value }

    public func contains(_ key: MapKey) -> Bool { slots[key] != nil }

    /// The key's value and owner, in one look-up.
    public func valueAndOwner(of key: MapKey) -> (value: String?, owner: Owner?) {
        guard let slot = slots[key] else { return (nil, nil) }
        return (slot.value, slot.owner)
    }

    /// Who owns the key's entry, when there is one.
    public func owner(of key: MapKey) -> Owner? { slots[key]?.owner }

    /// Sets the value, keeping the key's position, or appends the key when it is new.
    public mutating func set(_ key: MapKey, _ value: String, owner: Owner = unowned) {
        if !tombstones.isEmpty { tombstones[key] = nil }
        if let index = slots.index(forKey: key) {
            // One hash and probe, not three.
            slots.values[index].value = value
            slots.values[index].owner = owner
        } else {
            append(key, value, owner)
        }
    }

    /// Appends a key the caller has just found absent (one hash, not three).
    public mutating func insertNew(_ key: MapKey, _ value: String, owner: Owner = unowned) {
        if !tombstones.isEmpty { tombstones[key] = nil }
        append(key, value, owner)
    }

    /// Removes the key (wherever it is) and appends it with the value: what `del` then `add` does.
    public mutating func moveToEnd(_ key: MapKey, _ value: String, owner: Owner = unowned) {
        tombstones[key] = nil
        slots[key] = nil
        append(key, value, owner)
    }

    /// Removes the key; with an owner, remembers the removal as a tombstone.
    @discardableResult
    public mutating func remove(_ key: MapKey, owner: Owner? = nil) -> String? {
        if let owner { tombstones[key] = owner }
        return slots.removeValue(forKey: key)?.value
    }

    /// Hands over the tombstones to a store of the state, forgetting them here.
    public mutating func takeTombstones() -> [MapKey: Owner] {
        defer { tombstones = [:] }
        return tombstones
    }

    /// Takes back tombstones whose store failed, for the next one; a key set or removed since
    /// keeps what it has now (that is newer).
    public mutating func restoreTombstones(_ removed: [MapKey: Owner]) {
        for (key, owner) in removed where slots[key] == nil && tombstones[key] == nil {
            tombstones[key] = owner
        }
    }

    private mutating func append(_ key: MapKey, _ value: String, _ owner: Owner) {
        slots[key] = Slot(value: value, sequence: nextSequence, owner: owner)
        nextSequence &+= 1
    }

    /// The position rank of a key (larger is later), for order comparisons.
    package func sequence(of key: MapKey) -> UInt64? { slots[key]?.sequence }

    /// The key's value and position rank, in one look-up.
    package func valueAndSequence(of key: MapKey) -> (value: String, sequence: UInt64)? {
        guard let slot = slots[key] else { return nil }
        return (slot.value, slot.sequence)
    }

    /// Every position rank given so far is below this.
    package var sequenceBound: UInt64 { nextSequence }

    /// Calls `body` with every key and its position rank, in no particular order.
    package func forEachKey(_ body: (MapKey, UInt64) -> Void) {
        for (key, slot) in slots { body(key, slot.sequence) }
    }

    /// Every entry, in HAProxy's order when `ordered` (a sort), otherwise in no particular order.
    public func entries(ordered: Bool = true) -> [(key: MapKey, value: String)] {
        // Built directly, not from ``ownedEntries(ordered:)``: a rebuild of millions of entries
        // would hold both arrays at once.
        if !ordered { return slots.map { ($0.key, $0.value.value) } }
        var all = slots.map { (sequence: $0.value.sequence, key: $0.key, value: $0.value.value) }
        all.sort { $0.sequence < $1.sequence }
        return all.map { ($0.key, $0.value) }
    }

    /// Every entry with its owner, in HAProxy's order when `ordered`.
    public func ownedEntries(ordered: Bool = true) -> [Entry] {
        if !ordered {
            return slots.map { Entry(key: $0.key, value: $0.value.value, owner: $0.value.owner) }
        }
        var all = slots.map { (sequence: $0.value.sequence, entry: Entry(key: $0.key, value: $0.value.value, owner: $0.value.owner)) }
        all.sort { $0.sequence < $1.sequence }
        return all.map(\.entry)
    }

    /// Replaces every entry and tombstone of `owners` with the given ones (another bridge's
    /// stored view of partitions this one has just been given); other entries stay as they are.
    public mutating func replace(owners: Set<Owner>, with entries: [Entry], tombstones removed: [MapKey: Owner]) {
        for (key, slot) in slots where owners.contains(slot.owner) { slots[key] = nil }
        for (key, owner) in tombstones where owners.contains(owner) { tombstones[key] = nil }
        for entry in entries where owners.contains(entry.owner) {
            slots[entry.key] = nil
            append(entry.key, entry.value, entry.owner)
        }
        for (key, owner) in removed where owners.contains(owner) {
            slots[key] = nil
            tombstones[key] = owner
        }
    }
}
