/// The desired contents of one map: each key's value, the order HAProxy holds the entries in, and
/// which source owns each entry (the Kafka partition of its latest event, as an ``Owner`` id the
/// caller assigns, or ``unowned`` for entries found in HAProxy or a file before any event).
///
/// Order follows HAProxy's own rules, so the bridge's view and HAProxy's stay identical: a new key
/// is appended, `set` keeps a key where it is, and a key deleted and set again moves to the end.
/// Order matters only for list-matched maps (``MatchType/isOrderSensitive``); it is kept for all.
/// Keys removed by an owner are remembered as tombstones until ``takeTombstones()``, so a merge
/// with another bridge's view, or a repair of a reloaded map, knows to remove them too.
///
/// Storage is compact, for maps of millions of entries: every key's and value's bytes sit in one
/// arena, each entry is a fixed-size record in HAProxy's order (so the order is the records'
/// order, never sorted), and an open-addressing table of record numbers finds a key. No entry is
/// a `String` or a dictionary slot of its own. Removed records and replaced bytes are garbage
/// until there is as much of it as of live data, when the storage is compacted (O(1) amortised).
/// Every operation is O(1) amortised; listing the entries is O(n) in order.
public struct MapContents: Sendable {
    public typealias Owner = Int32
    /// The owner of entries no event has changed.
    public static let unowned: Owner = -1
    /// Marks a removed record.
    static let removedOwner: Owner = .min

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

    /// One entry: its key's bytes at `offset` in the arena, its value's right after them.
    struct Record: Sendable {
        var offset: Int
        var keyLength: UInt32
        var valueLength: UInt32
        var hash: UInt32
        var owner: Owner
    }

    private var arena: [UInt8] = []
    private var records: [Record] = []
    /// Linear probing: a record's number plus one, or 0 for an empty slot; a power of two long.
    private var table: [UInt32] = []
    private var live = 0
    /// Arena bytes no live record uses.
    private var garbage = 0
    /// Keys removed since the last ``takeTombstones()``, with the owner that removed them.
    public private(set) var tombstones: [MapKey: Owner] = [:]

    public init() {}

    /// Builds contents from entries in HAProxy's order; for a key listed more than once, the first
    /// entry wins (the one HAProxy's lookups return).
    /// `capacity`: how many entries to make room for at once.
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
        contents.reserve(capacity ?? entries.underestimatedCount)
        var count = 0
        var duplicated = false
        for (key, value) in entries {
            count += 1
            if !contents.appendIfAbsent(key, value, owner) { duplicated = true }
        }
        return (contents, count, duplicated)
    }

    /// Builds contents from owned entries in order (a state file).
    public init(owned entries: some Sequence<Entry>) {
        reserve(entries.underestimatedCount)
        for entry in entries { _ = appendIfAbsent(entry.key.string, entry.value, entry.owner) }
    }

    /// Makes room for `count` entries at once (growing toward millions of entries re-places every
    /// entry at each doubling).
    public mutating func reserve(_ count: Int) {
        guard count > 0 else { return }
        records.reserveCapacity(count)
        if Self.tableSize(for: count) > table.count { rebuildTable(size: Self.tableSize(for: count)) }
    }

    public var count: Int { live }
    public var isEmpty: Bool { live == 0 }

    public subscript(key: MapKey) -> String? {
        guard let record = find(key)?.record else { return nil }
        return value(of: record)
    }

    public func contains(_ key: MapKey) -> Bool { find(key) != nil }

    /// The key's value and owner, in one look-up.
    public func valueAndOwner(of key: MapKey) -> (value: String?, owner: Owner?) {
        guard let record = find(key)?.record else { return (nil, nil) }
        return (value(of: record), records[record].owner)
    }

    /// Who owns the key's entry, when there is one.
    public func owner(of key: MapKey) -> Owner? {
        find(key).map { records[$0.record].owner }
    }

    /// Sets the value, keeping the key's position, or appends the key when it is new.
    public mutating func set(_ key: MapKey, _ value: String, owner: Owner = unowned) {
        if !tombstones.isEmpty { tombstones[key] = nil }
        reserveOneMore()
        Self.withBytes(key.string) { keyBytes in
            let hash = Self.hash(keyBytes)
            switch probe(keyBytes, hash) {
            case .found(_, let record): replaceValue(of: record, key: keyBytes, value: value, owner: owner)
            case .absent(let slot): append(keyBytes, value, hash, owner, slot: slot)
            }
        }
    }

    /// Appends a key the caller has just found absent.
    public mutating func insertNew(_ key: MapKey, _ value: String, owner: Owner = unowned) {
        set(key, value, owner: owner)
    }

    /// Removes the key (wherever it is) and appends it with the value: what `del` then `add` does.
    public mutating func moveToEnd(_ key: MapKey, _ value: String, owner: Owner = unowned) {
        tombstones[key] = nil
        removeEntry(key)
        set(key, value, owner: owner)
    }

    /// Removes the key; with an owner, remembers the removal as a tombstone.
    @discardableResult
    public mutating func remove(_ key: MapKey, owner: Owner? = nil) -> String? {
        if let owner { tombstones[key] = owner }
        return removeEntry(key)
    }

    /// Hands over the tombstones to a store of the state, forgetting them here.
    public mutating func takeTombstones() -> [MapKey: Owner] {
        defer { tombstones = [:] }
        return tombstones
    }

    /// Takes back tombstones whose store failed, for the next one; a key set or removed since
    /// keeps what it has now (that is newer).
    public mutating func restoreTombstones(_ removed: [MapKey: Owner]) {
        for (key, owner) in removed where !contains(key) && tombstones[key] == nil {
            tombstones[key] = owner
        }
    }

    /// The position rank of a key (larger is later), for order comparisons. Ranks are below
    /// ``sequenceBound`` and hold until the contents change.
    package func sequence(of key: MapKey) -> UInt64? { find(key).map { UInt64($0.record) } }

    /// Whether the key's value is exactly `value`'s bytes, and the key's position rank; nil when
    /// the key is absent. No `String` is made.
    package func matchAndSequence(of key: String, value: String) -> (equal: Bool, sequence: UInt64)? {
        guard let record = Self.withBytes(key, { find($0, Self.hash($0))?.record }) else { return nil }
        let equal = Self.withBytes(value) { valueBytes in
            withValueBytes(of: record) { stored in stored.count == valueBytes.count && Self.same(stored, valueBytes) }
        }
        return (equal, UInt64(record))
    }

    /// Every position rank given so far is below this; at most about twice ``count``, as removed
    /// records are compacted away.
    package var sequenceBound: UInt64 { UInt64(records.count) }

    /// Calls `body` with every key and its position rank, in order.
    package func forEachKey(_ body: (MapKey, UInt64) -> Void) {
        for index in records.indices where records[index].owner != Self.removedOwner { body(key(of: index), UInt64(index)) }
    }

    /// Calls `body` with every position rank, in order; `key(atSequence:)` names one.
    package func forEachSequence(_ body: (UInt64) -> Void) {
        for index in records.indices where records[index].owner != Self.removedOwner { body(UInt64(index)) }
    }

    /// The key at a position rank given by ``forEachSequence(_:)``.
    package func key(atSequence sequence: UInt64) -> MapKey { key(of: Int(sequence)) }

    /// Calls `body` with every entry's key and value bytes and owner, in HAProxy's order, making
    /// no `String`s (stores and rebuilds of millions of entries).
    public func forEachEntryBytes(_ body: (UnsafeBufferPointer<UInt8>, UnsafeBufferPointer<UInt8>, Owner) throws -> Void) rethrows {
        try arena.withUnsafeBufferPointer { arena in
            for record in records where record.owner != Self.removedOwner {
                let keyEnd = record.offset + Int(record.keyLength)
                try body(
                    UnsafeBufferPointer(rebasing: arena[record.offset..<keyEnd]),
                    UnsafeBufferPointer(rebasing: arena[keyEnd..<(keyEnd + Int(record.valueLength))]), record.owner)
            }
        }
    }

    /// Every entry, in HAProxy's order (`ordered` is kept for callers: the order costs nothing).
    public func entries(ordered: Bool = true) -> [(key: MapKey, value: String)] {
        var all: [(key: MapKey, value: String)] = []
        all.reserveCapacity(live)
        for index in records.indices where records[index].owner != Self.removedOwner { all.append((key(of: index), value(of: index))) }
        return all
    }

    /// Up to `limit` entries in HAProxy's order, from position rank `start` on, and the rank to go
    /// on from (``sequenceBound`` at the end): a map of millions of entries listed a part at a time.
    public func entries(from start: UInt64, limit: Int) -> (entries: [(key: MapKey, value: String)], next: UInt64) {
        var part: [(key: MapKey, value: String)] = []
        part.reserveCapacity(min(limit, live))
        var index = Int(start)
        while index < records.count && part.count < limit {
            if records[index].owner != Self.removedOwner { part.append((key(of: index), value(of: index))) }
            index += 1
        }
        return (part, UInt64(index))
    }

    /// Every entry with its owner, in HAProxy's order.
    public func ownedEntries(ordered: Bool = true) -> [Entry] {
        var all: [Entry] = []
        all.reserveCapacity(live)
        for index in records.indices where records[index].owner != Self.removedOwner {
            all.append(Entry(key: key(of: index), value: value(of: index), owner: records[index].owner))
        }
        return all
    }

    /// Replaces every entry and tombstone of `owners` with the given ones (another bridge's
    /// stored view of partitions this one has just been given); other entries stay as they are.
    public mutating func replace(owners: Set<Owner>, with entries: [Entry], tombstones removed: [MapKey: Owner]) {
        var dropped: [MapKey] = []
        for index in records.indices where records[index].owner != Self.removedOwner && owners.contains(records[index].owner) {
            dropped.append(key(of: index))
        }
        for key in dropped { removeEntry(key) }
        for (key, owner) in tombstones where owners.contains(owner) { tombstones[key] = nil }
        for entry in entries where owners.contains(entry.owner) {
            removeEntry(entry.key)
            set(entry.key, entry.value, owner: entry.owner)
        }
        for (key, owner) in removed where owners.contains(owner) {
            removeEntry(key)
            tombstones[key] = owner
        }
    }

    // MARK: - Storage

    private enum Probe {
        case found(slot: Int, record: Int)
        case absent(slot: Int)
    }

    private func find(_ key: MapKey) -> (slot: Int, record: Int)? {
        Self.withBytes(key.string) { find($0, Self.hash($0)) }
    }

    private func find(_ key: UnsafeBufferPointer<UInt8>, _ hash: UInt32) -> (slot: Int, record: Int)? {
        guard !table.isEmpty, case .found(let slot, let record) = probe(key, hash) else { return nil }
        return (slot, record)
    }

    /// The slot holding the key, or the empty slot where it would go. The table is never full.
    private func probe(_ key: UnsafeBufferPointer<UInt8>, _ hash: UInt32) -> Probe {
        table.withUnsafeBufferPointer { table in
            records.withUnsafeBufferPointer { records in
                arena.withUnsafeBufferPointer { arena in
                    let mask = table.count - 1
                    var slot = Int(hash) & mask
                    while true {
                        let stored = table[slot]
                        if stored == 0 { return .absent(slot: slot) }
                        let record = records[Int(stored &- 1)]
                        if record.hash == hash, Int(record.keyLength) == key.count,
                            key.isEmpty || memcmpBytes(arena.baseAddress! + record.offset, key.baseAddress!, key.count)
                        {
                            return .found(slot: slot, record: Int(stored &- 1))
                        }
                        slot = (slot &+ 1) & mask
                    }
                }
            }
        }
    }

    private mutating func append(_ key: UnsafeBufferPointer<UInt8>, _ value: String, _ hash: UInt32, _ owner: Owner, slot: Int) {
        let offset = arena.count
        arena.append(contentsOf: key)
        let valueLength = Self.appendUTF8(value, to: &arena)
        records.append(Record(offset: offset, keyLength: UInt32(key.count), valueLength: UInt32(valueLength), hash: hash, owner: owner))
        table[slot] = UInt32(records.count)
        live += 1
    }

    /// Appends an entry from its bytes (a state file read into contents) unless its key is there
    /// (the first wins); returns whether it was appended. The bytes are UTF-8 the bridge wrote.
    @discardableResult
    package mutating func appendIfAbsent(key: UnsafeBufferPointer<UInt8>, value: UnsafeBufferPointer<UInt8>, owner: Owner) -> Bool {
        reserveOneMore()
        let hash = Self.hash(key)
        guard case .absent(let slot) = probe(key, hash) else { return false }
        let offset = arena.count
        arena.append(contentsOf: key)
        arena.append(contentsOf: value)
        records.append(Record(offset: offset, keyLength: UInt32(key.count), valueLength: UInt32(value.count), hash: hash, owner: owner))
        table[slot] = UInt32(records.count)
        live += 1
        return true
    }

    /// Appends the entry unless its key is there; returns whether it was appended.
    private mutating func appendIfAbsent(_ key: String, _ value: String, _ owner: Owner) -> Bool {
        reserveOneMore()
        return Self.withBytes(key) { keyBytes in
            let hash = Self.hash(keyBytes)
            guard case .absent(let slot) = probe(keyBytes, hash) else { return false }
            append(keyBytes, value, hash, owner, slot: slot)
            return true
        }
    }

    /// A new value for a record in place: written over the old one when it fits, else the entry's
    /// bytes move to the arena's end.
    private mutating func replaceValue(of record: Int, key: UnsafeBufferPointer<UInt8>, value: String, owner: Owner) {
        records[record].owner = owner
        Self.withBytes(value) { valueBytes in
            let old = records[record]
            if valueBytes.count <= Int(old.valueLength) {
                let start = old.offset + Int(old.keyLength)
                arena.withUnsafeMutableBufferPointer { arena in
                    if let base = valueBytes.baseAddress { (arena.baseAddress! + start).update(from: base, count: valueBytes.count) }
                }
                garbage += Int(old.valueLength) - valueBytes.count
                records[record].valueLength = UInt32(valueBytes.count)
            } else {
                garbage += Int(old.keyLength) + Int(old.valueLength)
                records[record].offset = arena.count
                arena.append(contentsOf: key)
                arena.append(contentsOf: valueBytes)
                records[record].valueLength = UInt32(valueBytes.count)
            }
        }
        compactIfWasteful()
    }

    /// Removes the key's entry, returning its value.
    @discardableResult
    private mutating func removeEntry(_ key: MapKey) -> String? {
        guard let (slot, record) = find(key) else { return nil }
        let value = value(of: record)
        removeSlot(slot)
        garbage += Int(records[record].keyLength) + Int(records[record].valueLength)
        records[record].owner = Self.removedOwner
        live -= 1
        if record == records.count - 1 {
            // The last record goes at once (a key moved to the end and back), and its bytes too
            // when they are the arena's last ones.
            let last = records.removeLast()
            if last.offset + Int(last.keyLength) + Int(last.valueLength) == arena.count {
                garbage -= Int(last.keyLength) + Int(last.valueLength)
                arena.removeLast(arena.count - last.offset)
            }
        }
        compactIfWasteful()
        return value
    }

    /// Empties a slot, moving later entries of its probe run back into it (no deletion markers).
    private mutating func removeSlot(_ slot: Int) {
        let mask = table.count - 1
        var hole = slot
        var next = (hole + 1) & mask
        while table[next] != 0 {
            let home = Int(records[Int(table[next] - 1)].hash) & mask
            // The entry may fill the hole unless its home lies cyclically in (hole, next].
            let stays = hole < next ? (home > hole && home <= next) : (home > hole || home <= next)
            if !stays {
                table[hole] = table[next]
                hole = next
            }
            next = (next + 1) & mask
        }
        table[hole] = 0
    }

    private mutating func reserveOneMore() {
        if Self.tableSize(for: live + 1) > table.count { rebuildTable(size: Self.tableSize(for: max(live + 1, live * 2))) }
    }

    /// At most 70% full.
    private static func tableSize(for count: Int) -> Int {
        var size = 8
        while size * 7 < count * 10 { size *= 2 }
        return size
    }

    private mutating func rebuildTable(size: Int) {
        var fresh = [UInt32](repeating: 0, count: size)
        let mask = size - 1
        fresh.withUnsafeMutableBufferPointer { fresh in
            records.withUnsafeBufferPointer { records in
                for index in records.indices where records[index].owner != Self.removedOwner {
                    var slot = Int(records[index].hash) & mask
                    while fresh[slot] != 0 { slot = (slot &+ 1) & mask }
                    fresh[slot] = UInt32(index + 1)
                }
            }
        }
        table = fresh
    }

    /// Compacts once removed records, or unused bytes, are as many as live ones (and not few).
    private mutating func compactIfWasteful() {
        let deadRecords = records.count - live
        let liveBytes = arena.count - garbage
        guard deadRecords > max(live, 1024) || garbage > max(liveBytes, 1 << 20) else { return }
        var newArena: [UInt8] = []
        newArena.reserveCapacity(liveBytes)
        var newRecords: [Record] = []
        newRecords.reserveCapacity(live)
        arena.withUnsafeBufferPointer { arena in
            for var record in records where record.owner != Self.removedOwner {
                let end = record.offset + Int(record.keyLength) + Int(record.valueLength)
                let offset = newArena.count
                newArena.append(contentsOf: UnsafeBufferPointer(rebasing: arena[record.offset..<end]))
                record.offset = offset
                newRecords.append(record)
            }
        }
        arena = newArena
        records = newRecords
        garbage = 0
        rebuildTable(size: table.count)
    }

    private func key(of record: Int) -> MapKey {
        let record = records[record]
        return arena.withUnsafeBufferPointer {
            MapKey(String(decoding: UnsafeBufferPointer(rebasing: $0[record.offset..<(record.offset + Int(record.keyLength))]), as: UTF8.self))
        }
    }

    private func value(of record: Int) -> String {
        withValueBytes(of: record) { String(decoding: $0, as: UTF8.self) }
    }

    private func withValueBytes<R>(of record: Int, _ body: (UnsafeBufferPointer<UInt8>) -> R) -> R {
        let record = records[record]
        let start = record.offset + Int(record.keyLength)
        return arena.withUnsafeBufferPointer { body(UnsafeBufferPointer(rebasing: $0[start..<(start + Int(record.valueLength))])) }
    }

    /// Seeded per process (`Hasher`), so keys chosen to collide cannot be planned from outside.
    private static func hash(_ bytes: UnsafeBufferPointer<UInt8>) -> UInt32 {
        var hasher = Hasher()
        hasher.combine(bytes: UnsafeRawBufferPointer(bytes))
        return UInt32(truncatingIfNeeded: hasher.finalize())
    }

    private static func same(_ a: UnsafeBufferPointer<UInt8>, _ b: UnsafeBufferPointer<UInt8>) -> Bool {
        a.count == b.count && (a.isEmpty || memcmpBytes(a.baseAddress!, b.baseAddress!, a.count))
    }

    private static func withBytes<R>(_ string: String, _ body: (UnsafeBufferPointer<UInt8>) -> R) -> R {
        if let result = string.utf8.withContiguousStorageIfAvailable(body) { return result }
        var copy = string
        return copy.withUTF8(body)
    }

    private static func appendUTF8(_ string: String, to out: inout [UInt8]) -> Int {
        withBytes(string) { bytes in
            out.append(contentsOf: bytes)
            return bytes.count
        }
    }
}
