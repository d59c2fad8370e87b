/// The result of comparing a desired map with HAProxy's live one.
public struct MapComparison: Sendable, Equatable {
    /// Desired keys HAProxy lacks.
    public var missing: [MapKey] = []
    /// Keys HAProxy holds that are not desired.
    public var extra: [MapKey] = []
    /// Keys whose live value (the first entry's) differs.
    public var different: [MapKey] = []
    /// Keys HAProxy holds more than once.
    public var duplicated: [MapKey] = []
    /// In a list-matched map, desired keys appear in another relative order.
    public var outOfOrder = false
    public var liveCount = 0

    /// An exact comparison of `liveCount` entries (nothing missing, extra, different, duplicated
    /// or out of order).
    public init(exactOf liveCount: Int = 0) {
        self.liveCount = liveCount
    }

    public var isExact: Bool {
        missing.isEmpty && extra.isEmpty && different.isEmpty && duplicated.isEmpty && !outOfOrder
    }

    /// Compares `desired` with the live entries (in HAProxy's order).
    public static func compare(desired: MapContents, live: some Sequence<(key: String, value: String)>, orderSensitive: Bool) -> MapComparison {
        compare(desired: desired, entries: StringEntries(entries: live), orderSensitive: orderSensitive)
    }

    /// Compares `desired` with the live entries as bytes (a `show map` answer read in place: no
    /// `String` per key or value, which cost more than half of a comparison of millions).
    public static func compare(desired: MapContents, entries live: some LiveEntries, orderSensitive: Bool) -> MapComparison {
        compare(desired: desired, entries: live, orderSensitive: orderSensitive, bitmapLimit: UInt64(desired.count) * 8 + (1 << 20))
    }

    package static func compare(
        desired: MapContents, live: some Sequence<(key: String, value: String)>, orderSensitive: Bool, bitmapLimit: UInt64
    ) -> MapComparison {
        compare(desired: desired, entries: StringEntries(entries: live), orderSensitive: orderSensitive, bitmapLimit: bitmapLimit)
    }

    /// One hash look-up per live entry: desired keys already seen are marked in a bitmap indexed
    /// by their position rank (a Set of millions of keys cost most of a comparison), unless the
    /// ranks exceed `bitmapLimit` (a map that churned a lot since it was built), where a Set does.
    package static func compare(
        desired: MapContents, entries live: some LiveEntries, orderSensitive: Bool, bitmapLimit: UInt64
    ) -> MapComparison {
        var result = MapComparison()
        let useBitmap = desired.sequenceBound <= bitmapLimit
        var bitmap = [UInt64](repeating: 0, count: useBitmap ? Int(desired.sequenceBound / 64) + 1 : 0)
        var seenSet = Set<MapKey>(minimumCapacity: useBitmap ? 0 : desired.count)
        var extras = Set<MapKey>()
        var duplicated = Set<MapKey>()
        var lastSequence: UInt64? = nil
        var present = 0
        live.forEachEntryBytes { keyBytes, value in
            result.liveCount += 1
            guard let (equal, sequence) = desired.matchAndSequence(of: keyBytes, value: value) else {
                let key = MapKey(bytes: keyBytes)
                if extras.insert(key).inserted {
                    result.extra.append(key)
                } else if duplicated.insert(key).inserted {
                    result.duplicated.append(key)
                }
                return
            }
            let first: Bool
            if useBitmap {
                let (word, bit) = (Int(sequence >> 6), UInt64(1) << (sequence & 63))
                first = bitmap[word] & bit == 0
                bitmap[word] |= bit
            } else {
                first = seenSet.insert(MapKey(bytes: keyBytes)).inserted
            }
            guard first else {
                let key = MapKey(bytes: keyBytes)
                if duplicated.insert(key).inserted { result.duplicated.append(key) }
                return
            }
            present += 1
            if !equal { result.different.append(MapKey(bytes: keyBytes)) }
            if orderSensitive {
                if let last = lastSequence, sequence < last { result.outOfOrder = true }
                lastSequence = sequence
            }
        }
        if present < desired.count {
            if useBitmap {
                desired.forEachSequence { sequence in
                    if bitmap[Int(sequence >> 6)] & (UInt64(1) << (sequence & 63)) == 0 { result.missing.append(desired.key(atSequence: sequence)) }
                }
            } else {
                desired.forEachKey { key, _ in
                    if !seenSet.contains(key) { result.missing.append(key) }
                }
            }
        }
        return result
    }

    /// Compares only the keys owned by `owned` sources (when sharing a map with other bridges):
    /// their desired entries and their tombstones. Keys of other owners, and unowned ones, are not
    /// this bridge's to judge. Order is not compared (several writers interleave their adds).
    public static func compare(desired: MapContents, live: some Sequence<(key: String, value: String)>, owned: Set<MapContents.Owner>) -> MapComparison {
        var result = MapComparison()
        var seen = Set<MapKey>(minimumCapacity: desired.count)
        var duplicated = Set<MapKey>()
        var extra = Set<MapKey>()
        for (keyText, value) in live {
            result.liveCount += 1
            let key = MapKey(keyText)
            if let owner = desired.owner(of: key) {
                guard owned.contains(owner) else { continue }
                guard seen.insert(key).inserted else {
                    if duplicated.insert(key).inserted { result.duplicated.append(key) }
                    continue
                }
                if !bytesEqual(desired[key]!, value) { result.different.append(key) }
            } else if let remover = desired.tombstones[key], owned.contains(remover), extra.insert(key).inserted {
                result.extra.append(key)
            }
        }
        for entry in desired.ownedEntries() where owned.contains(entry.owner) && !seen.contains(entry.key) {
            result.missing.append(entry.key)
        }
        return result
    }
}

/// Live entries (a `show map` answer) read as bytes, in HAProxy's order.
public protocol LiveEntries {
    /// Calls `body` with each entry's key and value bytes, valid during the call only.
    func forEachEntryBytes(_ body: (_ key: UnsafeBufferPointer<UInt8>, _ value: UnsafeBufferPointer<UInt8>) -> Void)
}

/// Entries given as strings (tests, small maps), as ``LiveEntries``.
struct StringEntries<Entries: Sequence<(key: String, value: String)>>: LiveEntries {
    let entries: Entries

    func forEachEntryBytes(_ body: (_ key: UnsafeBufferPointer<UInt8>, _ value: UnsafeBufferPointer<UInt8>) -> Void) {
        for (key, value) in entries {
            withUTF8Bytes(key) { key in withUTF8Bytes(value) { body(key, $0) } }
        }
    }
}
