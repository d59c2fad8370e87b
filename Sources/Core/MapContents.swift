import CPrefetch

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
/// order, never sorted), and an open-addressing table of record numbers (each with a few bits of
/// its key's hash, so that a probe rarely reads a record that is not the key's) finds a key. No entry is
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

    /// One entry: its key's bytes at `offset` in arena page `page`, its value's right after them.
    struct Record: Sendable {
        var page: UInt32
        var offset: UInt32
        var keyLength: UInt32
        var valueLength: UInt32
        var hash: UInt32
        var owner: Owner

        var isRemoved: Bool { owner == MapContents.removedOwner }
        var length: Int { Int(keyLength) + Int(valueLength) }
    }

    /// The entries, paged: records in HAProxy's order, ``Pages/recordsPerPage`` a page, and the
    /// arena in pages of ``Pages/arenaPage`` bytes (an entry never straddles two). A copy of the
    /// contents (a store's snapshot, a rebuild's listing) shares every page, and a change made
    /// while it lives copies only the pages it touches, not millions of entries.
    struct Pages: Sendable {
        static let recordShift = 12
        static let recordsPerPage = 1 << recordShift
        static let arenaPage = 1 << 20

        var records: [[Record]] = []
        var arena: [[UInt8]] = []
        var count = 0
        /// The arena's bytes, over every page.
        var bytes = 0
        /// Held by every copy of these pages: while it is not uniquely referenced, a listing
        /// shares them.
        var copies = Copies()

        final class Copies: Sendable {}

        subscript(record: Int) -> Record {
            get { records[record >> Self.recordShift][record & (Self.recordsPerPage - 1)] }
            _modify { yield &records[record >> Self.recordShift][record & (Self.recordsPerPage - 1)] }
        }

        mutating func append(_ record: Record) {
            if count & (Self.recordsPerPage - 1) == 0 {
                var page: [Record] = []
                page.reserveCapacity(Self.recordsPerPage)
                records.append(page)
            }
            records[records.count - 1].append(record)
            count += 1
        }

        mutating func removeLast() -> Record {
            let last = records[records.count - 1].removeLast()
            if records[records.count - 1].isEmpty { records.removeLast() }
            count -= 1
            return last
        }

        /// Stores an entry's bytes; returns where.
        mutating func store(_ key: UnsafeBufferPointer<UInt8>, _ value: UnsafeBufferPointer<UInt8>) -> (page: UInt32, offset: UInt32) {
            let length = key.count + value.count
            if arena.isEmpty || arena[arena.count - 1].count + length > Self.arenaPage {
                var page: [UInt8] = []
                page.reserveCapacity(max(Self.arenaPage, length))
                arena.append(page)
            }
            let page = arena.count - 1
            let offset = arena[page].count
            arena[page].append(contentsOf: key)
            arena[page].append(contentsOf: value)
            bytes += length
            return (UInt32(page), UInt32(offset))
        }

        /// Gives back a record's bytes when they are the arena's last ones; returns whether it did.
        mutating func releaseIfLast(_ record: Record) -> Bool {
            guard Int(record.page) == arena.count - 1, Int(record.offset) + record.length == arena[arena.count - 1].count else { return false }
            arena[arena.count - 1].removeLast(record.length)
            if arena[arena.count - 1].isEmpty { arena.removeLast() }
            bytes -= record.length
            return true
        }

        func withBytes<R>(of record: Record, _ body: (_ key: UnsafeBufferPointer<UInt8>, _ value: UnsafeBufferPointer<UInt8>) throws -> R) rethrows -> R {
            try arena[Int(record.page)].withUnsafeBufferPointer { page in
                let start = Int(record.offset)
                let keyEnd = start + Int(record.keyLength)
                return try body(
                    UnsafeBufferPointer(rebasing: page[start..<keyEnd]), UnsafeBufferPointer(rebasing: page[keyEnd..<(keyEnd + Int(record.valueLength))]))
            }
        }

        /// Calls `body` with every record's number and the record, in order, removed ones too.
        func forEachRecord(from start: Int = 0, _ body: (Int, Record) throws -> Bool) rethrows {
            var index = start
            while index < count {
                let page = records[index >> Self.recordShift]
                for slot in (index & (Self.recordsPerPage - 1))..<page.count {
                    guard try body(index, page[slot]) else { return }
                    index += 1
                }
            }
        }
    }

    /// The entries as they are now, to list while the contents go on changing (a store writing
    /// them, a rebuild sending them): it shares the contents' pages, without their look-up table.
    public struct Listing: Sendable {
        let pages: Pages
        public let count: Int

        /// Every position rank is below this.
        public var sequenceBound: UInt64 { UInt64(pages.count) }

        /// Calls `body` with every entry's key and value bytes and owner, in HAProxy's order,
        /// making no `String`s (stores and rebuilds of millions of entries).
        public func forEachEntryBytes(_ body: (UnsafeBufferPointer<UInt8>, UnsafeBufferPointer<UInt8>, Owner) throws -> Void) rethrows {
            try pages.forEachRecord { _, record in
                if !record.isRemoved { try pages.withBytes(of: record) { try body($0, $1, record.owner) } }
                return true
            }
        }

        /// Up to `limit` entries in HAProxy's order, from position rank `start` on, and the rank
        /// to go on from (``sequenceBound`` at the end): millions of entries listed a part at a time.
        public func entries(from start: UInt64, limit: Int) -> (entries: [(key: MapKey, value: String)], next: UInt64) {
            var part: [(key: MapKey, value: String)] = []
            part.reserveCapacity(min(limit, count))
            var next = Int(start)
            pages.forEachRecord(from: Int(start)) { index, record in
                guard part.count < limit else { return false }
                next = index + 1
                if !record.isRemoved { part.append(pages.withBytes(of: record) { (MapKey(text($0), hashCode: record.hash), text($1)) }) }
                return true
            }
            return (part, UInt64(next))
        }

        /// Every entry with its owner, in HAProxy's order.
        public func ownedEntries() -> [Entry] {
            var all: [Entry] = []
            all.reserveCapacity(count)
            forEachEntryBytes { key, value, owner in all.append(Entry(key: MapKey(text(key)), value: text(value), owner: owner)) }
            return all
        }
    }

    private var pages = Pages()
    /// Linear probing, a power of two long: 0 for an empty slot, else a record's number plus one
    /// in the low ``indexBits`` bits and the same high bits as its key's hash above them (a tag:
    /// a probe that passes a slot of another key reads that key's record, a cache miss in a large
    /// map, only when the tags agree; without tags, adding each of 5,000,000 keys read 2-3 other
    /// records).
    private var table: [UInt32] = []

    /// Asks the CPU to fetch the table slot where `key`'s probe starts, ahead of the look-up: on
    /// a table of millions of slots the look-up otherwise waits for memory.
    func prefetch(_ key: MapKey) {
        table.withUnsafeBufferPointer { table in
            guard let base = table.baseAddress, !table.isEmpty else { return }
            mapbridge_prefetch(base + (Int(key.hashCode) & (table.count - 1)))
        }
    }

    /// How many low bits of a slot hold the record's number; at least one more than the table's
    /// size needs, since removed records keep their numbers until the next compaction.
    private var indexBits = 32
    private var tagMask: UInt32 { indexBits >= 32 ? 0 : ~((1 << UInt32(indexBits)) &- 1) }
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
        adopting(entries: StringEntries(entries: entries), owner: owner, capacity: capacity ?? entries.underestimatedCount)
    }

    /// Contents holding the live entries, in order (the first of a key listed twice wins, as in
    /// HAProxy's look-ups), read as bytes: no `String` per key or value.
    public static func adopting(
        entries: some LiveEntries, owner: Owner = unowned, capacity: Int
    ) -> (contents: MapContents, liveCount: Int, duplicated: Bool) {
        var contents = MapContents()
        contents.reserve(capacity)
        var count = 0
        var duplicated = false
        entries.forEachEntryBytes { key, value in
            count += 1
            if !contents.appendIfAbsent(key: key, value: value, owner: owner) { duplicated = true }
        }
        return (contents, count, duplicated)
    }

    /// Builds contents from owned entries in order (a state file).
    public init(owned entries: some Sequence<Entry>) {
        reserve(entries.underestimatedCount)
        for entry in entries {
            withUTF8Bytes(entry.key.string) { key in withUTF8Bytes(entry.value) { _ = appendIfAbsent(key: key, value: $0, owner: entry.owner) } }
        }
    }

    /// Makes room for `count` entries at once (growing toward millions of entries re-places every
    /// entry at each doubling).
    public mutating func reserve(_ count: Int) {
        guard count > 0, Self.tableSize(for: count) > table.count else { return }
        rebuildTable(size: Self.tableSize(for: count))
    }

    public var count: Int { live }
    public var isEmpty: Bool { live == 0 }

    /// The entries as they are now, listed while the contents go on changing.
    public var listing: Listing { Listing(pages: pages, count: live) }

    /// How many arena pages the contents still share with `listing` (for tests of copying).
    package func sharedArenaPages(with listing: Listing) -> Int {
        zip(pages.arena, listing.pages.arena).filter { mine, theirs in
            mine.withUnsafeBufferPointer { a in theirs.withUnsafeBufferPointer { b in a.baseAddress == b.baseAddress } }
        }.count
    }

    public subscript(key: MapKey) -> String? {
        guard let record = find(key)?.record else { return nil }
        return pages.withBytes(of: pages[record]) { text($1) }
    }

    public func contains(_ key: MapKey) -> Bool { find(key) != nil }

    /// The key's value and owner, in one look-up.
    public func valueAndOwner(of key: MapKey) -> (value: String?, owner: Owner?) {
        guard let record = find(key)?.record else { return (nil, nil) }
        let found = pages[record]
        return (pages.withBytes(of: found) { text($1) }, found.owner)
    }

    /// Who owns the key's entry, when there is one.
    public func owner(of key: MapKey) -> Owner? {
        find(key).map { pages[$0.record].owner }
    }

    /// Sets the value, keeping the key's position, or appends the key when it is new.
    public mutating func set(_ key: MapKey, _ value: String, owner: Owner = unowned) {
        if !tombstones.isEmpty { tombstones[key] = nil }
        reserveOneMore()
        withUTF8Bytes(key.string) { keyBytes in
            withUTF8Bytes(value) { valueBytes in
                let hash = key.hashCode
                switch probe(keyBytes, hash) {
                case .found(_, let record): replaceValue(of: record, key: keyBytes, value: valueBytes, owner: owner)
                case .absent(let slot): append(keyBytes, valueBytes, hash, owner, slot: slot)
                }
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
    package func matchAndSequence(of key: UnsafeBufferPointer<UInt8>, value: UnsafeBufferPointer<UInt8>) -> (equal: Bool, sequence: UInt64)? {
        guard let record = find(key, MapKey.hashCode(of: key))?.record else { return nil }
        let equal = pages.withBytes(of: pages[record]) { sameBytes($1, value) }
        return (equal, UInt64(record))
    }

    /// Every position rank given so far is below this; at most about twice ``count``, as removed
    /// records are compacted away.
    package var sequenceBound: UInt64 { UInt64(pages.count) }

    /// Calls `body` with every key and its position rank, in order.
    package func forEachKey(_ body: (MapKey, UInt64) -> Void) {
        pages.forEachRecord { index, record in
            if !record.isRemoved { body(pages.withBytes(of: record) { key, _ in MapKey(text(key), hashCode: record.hash) }, UInt64(index)) }
            return true
        }
    }

    /// Calls `body` with every position rank, in order; `key(atSequence:)` names one.
    package func forEachSequence(_ body: (UInt64) -> Void) {
        pages.forEachRecord { index, record in
            if !record.isRemoved { body(UInt64(index)) }
            return true
        }
    }

    /// The key at a position rank given by ``forEachSequence(_:)``.
    package func key(atSequence sequence: UInt64) -> MapKey {
        let record = pages[Int(sequence)]
        return pages.withBytes(of: record) { key, _ in MapKey(text(key), hashCode: record.hash) }
    }

    /// Every entry, in HAProxy's order (the records' order: no sort).
    public func entries() -> [(key: MapKey, value: String)] {
        listing.entries(from: 0, limit: .max).entries
    }

    /// Every entry with its owner, in HAProxy's order.
    public func ownedEntries() -> [Entry] { listing.ownedEntries() }

    /// Replaces every entry and tombstone of `owners` with the given ones (another bridge's
    /// stored view of partitions this one has just been given); other entries stay as they are.
    public mutating func replace(owners: Set<Owner>, with entries: [Entry], tombstones removed: [MapKey: Owner]) {
        var dropped: [MapKey] = []
        pages.forEachRecord { _, record in
            if !record.isRemoved && owners.contains(record.owner) {
                dropped.append(pages.withBytes(of: record) { key, _ in MapKey(text(key), hashCode: record.hash) })
            }
            return true
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

    /// Appends an entry from its bytes (a state file read into contents) unless its key is there
    /// (the first wins); returns whether it was appended. The bytes are UTF-8 the bridge wrote.
    @discardableResult
    package mutating func appendIfAbsent(key: UnsafeBufferPointer<UInt8>, value: UnsafeBufferPointer<UInt8>, owner: Owner) -> Bool {
        reserveOneMore()
        let hash = MapKey.hashCode(of: key)
        guard case .absent(let slot) = probe(key, hash) else { return false }
        append(key, value, hash, owner, slot: slot)
        return true
    }

    // MARK: - Storage

    private enum Probe {
        case found(slot: Int, record: Int)
        case absent(slot: Int)
    }

    private func find(_ key: MapKey) -> (slot: Int, record: Int)? {
        withUTF8Bytes(key.string) { find($0, key.hashCode) }
    }

    private func find(_ key: UnsafeBufferPointer<UInt8>, _ hash: UInt32) -> (slot: Int, record: Int)? {
        guard !table.isEmpty, case .found(let slot, let record) = probe(key, hash) else { return nil }
        return (slot, record)
    }

    /// The slot holding the key, or the empty slot where it would go. The table is never full.
    private func probe(_ key: UnsafeBufferPointer<UInt8>, _ hash: UInt32) -> Probe {
        let tagMask = tagMask
        let tag = hash & tagMask
        return table.withUnsafeBufferPointer { table in
            let mask = table.count - 1
            var slot = Int(hash) & mask
            while true {
                let stored = table[slot]
                if stored == 0 { return .absent(slot: slot) }
                if stored & tagMask == tag {
                    let number = Int(stored & ~tagMask) &- 1
                    let record = pages[number]
                    if record.hash == hash, Int(record.keyLength) == key.count, pages.withBytes(of: record, { held, _ in sameBytes(held, key) }) {
                        return .found(slot: slot, record: number)
                    }
                }
                slot = (slot &+ 1) & mask
            }
        }
    }

    private mutating func append(_ key: UnsafeBufferPointer<UInt8>, _ value: UnsafeBufferPointer<UInt8>, _ hash: UInt32, _ owner: Owner, slot: Int) {
        let (page, offset) = pages.store(key, value)
        pages.append(Record(page: page, offset: offset, keyLength: UInt32(key.count), valueLength: UInt32(value.count), hash: hash, owner: owner))
        live += 1
        guard UInt32(pages.count) & tagMask == 0 else {
            // The record's number outgrew the bits below the tag: the table is laid out again,
            // with this record in it.
            rebuildTable(size: table.count)
            return
        }
        table[slot] = (hash & tagMask) | UInt32(pages.count)
    }

    /// A new value for a record in place: written over the old one when it fits and no listing
    /// shares the arena, else the entry's bytes move to the arena's end. (Written over while a
    /// store's listing shares the pages, changes to random keys of a large map copied nearly
    /// every 1 MiB page of it, as much again as the whole arena, for the length of the store.)
    private mutating func replaceValue(of record: Int, key: UnsafeBufferPointer<UInt8>, value: UnsafeBufferPointer<UInt8>, owner: Owner) {
        let old = pages[record]
        pages[record].owner = owner
        if value.count <= Int(old.valueLength) && isKnownUniquelyReferenced(&pages.copies) {
            if !value.isEmpty {
                pages.arena[Int(old.page)].withUnsafeMutableBufferPointer { page in
                    (page.baseAddress! + Int(old.offset) + Int(old.keyLength)).update(from: value.baseAddress!, count: value.count)
                }
            }
            garbage += Int(old.valueLength) - value.count
            pages[record].valueLength = UInt32(value.count)
        } else {
            garbage += old.length
            let (page, offset) = pages.store(key, value)
            pages[record].page = page
            pages[record].offset = offset
            pages[record].valueLength = UInt32(value.count)
        }
        compactIfWasteful()
    }

    /// Removes the key's entry, returning its value.
    @discardableResult
    private mutating func removeEntry(_ key: MapKey) -> String? {
        guard let (slot, record) = find(key) else { return nil }
        let value = pages.withBytes(of: pages[record]) { text($1) }
        removeSlot(slot)
        garbage += pages[record].length
        pages[record].owner = Self.removedOwner
        live -= 1
        if record == pages.count - 1 {
            // The last record goes at once (a key moved to the end and back), and its bytes too
            // when they are the arena's last ones.
            let last = pages.removeLast()
            if pages.releaseIfLast(last) { garbage -= last.length }
        }
        compactIfWasteful()
        return value
    }

    /// Empties a slot, moving later entries of its probe run back into it (no deletion markers).
    private mutating func removeSlot(_ slot: Int) {
        let mask = table.count - 1
        var hole = slot
        var next = (hole + 1) & mask
        let numberMask = ~tagMask
        while table[next] != 0 {
            let home = Int(pages[Int(table[next] & numberMask) - 1].hash) & mask
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
        // Room for twice the table's size in record numbers (removed records keep theirs until a
        // compaction, which comes once they are as many as the live ones), or more when there
        // are already more.
        let numbers = max(pages.count + 1, size * 2)
        indexBits = min(32, Int.bitWidth - numbers.leadingZeroBitCount)
        let tagMask = tagMask
        fresh.withUnsafeMutableBufferPointer { fresh in
            pages.forEachRecord { index, record in
                guard !record.isRemoved else { return true }
                var slot = Int(record.hash) & mask
                while fresh[slot] != 0 { slot = (slot &+ 1) & mask }
                fresh[slot] = (record.hash & tagMask) | UInt32(index + 1)
                return true
            }
        }
        table = fresh
    }

    /// Compacts once removed records, or unused bytes, are as many as live ones (and not few).
    private mutating func compactIfWasteful() {
        let deadRecords = pages.count - live
        let liveBytes = pages.bytes - garbage
        guard deadRecords > max(live, 1024) || garbage > max(liveBytes, 1 << 20) else { return }
        var compacted = Pages()
        pages.forEachRecord { _, record in
            guard !record.isRemoved else { return true }
            var moved = record
            (moved.page, moved.offset) = pages.withBytes(of: record) { compacted.store($0, $1) }
            compacted.append(moved)
            return true
        }
        pages = compacted
        garbage = 0
        rebuildTable(size: table.count)
    }
}

/// The text of bytes the bridge stored (valid UTF-8: they came from strings).
private func text(_ bytes: UnsafeBufferPointer<UInt8>) -> String { String(decoding: bytes, as: UTF8.self) }
