/// One managed map as the bridge knows it: its desired contents, whether HAProxy is known to hold
/// exactly them, and, for the keys a batch in flight changed, what they held before (to put back a
/// change HAProxy refuses).
///
/// Guarantees: after ``plan(_:orderSensitive:exclusive:)`` the contents are the batch's outcome and
/// the plan's commands take HAProxy from the contents before to the contents after; after
/// ``refuse(_:)`` a refused key holds its value before the first unacknowledged batch that changed
/// it (or is gone when it had none); after ``settle()`` nothing is uncertain.
public struct DesiredMap: Sendable {
    /// What a key held before the first unacknowledged batch that changed it.
    public struct Uncertain: Sendable, Equatable {
        public var before: String?
        public var beforeOwner: MapContents.Owner?
        /// The ``KeyChange/tag`` of the latest change of the key.
        public var tag: Int
    }

    public var contents: MapContents
    /// On the first comparison with HAProxy, take its live contents as the desired ones.
    public var adoptLive: Bool
    /// HAProxy is known to hold exactly ``contents``.
    public var inSync = false
    public private(set) var uncertain = KeyTable<Uncertain>()

    /// - Parameter initial: the desired contents, or nil to adopt HAProxy's live ones.
    public init(initial: MapContents?) {
        contents = initial ?? MapContents()
        adoptLive = initial == nil
    }

    /// How many changes ahead ``plan(_:orderSensitive:exclusive:)`` fetches a key's table slot.
    static let prefetchDistance = 8

    /// Takes the changes (at most one per key, new keys in the order they should be appended) into
    /// the desired contents and returns the commands that bring HAProxy from the contents before
    /// to the contents after. Until ``settle()`` the values before are kept.
    ///
    /// - Parameters:
    ///   - orderSensitive: the map is list-matched: a key deleted then set again moves to the end.
    ///   - exclusive: this bridge is the map's only writer. When it is not, a delete of a key it
    ///     believes absent is still sent (another writer may have added it).
    public mutating func plan(_ changes: [KeyChange], orderSensitive: Bool, exclusive: Bool) -> MapPlan {
        var plan = MapPlan()
        plan.sendable = inSync
        plan.sizeBefore = contents.count
        // Taken out (not copied): a copy-on-write of a map of a million entries on every batch
        // costs more than applying the batch.
        var target = MapContents()
        swap(&target, &contents)
        var uncertain = KeyTable<Uncertain>()
        swap(&uncertain, &self.uncertain)
        uncertain.reserveCapacity(uncertain.count + changes.count)
        for (offset, change) in changes.enumerated() {
            // The slot of a key a few changes ahead is fetched while this one is worked on.
            if offset + Self.prefetchDistance < changes.count { target.prefetch(changes[offset + Self.prefetchDistance].key) }
            let (before, beforeOwner) = target.valueAndOwner(of: change.key)
            if let value = change.value {
                if let before {
                    if change.deletedFirst && orderSensitive {
                        plan.updates.append(.init(change: offset, key: change.key, value: nil, tag: change.tag))
                        plan.adds.append(.init(change: offset, key: change.key, value: value))
                        target.moveToEnd(change.key, value, owner: change.owner)
                    } else if !bytesEqual(before, value) {
                        plan.updates.append(.init(change: offset, key: change.key, value: value, tag: change.tag))
                        target.set(change.key, value, owner: change.owner)
                    } else {
                        // Same value: nothing to send, but the key now belongs to this source.
                        target.set(change.key, value, owner: change.owner)
                        continue
                    }
                } else {
                    plan.adds.append(.init(change: offset, key: change.key, value: value))
                    target.insertNew(change.key, value, owner: change.owner)
                }
            } else if before != nil || !exclusive {
                plan.updates.append(.init(change: offset, key: change.key, value: nil, tag: change.tag))
                target.remove(change.key, owner: change.owner)
            } else {
                target.remove(change.key, owner: change.owner)
                continue
            }
            // Keep the oldest value before: an earlier interrupted batch may already have changed
            // the key. One hash: the default is stored only when the key is not there yet.
            uncertain[change.key, default: Uncertain(before: before, beforeOwner: beforeOwner, tag: change.tag)].tag = change.tag
        }
        contents = target
        self.uncertain = uncertain
        if !plan.isEmpty { inSync = false }
        return plan
    }

    /// The tag of the change in flight that last changed `key`, if any.
    public func tag(of key: MapKey) -> Int? { uncertain[key]?.tag }

    /// HAProxy refused `key`'s change: it goes back to its value before the batch, or leaves the
    /// desired contents when it had none (an entry HAProxy refuses cannot be held). Returns the
    /// value HAProxy must be given again, when the refused command was an add that followed a
    /// delete of the key (a list-matched key moving to the end): that entry is now missing from
    /// HAProxy, and the restored entry sits at the end of the desired order, where its add puts it.
    @discardableResult
    public mutating func refuse(_ key: MapKey, wasAdd: Bool = false) -> String? {
        guard let known = uncertain[key], let value = known.before else {
            contents.remove(key)
            return nil
        }
        let owner = known.beforeOwner ?? MapContents.unowned
        if wasAdd {
            contents.moveToEnd(key, value, owner: owner)
            return value
        }
        contents.set(key, value, owner: owner)
        return nil
    }

    /// HAProxy acknowledged everything sent (or the map was compared and repaired): nothing is
    /// uncertain any more, and HAProxy holds the desired contents.
    public mutating func settle() {
        uncertain = KeyTable()
        inSync = true
    }

    /// Forgets what a batch in flight changed without judging it (the map will be compared).
    public mutating func forgetUncertain() {
        uncertain = KeyTable()
    }
}

/// A map's part of a batch, planned against its desired contents.
public struct MapPlan: Sendable {
    /// A `set` (a value) or `del` (nil) command.
    public struct Update: Sendable, Equatable {
        /// The change's index in the map's part of the batch.
        public var change: Int
        public var key: MapKey
        public var value: String?
        public var tag: Int

        public init(change: Int, key: MapKey, value: String?, tag: Int) {
            self.change = change
            self.key = key
            self.value = value
            self.tag = tag
        }
    }

    /// A payload `add` of a key HAProxy does not hold.
    public struct Add: Sendable, Equatable {
        public var change: Int
        public var key: MapKey
        public var value: String

        public init(change: Int, key: MapKey, value: String) {
            self.change = change
            self.key = key
            self.value = value
        }
    }

    /// Commands are encoded only when sent: a batch that rebuilds the map sends none of them.
    public var updates: [Update] = []
    public var adds: [Add] = []
    /// The map was in sync before the batch, so the plan reflects what HAProxy holds.
    public var sendable = false
    /// The map's entries before the batch.
    public var sizeBefore = 0
    public var isEmpty: Bool { updates.isEmpty && adds.isEmpty }

    public init() {}
}

/// How a planned batch goes to HAProxy: incrementally (set/del, payload adds) or as an atomic
/// rebuild (prepare, payload of every entry, commit).
public struct StrategyChoice: Sendable, Equatable {
    /// Maps smaller than this are always changed incrementally (a rebuild has fixed costs).
    public var minimumRebuildSize = 512
    /// Forces one strategy for every batch instead of choosing by cost.
    public var override: ApplyStrategy? = nil

    public init(minimumRebuildSize: Int = 512, override: ApplyStrategy? = nil) {
        self.minimumRebuildSize = minimumRebuildSize
        self.override = override
    }

    /// The strategy for `plan`, leaving the map with `sizeAfter` entries. Only HAProxy's only
    /// writer may rebuild: another writer's changes would be lost at the commit.
    public func choose(_ plan: MapPlan, sizeAfter: Int, costs: ApplyCostModel, exclusive: Bool) -> ApplyStrategy {
        switch override {
        case .rebuild?: return .rebuild
        case .incremental?: return .incremental
        case .none?, nil: break
        }
        guard exclusive, plan.sizeBefore >= minimumRebuildSize else { return .incremental }
        let incremental = costs.incremental(updates: plan.updates.count, adds: plan.adds.count, mapSize: plan.sizeBefore)
        return costs.rebuild(entries: sizeAfter) < incremental ? .rebuild : .incremental
    }
}
