/// How a topic's messages carry changes.
public enum EventFormat: Sendable, Equatable {
    /// The value is one change object or a JSON array of them; each names its map.
    case json
    /// The message key is the map key, the value the map value, a null value (tombstone) deletes;
    /// every message of the topic belongs to one map (its index in the configured maps). For an
    /// ACL the key is the pattern and any value adds it.
    case kv(map: Int)
    /// The value is a JSON record whose fields name the map key and value (``RecordFields``).
    case record(map: Int, RecordFields)
    /// The value is a Debezium change event; the row's columns name the map key and value.
    case debezium(map: Int, RecordFields)
}

/// One change read from a message.
public struct DecodedChange: Sendable, Equatable {
    /// The map's index in the configuration.
    public var map: Int
    public var key: String
    /// The value to set, or nil to delete the key.
    public var value: String?

    public init(map: Int, key: String, value: String?) {
        self.map = map
        self.key = key
        self.value = value
    }
}

/// Why a message holds no valid change (it is then dead-lettered or logged, and skipped).
public struct DecodeFailure: Error, Sendable, Equatable, CustomStringConvertible {
    /// A short, stable label for metrics and dead-letter headers (`bad_json`, `unknown_map`...).
    public var label: String
    /// A sentence for humans; never longer than a few hundred characters, whatever the input.
    public var reason: String

    public init(_ label: String, _ reason: String) {
        self.label = label
        self.reason = reason
    }

    public var description: String { "\(label): \(reason)" }
}

/// Turns message keys and values into changes, strictly: a message with any malformed, missing,
/// duplicated or mistyped required field, or any text that is not valid UTF-8, is invalid as a
/// whole, and none of its changes are used. Unknown fields are ignored (but must be valid JSON).
///
/// An event names a map (`"map"`, `"op": "set"|"del"`, `"key"`, `"value"`) or an ACL (`"acl"`,
/// `"op": "add"|"del"`, `"pattern"`); an ACL's change carries the empty value.
public struct EventDecoder: Sendable {
    private let mapNames: [[UInt8]]
    private let isACL: [Bool]

    /// - Parameter mapNames: the configured maps' logical names; an event's `map` must be one of them.
    public init(mapNames: [String]) {
        self.init(targets: mapNames.map { ($0, false) })
    }

    /// - Parameter targets: every configured map and ACL, in configuration order (a change's
    ///   ``DecodedChange/map`` is an index into it): an event's `map` must name a map, its `acl` an ACL.
    public init(targets: [(name: String, isACL: Bool)]) {
        self.mapNames = targets.map { Array($0.name.utf8) }
        self.isACL = targets.map(\.isACL)
    }

    /// Appends the message's changes to `changes`, or returns why it is invalid (appending nothing).
    public func decode(key: UnsafeRawBufferPointer?, value: UnsafeRawBufferPointer?, format: EventFormat, into changes: inout [DecodedChange]) -> DecodeFailure?
    {
        switch format {
        case .kv(let map):
            guard let key else { return DecodeFailure("missing_key", "a kv message needs a key (the map key)") }
            guard let keyText = validUTF8String(key) else { return DecodeFailure("invalid_utf8", "the message key is not valid UTF-8") }
            guard let value else {
                changes.append(DecodedChange(map: map, key: keyText, value: nil))
                return nil
            }
            if isACL.indices.contains(map) && isACL[map] {
                // The key is the pattern; any value adds it (an ACL's patterns have none).
                changes.append(DecodedChange(map: map, key: keyText, value: ""))
                return nil
            }
            guard let valueText = validUTF8String(value) else { return DecodeFailure("invalid_utf8", "the message value is not valid UTF-8") }
            changes.append(DecodedChange(map: map, key: keyText, value: valueText))
            return nil
        case .record(let map, let fields):
            return RecordDecoder.record(value, map: map, fields: fields, into: &changes)
        case .debezium(let map, let fields):
            return RecordDecoder.debezium(value, map: map, fields: fields, into: &changes)
        case .json:
            guard let value else { return DecodeFailure("tombstone", "a json topic message has a null value (tombstones carry no change)") }
            let start = changes.count
            var reader = JSONReader(value)
            if let failure = decodeDocument(&reader, into: &changes) {
                changes.removeSubrange(start...)
                return failure
            }
            return nil
        }
    }

    private func decodeDocument(_ reader: inout JSONReader, into changes: inout [DecodedChange]) -> DecodeFailure? {
        reader.skipWhitespace()
        switch reader.peek() {
        case UInt8(ascii: "{"):
            if let failure = decodeChange(&reader, into: &changes) { return failure }
        case UInt8(ascii: "["):
            reader.advance()
            reader.skipWhitespace()
            if reader.peek() == UInt8(ascii: "]") {
                reader.advance()
            } else {
                var position = 0
                while true {
                    reader.skipWhitespace()
                    guard reader.peek() == UInt8(ascii: "{") else { return reader.failure("bad_json", "element \(position) of the array is not an object") }
                    if let failure = decodeChange(&reader, into: &changes) {
                        return DecodeFailure(failure.label, "element \(position): \(failure.reason)")
                    }
                    position += 1
                    reader.skipWhitespace()
                    if reader.consume(UInt8(ascii: ",")) { continue }
                    if reader.consume(UInt8(ascii: "]")) { break }
                    return reader.failure("bad_json", "expected ',' or ']' in the array")
                }
            }
        case nil:
            return DecodeFailure("bad_json", "empty message")
        default:
            return reader.failure("bad_json", "expected a change object or an array of them")
        }
        reader.skipWhitespace()
        guard reader.atEnd else { return reader.failure("bad_json", "unexpected data after the JSON value") }
        return nil
    }

    private enum Field { case map, acl, op, key, pattern, value, other }
    private enum Operation { case set, add, del }

    private func decodeChange(_ reader: inout JSONReader, into changes: inout [DecodedChange]) -> DecodeFailure? {
        guard reader.consume(UInt8(ascii: "{")) else { return reader.failure("bad_json", "expected '{'") }
        var target: Int? = nil
        var targetField: Field? = nil  // .map or .acl: which one named the target
        var op: Operation? = nil
        var key: String? = nil
        var pattern: String? = nil
        var keySeen = false
        var patternSeen = false
        var keyFailure: DecodeFailure? = nil
        var patternFailure: DecodeFailure? = nil
        var value: String? = nil
        var valueSeen = false
        var unknownTarget: DecodeFailure? = nil
        reader.skipWhitespace()
        if !reader.consume(UInt8(ascii: "}")) {
            while true {
                reader.skipWhitespace()
                guard reader.peek() == UInt8(ascii: "\"") else { return reader.failure("bad_json", "expected a field name in double quotes") }
                guard let name = reader.readRawString() else { return reader.lastFailure ?? reader.failure("bad_json", "expected a field name") }
                let field: Field
                switch name {
                case .plain(let bytes) where bytes.isExactly("map"): field = .map
                case .plain(let bytes) where bytes.isExactly("acl"): field = .acl
                case .plain(let bytes) where bytes.isExactly("op"): field = .op
                case .plain(let bytes) where bytes.isExactly("key"): field = .key
                case .plain(let bytes) where bytes.isExactly("pattern"): field = .pattern
                case .plain(let bytes) where bytes.isExactly("value"): field = .value
                case .escaped(let bytes) where ["map", "acl", "op", "key", "pattern", "value"].contains(where: { bytes.elementsEqual($0.utf8) }):
                    return DecodeFailure("bad_json", "escaped field names are not accepted for map/acl/op/key/pattern/value")
                default: field = .other
                }
                reader.skipWhitespace()
                guard reader.consume(UInt8(ascii: ":")) else { return reader.failure("bad_json", "expected ':' after a field name") }
                reader.skipWhitespace()
                switch field {
                case .map, .acl:
                    let fieldName = field == .acl ? "acl" : "map"
                    if targetField == field { return DecodeFailure("duplicate_field", "field '\(fieldName)' appears twice") }
                    if targetField != nil { return DecodeFailure("bad_field", "an event names a map or an ACL, not both") }
                    targetField = field
                    guard let raw = reader.readRawString() else { return reader.lastFailure ?? DecodeFailure("bad_field", "'\(fieldName)' must be a string") }
                    target = lookUpMap(raw)
                    if let found = target, isACL[found] != (field == .acl) {
                        target = nil
                        let other = isACL[found] ? "an ACL (name it with \"acl\")" : "a map (name it with \"map\")"
                        unknownTarget = DecodeFailure("unknown_\(fieldName)", "\(quoted(raw.text ?? "")) is \(other)")
                    } else if target == nil {
                        unknownTarget = DecodeFailure(
                            "unknown_\(fieldName)", "\(field == .acl ? "ACL" : "map") \(quoted(raw.text ?? "<invalid UTF-8>")) is not configured")
                    }
                case .op:
                    if op != nil { return DecodeFailure("duplicate_field", "field 'op' appears twice") }
                    guard let raw = reader.readRawString() else { return reader.lastFailure ?? DecodeFailure("bad_field", "'op' must be a string") }
                    if case .plain(let bytes) = raw, bytes.isExactly("set") {
                        op = .set
                    } else if case .plain(let bytes) = raw, bytes.isExactly("add") {
                        op = .add
                    } else if case .plain(let bytes) = raw, bytes.isExactly("del") {
                        op = .del
                    } else {
                        return DecodeFailure(
                            "bad_op", "'op' must be \"set\" or \"del\" (\"add\" or \"del\" for an ACL), not \(quoted(raw.text ?? "<invalid UTF-8>"))")
                    }
                case .key, .pattern:
                    // A map event's `pattern` and an ACL event's `key` are unknown fields, ignored:
                    // what is wrong with one counts only for the kind of event that uses it.
                    let fieldName = field == .key ? "key" : "pattern"
                    var failure: DecodeFailure?
                    var text: String?
                    if (field == .key ? keySeen : patternSeen) {
                        failure = DecodeFailure("duplicate_field", "field '\(fieldName)' appears twice")
                    }
                    if field == .key { keySeen = true } else { patternSeen = true }
                    if reader.peek() == UInt8(ascii: "\"") {
                        guard let raw = reader.readRawString() else { return reader.lastFailure ?? DecodeFailure("bad_json", "malformed string") }
                        text = raw.text
                        if text == nil { failure = failure ?? DecodeFailure("invalid_utf8", "'\(fieldName)' is not valid UTF-8") }
                    } else {
                        if let malformed = reader.skipValue() { return malformed }
                        failure = failure ?? DecodeFailure("bad_field", "'\(fieldName)' must be a string")
                    }
                    if field == .key {
                        key = text
                        keyFailure = keyFailure ?? failure
                    } else {
                        pattern = text
                        patternFailure = patternFailure ?? failure
                    }
                case .value:
                    if valueSeen { return DecodeFailure("duplicate_field", "field 'value' appears twice") }
                    valueSeen = true
                    if reader.peek() == UInt8(ascii: "\"") {
                        guard let raw = reader.readRawString() else { return reader.lastFailure! }
                        guard let text = raw.text else { return DecodeFailure("invalid_utf8", "'value' is not valid UTF-8") }
                        value = text
                    } else if let failure = reader.skipValue() {
                        return failure
                    }
                case .other:
                    if let failure = reader.skipValue() { return failure }
                }
                reader.skipWhitespace()
                if reader.consume(UInt8(ascii: ",")) { continue }
                if reader.consume(UInt8(ascii: "}")) { break }
                return reader.failure("bad_json", "expected ',' or '}' in the object")
            }
        }
        guard let targetField else { return DecodeFailure("missing_field", "field 'map' (or 'acl') is missing") }
        if let unknownTarget { return unknownTarget }
        guard let op else { return DecodeFailure("missing_field", "field 'op' is missing") }
        if targetField == .acl {
            // An ACL's pattern is present or not: `add` or `del`, and no value.
            guard op != .set else { return DecodeFailure("bad_op", "an ACL's 'op' is \"add\" or \"del\", not \"set\"") }
            if let patternFailure { return patternFailure }
            guard let pattern else { return DecodeFailure("missing_field", "field 'pattern' is missing") }
            changes.append(DecodedChange(map: target!, key: pattern, value: op == .add ? "" : nil))
            return nil
        }
        guard op != .add else { return DecodeFailure("bad_op", "a map's 'op' is \"set\" or \"del\", not \"add\" (set adds a missing key)") }
        if let keyFailure { return keyFailure }
        guard let key else { return DecodeFailure("missing_field", "field 'key' is missing") }
        if op == .set {
            guard valueSeen else { return DecodeFailure("missing_field", "field 'value' is missing (required for set)") }
            guard let value else { return DecodeFailure("bad_field", "'value' must be a string") }
            changes.append(DecodedChange(map: target!, key: key, value: value))
        } else {
            changes.append(DecodedChange(map: target!, key: key, value: nil))
        }
        return nil
    }

    private func lookUpMap(_ raw: JSONReader.RawString) -> Int? {
        guard case .plain(let bytes) = raw else {
            guard let text = raw.text else { return nil }
            return mapNames.firstIndex { $0.elementsEqual(text.utf8) }
        }
        return mapNames.firstIndex { name in name.withUnsafeBytes { $0.isExactly(bytes) } }
    }
}

/// A value quoted for an error message, cut short when long.
func quoted(_ text: String) -> String {
    let limit = 80
    if text.utf8.count <= limit { return "'\(escapingControlCharacters(text))'" }
    return "'\(escapingControlCharacters(String(decoding: text.utf8.prefix(limit), as: UTF8.self)))...' (\(text.utf8.count) bytes)"
}

/// The text with every control character (C0, DEL, C1) written as an escape (`\n`, `\t`, `\r`,
/// `\u{1b}`...) and backslashes doubled: text from an event can then go into a log line or a
/// header without forging another line or hiding what it held.
public func escapingControlCharacters(_ text: String) -> String {
    guard text.unicodeScalars.contains(where: { $0.value < 0x20 || (0x7F...0x9F).contains($0.value) || $0 == "\\" }) else { return text }
    var out = ""
    out.reserveCapacity(text.utf8.count + 8)
    for scalar in text.unicodeScalars {
        switch scalar {
        case "\n": out += "\\n"
        case "\r": out += "\\r"
        case "\t": out += "\\t"
        case "\\": out += "\\\\"
        case _ where scalar.value < 0x20 || (0x7F...0x9F).contains(scalar.value): out += "\\u{\(String(scalar.value, radix: 16))}"
        default: out.unicodeScalars.append(scalar)
        }
    }
    return out
}

extension UnsafeRawBufferPointer {
    /// Whether these are exactly the UTF-8 bytes of `text` (a field name, an op), compared as
    /// bytes: the generic `elementsEqual` against a `String.UTF8View` cost 2% of decoding.
    @inline(__always)
    func isExactly(_ text: StaticString) -> Bool {
        isExactly(UnsafeRawBufferPointer(start: text.utf8Start, count: text.utf8CodeUnitCount))
    }

    /// Whether both hold the same bytes.
    @inline(__always)
    func isExactly(_ other: UnsafeRawBufferPointer) -> Bool {
        guard count == other.count else { return false }
        for index in 0..<count where self[index] != other[index] { return false }
        return true
    }
}
