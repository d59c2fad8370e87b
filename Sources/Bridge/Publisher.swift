import Consumer
import Core
import Events
import Kafka
import Logging
import Mapper

/// Turns lines of text into change events for one map, the way `mapbridge publish` reads stdin:
/// `key value` sets (the value is the rest of the line), `-key` deletes (for an ACL: `pattern`
/// adds, `-pattern` deletes), a line starting with `{`
/// or `[` is a JSON event published as it is (when it is valid), and empty lines and `#` comments
/// are skipped. Every change is checked with the daemon's own rules before it is published.
public struct ChangeLineParser: Sendable {
    public enum Line: Sendable, Equatable {
        case change(key: String, value: String?)
        case json(String)
        case skip
        case invalid(String)
    }

    public let map: MapDefinition
    public let mapIndex: Int
    let rules: EntryRules
    let checker: EventChecker

    public init(configuration: BridgeConfiguration, map name: String) throws {
        guard let index = configuration.maps.firstIndex(where: { $0.name == name }) else {
            throw ConfigurationError(problems: ["--map: '\(name)' is not one of the maps or ACLs (\(configuration.maps.map(\.name).joined(separator: ", ")))"])
        }
        mapIndex = index
        map = configuration.mapDefinitions[index]
        rules = configuration.entryRules
        checker = EventChecker(configuration: configuration)
    }

    public func parse(_ raw: Substring) -> Line {
        let line = raw.hasSuffix("\r") ? raw.dropLast() : raw
        let trimmed = line.drop(while: { $0 == " " || $0 == "\t" })
        if trimmed.isEmpty || trimmed.hasPrefix("#") { return .skip }
        if trimmed.hasPrefix("{") || trimmed.hasPrefix("[") {
            var changes: [DecodedChange] = []
            let text = String(trimmed)
            // The daemon's own judgement: the JSON, then every change against the entry rules.
            let failure = Array(text.utf8).withUnsafeBytes { checker.check(key: nil, value: $0, format: .json, into: &changes) }
            if let failure { return .invalid("\(failure.label): \(failure.reason)") }
            return .json(text)
        }
        if trimmed.hasPrefix("-") {
            let key = String(trimmed.dropFirst())
            if let defect = rules.check(key: key, value: nil, for: map) { return .invalid(defect.description) }
            return .change(key: key, value: nil)
        }
        if map.kind == .acl {
            // A pattern per line: it is added.
            let pattern = String(trimmed)
            if let defect = rules.check(key: pattern, value: "", for: map) { return .invalid(defect.description) }
            return .change(key: pattern, value: "")
        }
        guard let separator = trimmed.firstIndex(where: { $0 == " " || $0 == "\t" }) else {
            return .invalid("expected 'key value' or '-key'")
        }
        let key = String(trimmed[..<separator])
        var value = trimmed[separator...].drop(while: { $0 == " " || $0 == "\t" })
        while let last = value.last, last == " " || last == "\t" { value = value.dropLast() }
        if let defect = rules.check(key: key, value: String(value), for: map) { return .invalid(defect.description) }
        return .change(key: key, value: String(value))
    }

    /// The JSON event for a change of this map.
    public func jsonEvent(key: String, value: String?) -> String {
        Bridge.jsonEvent(map: map.name, key: key, value: value, kind: map.kind)
    }
}

/// The JSON event (the `json` topic format) for one change: a set, or a delete when `value` is nil
/// (for an ACL: an add of the pattern `key`, or its delete).
public func jsonEvent(map: String, key: String, value: String?, kind: MapKind = .map) -> String {
    if kind == .acl {
        return #"{"acl":\#(jsonString(map)),"op":"\#(value == nil ? "del" : "add")","pattern":\#(jsonString(key))}"#
    }
    if let value {
        return #"{"map":\#(jsonString(map)),"op":"set","key":\#(jsonString(key)),"value":\#(jsonString(value))}"#
    }
    return #"{"map":\#(jsonString(map)),"op":"del","key":\#(jsonString(key))}"#
}

/// A JSON string literal.
public func jsonString(_ text: String) -> String {
    var result = "\""
    for scalar in text.unicodeScalars {
        switch scalar {
        case "\"": result += "\\\""
        case "\\": result += "\\\\"
        case "\n": result += "\\n"
        case "\r": result += "\\r"
        case "\t": result += "\\t"
        case let control where control.value < 0x20 || control.value == 0x7F:
            let hex = String(control.value, radix: 16)
            result += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
        default: result.unicodeScalars.append(scalar)
        }
    }
    return result + "\""
}
