/// One valid change read from a message, or several of one key compacted in the backlog.
public struct PendingChange: Sendable {
    public var map: Int
    public var key: MapKey
    public var value: String?
    /// Its message's index in the batch's (or chunk's) messages: the first of the changes
    /// compacted into it, which keeps the changes in message order.
    public var message: Int
    /// The message whose change decided the value (the last compacted into it), to name in a
    /// report of a refused change.
    public var source: Int
    /// How many change events were compacted into this one (for counting what was applied).
    public var events: Int32 = 1

    @inlinable
    public init(map: Int, key: MapKey, value: String?, message: Int) {
        self.map = map
        self.key = key
        self.value = value
        self.message = message
        self.source = message
    }
}
