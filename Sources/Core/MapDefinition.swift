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

/// What HAProxy holds in a pattern file the bridge manages. HAProxy keeps maps and ACL pattern
/// files alike (pattern references, changed by the same runtime commands spelled with `map` or
/// `acl`); an ACL's entries are patterns without values. The raw value is the command word.
public enum MapKind: String, Sendable, Equatable {
    /// `key value` entries, looked up by `map_<match>` converters.
    case map
    /// Patterns only, matched by `acl ... -f <file>`.
    case acl

    /// "map" or "ACL", for messages.
    public var noun: String { self == .acl ? "ACL" : "map" }
}

/// A map or ACL file the bridge manages: its logical name (used in events), the identifier HAProxy
/// knows it by, and the types that decide what keys and values HAProxy accepts and how lookups
/// behave. For an ACL the keys are its patterns, every value is empty, and ``valueType`` is unused.
public struct MapDefinition: Sendable, Equatable {
    /// The logical name events use (`"map": "hosts"`, `"acl": "blocklist"`); never a path.
    public var name: String
    /// The map as HAProxy names it in its configuration (usually the map file's path).
    public var path: String
    public var match: MatchType
    public var valueType: ValueType
    public var kind: MapKind

    public init(name: String, path: String, match: MatchType = .str, valueType: ValueType = .str, kind: MapKind = .map) {
        self.name = name
        self.path = path
        self.match = match
        self.valueType = valueType
        self.kind = kind
    }

    /// Whether the order of entries changes lookups: a list-matched map's first match wins. An
    /// ACL only asks whether any pattern matches, so its order never matters.
    public var isOrderSensitive: Bool { kind == .map && match.isOrderSensitive }

    /// "map hosts" or "ACL blocklist", for messages.
    public var described: String { "\(kind.noun) \(name)" }
}
