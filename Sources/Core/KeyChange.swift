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

    public init(map: Int, key: MapKey, tag: Int?, reason: String) {
        self.map = map
        self.key = key
        self.tag = tag
        self.reason = reason
    }
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

    public init(mapCount: Int) {
        strategies = Array(repeating: .none, count: mapCount)
    }
}
