import Mapper

/// Reduces a batch's changes to one per (map, key), the last in offset order, keeping what order
/// the events give the keys: new keys in the order they entered, and a key deleted then set again
/// marked to move to the end (as HAProxy's list-matched maps would have it, event by event).
enum Coalescer {
    /// `changes[i].map` indexes `mapCount` maps; each result change's tag is the index in `changes`
    /// of the change that decided it, and its owner that change's message's (`owners[message]`).
    static func coalesce(_ changes: [PendingChange], mapCount: Int, owners: [MapContents.Owner] = []) -> [[KeyChange]] {
        var positions = [[MapKey: Int]](repeating: [:], count: mapCount)
        var output = [[KeyChange?]](repeating: [], count: mapCount)
        if mapCount == 1 {
            // The common case: size both once rather than growing them change by change.
            positions[0].reserveCapacity(changes.count)
            output[0].reserveCapacity(changes.count)
        }
        for (index, change) in changes.enumerated() {
            let map = change.map
            let owner = change.message < owners.count ? owners[change.message] : MapContents.unowned
            if let at = positions[map][change.key], var existing = output[map][at] {
                if change.value != nil && existing.value == nil {
                    // Set again after a delete in this batch: the key re-enters at the end.
                    output[map][at] = nil
                    positions[map][change.key] = output[map].count
                    output[map].append(KeyChange(key: change.key, value: change.value, deletedFirst: true, tag: index, owner: owner))
                } else {
                    existing.value = change.value
                    existing.tag = index
                    existing.owner = owner
                    output[map][at] = existing
                }
            } else {
                positions[map][change.key] = output[map].count
                output[map].append(KeyChange(key: change.key, value: change.value, deletedFirst: false, tag: index, owner: owner))
            }
        }
        return output.map { $0.compactMap { $0 } }
    }
}
