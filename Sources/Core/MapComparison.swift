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
        for entry in desired.ownedEntries(ordered: false) where owned.contains(entry.owner) && !seen.contains(entry.key) {
            result.missing.append(entry.key)
        }
        return result
    }
}
