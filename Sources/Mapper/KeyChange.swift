/// The net effect of a batch's events on one key of one map.
public struct KeyChange: Sendable, Equatable {
    public var key: MapKey
    /// The value to hold, or nil to remove every entry of the key.
    public var value: String?
    /// The batch deleted the key before its final set: in a list-matched map the key then moves to
    /// the end, exactly as the events applied one by one would leave it.
    public var deletedFirst: Bool
    /// The caller's reference for the event that decided this change (to report a rejection).
    public var tag: Int
    /// The source that owns the key from now on (the partition of the event).
    public var owner: MapContents.Owner

    public init(key: MapKey, value: String?, deletedFirst: Bool = false, tag: Int = 0, owner: MapContents.Owner = MapContents.unowned) {
        self.key = key
        self.value = value
        self.deletedFirst = deletedFirst
        self.tag = tag
        self.owner = owner
    }
}

/// A change HAProxy refused (for example a value a `_int` map cannot parse), with its answer.
public struct Rejection: Sendable, Equatable {
    public var map: Int
    public var key: MapKey
    /// The ``KeyChange/tag`` of the refused change, or nil for an entry already in the desired state.
    public var tag: Int?
    public var reason: String
}

/// How a map's batch was applied.
public enum ApplyStrategy: String, Sendable {
    case none, incremental, rebuild
}

/// What applying a batch did.
public struct ApplyReport: Sendable {
    public var rejections: [Rejection] = []
    /// Runtime-API commands sent (a payload chunk counts as one).
    public var commands = 0
    /// Entries written to HAProxy (set, add, del, and every entry of a rebuild).
    public var entriesWritten = 0
    public var strategies: [ApplyStrategy]
    /// Maps whose view had to be re-read from HAProxy while applying.
    public var resyncs = 0
    /// Time spent working out the commands (the bridge's own work) and sending them (until
    /// HAProxy acknowledged the last), in nanoseconds.
    public var planNanoseconds: Int64 = 0
    public var sendNanoseconds: Int64 = 0

    init(mapCount: Int) {
        strategies = Array(repeating: .none, count: mapCount)
    }
}

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

    public var isExact: Bool {
        missing.isEmpty && extra.isEmpty && different.isEmpty && duplicated.isEmpty && !outOfOrder
    }

    /// Compares `desired` with the live entries (in HAProxy's order).
    public static func compare(desired: MapContents, live: some Sequence<(key: String, value: String)>, orderSensitive: Bool) -> MapComparison {
        var result = MapComparison()
        var seen = Set<MapKey>(minimumCapacity: desired.count)
        var duplicated = Set<MapKey>()
        var lastSequence: UInt64? = nil
        var present = 0
        for (keyText, value) in live {
            result.liveCount += 1
            let key = MapKey(keyText)
            guard seen.insert(key).inserted else {
                if duplicated.insert(key).inserted { result.duplicated.append(key) }
                continue
            }
            guard let wanted = desired[key] else {
                result.extra.append(key)
                continue
            }
            present += 1
            if !bytesEqual(wanted, value) { result.different.append(key) }
            if orderSensitive, let sequence = desired.sequence(of: key) {
                if let last = lastSequence, sequence < last { result.outOfOrder = true }
                lastSequence = sequence
            }
        }
        if present < desired.count {
            for (key, _) in desired.entries(ordered: false) where !seen.contains(key) {
                result.missing.append(key)
            }
        }
        return result
    }

    /// Compares only the keys owned by `owned` sources (when sharing a map with other bridges):
    /// their desired entries and their tombstones. Keys of other owners, and unowned ones, are not
    /// this bridge's to judge. Order is not compared (several writers interleave their adds).
    public static func compare(desired: MapContents, live: some Sequence<(key: String, value: String)>, owned: Set<MapContents.Owner>) -> MapComparison {
        var result = MapComparison()
        var seen = Set<MapKey>()
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
        for entry in desired.ownedEntries(ordered: false) where owned.contains(entry.owner) && !seen.contains(entry.key) {
            result.missing.append(entry.key)
        }
        return result
    }
}
