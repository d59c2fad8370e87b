/// How HAProxy matches a sample against a map's keys (the suffix of `map_<match>` in its configuration).
public enum MatchType: String, Sendable, CaseIterable, Equatable {
    case str, beg, sub, dir, dom, end, reg, regm, int, ip

    /// Whether HAProxy keeps these patterns in a list and returns the first match in insertion
    /// order (so the ORDER of entries changes lookups), rather than in a tree.
    public var isOrderSensitive: Bool {
        switch self {
        case .str, .beg, .ip: return false
        case .sub, .dir, .dom, .end, .reg, .regm, .int: return true
        }
    }
}

/// The type HAProxy parses a map's values as (`map_<match>_<value>`): strings, integers or addresses.
public enum ValueType: String, Sendable, CaseIterable, Equatable {
    case str, int, ip
}

/// A map the bridge manages: its logical name (used in events), the identifier HAProxy knows it
/// by, and the types that decide what keys and values HAProxy accepts and how lookups behave.
public struct MapDefinition: Sendable, Equatable {
    /// The logical name events use (`"map": "hosts"`); never a path.
    public var name: String
    /// The map as HAProxy names it in its configuration (usually the map file's path).
    public var path: String
    public var match: MatchType
    public var valueType: ValueType

    public init(name: String, path: String, match: MatchType = .str, valueType: ValueType = .str) {
        self.name = name
        self.path = path
        self.match = match
        self.valueType = valueType
    }
}
