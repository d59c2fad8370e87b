/// How changes of one (map, key) compact, wherever they meet: in the backlog while HAProxy is
/// busy, and in the batch that goes to HAProxy. One rule, so that both keep what the events mean:
/// the last value wins, and a set after a delete re-enters the key (in a list-matched map it then
/// moves to the end, as the events applied one by one would leave it).
public enum Compaction {
    /// What becomes of a key's pending change when another change of the key follows.
    public enum Merge: Sendable, Equatable {
        /// The new change takes the pending one's place (its value, its deciding event).
        case replace
        /// A set after a delete: the key re-enters after every key pending now.
        case reenter
        /// From another source (partition): both are kept, so that giving up either source
        /// does not take the other's changes with it.
        case separate
    }

    /// The rule. `pendingIsDelete`/`incomingIsSet` describe the two changes; `sameSource` whether
    /// they come from one partition (always true once a batch is final).
    @inlinable
    public static func merge(pendingIsDelete: Bool, incomingIsSet: Bool, sameSource: Bool) -> Merge {
        guard sameSource else { return .separate }
        return pendingIsDelete && incomingIsSet ? .reenter : .replace
    }
}

/// Where a key's pending change sits in a list of changes, or why it has none there.
public struct ChangePosition: Sendable, Equatable {
    @usableFromInline let raw: Int

    @inlinable public init(_ index: Int) { raw = index }
    @inlinable init(raw: Int) { self.raw = raw }

    /// The key has no pending change.
    public static let absent = ChangePosition(raw: -2)
    /// Changes of the key came from several sources: each is kept as it came.
    public static let mixed = ChangePosition(raw: -1)

    /// The index of the pending change, when there is one.
    @inlinable public var index: Int? { raw >= 0 ? raw : nil }
}

/// Where each (map, key) of a list of changes has its pending change, so that the changes that
/// follow compact into it (the backlog's newest chunk).
public struct CompactionIndex: Sendable {
    /// Per map, per key.
    public var positions: [KeyTable<ChangePosition>] = []
    /// How many keys each map held before the last reset: the next fill reserves as many.
    @usableFromInline var sizes: [Int] = []

    public init() {}

    public mutating func reset() {
        sizes = positions.map(\.count)
        positions = []
    }

    @inlinable
    public mutating func prepare(map: Int) {
        while positions.count <= map {
            var fresh = KeyTable<ChangePosition>()
            if positions.count < sizes.count { fresh.reserveCapacity(sizes[positions.count]) }
            positions.append(fresh)
        }
    }
}

/// Reduces a batch's changes to one per (map, key), by ``Compaction``'s rule, keeping the order the
/// events give the keys: new keys in the order they entered, and a key deleted then set again
/// marked to move to the end.
public enum Coalescer {
    /// `changes[i].map` indexes `mapCount` maps; each result change's tag is the index in `changes`
    /// of the change that decided it, and its owner that change's message's (`owners[message]`).
    public static func coalesce(_ changes: [PendingChange], mapCount: Int, owners: [MapContents.Owner] = []) -> [[KeyChange]] {
        var positions = [KeyTable<Int>](repeating: KeyTable(), count: mapCount)
        var output = [[KeyChange?]](repeating: [], count: mapCount)
        if mapCount == 1 {
            // The common case: size both once rather than growing them change by change.
            positions[0].reserveCapacity(changes.count)
            output[0].reserveCapacity(changes.count)
        }
        for (index, change) in changes.enumerated() {
            let map = change.map
            let owner = change.message < owners.count ? owners[change.message] : MapContents.unowned
            // One probe per change: a new key's position goes in with it.
            let slot = positions[map].insert(change.key) { output[map].count }
            let at = positions[map][entry: slot.entry]
            guard !slot.inserted, var existing = output[map][at] else {
                positions[map][entry: slot.entry] = output[map].count
                output[map].append(KeyChange(key: change.key, value: change.value, deletedFirst: false, tag: index, owner: owner))
                continue
            }
            switch Compaction.merge(pendingIsDelete: existing.value == nil, incomingIsSet: change.value != nil, sameSource: true) {
            case .reenter:
                output[map][at] = nil
                positions[map][entry: slot.entry] = output[map].count
                output[map].append(KeyChange(key: change.key, value: change.value, deletedFirst: true, tag: index, owner: owner))
            case .replace, .separate:
                existing.value = change.value
                existing.tag = index
                existing.owner = owner
                output[map][at] = existing
            }
        }
        return output.map { $0.compactMap { $0 } }
    }

    /// What ``coalesce(_:mapCount:owners:)`` returns for changes of which no two share a (map, key)
    /// (a chunk the backlog compacted as it arrived): the changes in their order, without hashing
    /// a key. The caller vouches for the distinctness (``Batch``'s `keysDistinct`); given changes
    /// that repeat a key it would return them repeated.
    public static func distinct(_ changes: [PendingChange], mapCount: Int, owners: [MapContents.Owner] = []) -> [[KeyChange]] {
        var output = [[KeyChange]](repeating: [], count: mapCount)
        if mapCount == 1 { output[0].reserveCapacity(changes.count) }
        for (index, change) in changes.enumerated() {
            let owner = change.message < owners.count ? owners[change.message] : MapContents.unowned
            output[change.map].append(KeyChange(key: change.key, value: change.value, deletedFirst: false, tag: index, owner: owner))
        }
        return output
    }
}
