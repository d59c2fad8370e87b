import Foundation

/// Which fields of a JSON record (or of a Debezium row) carry the map key and value.
public struct RecordFields: Sendable, Equatable {
    public var keyField: String
    /// Nil for a topic bound to an ACL: a record adds its key (the pattern), which has no value.
    public var valueField: String?
    /// A record whose field `deleteWhen.field` equals `deleteWhen.equals` deletes its key
    /// (`record` format only).
    public var deleteWhen: DeleteCondition?

    public struct DeleteCondition: Sendable, Equatable {
        public var field: String
        public var equals: JSONScalar

        public init(field: String, equals: JSONScalar) {
            self.field = field
            self.equals = equals
        }
    }

    public init(keyField: String, valueField: String?, deleteWhen: DeleteCondition? = nil) {
        self.keyField = keyField
        self.valueField = valueField
        self.deleteWhen = deleteWhen
    }
}

/// A JSON scalar, compared by type and value (`true` is not `"true"`, `1` is `1.0`).
public enum JSONScalar: Sendable, Equatable, CustomStringConvertible {
    case null
    case bool(Bool)
    case number(Double)
    case string(String)

    /// Reads a JSONSerialization value; nil for an object or an array.
    init?(_ value: Any) {
        switch value {
        case is NSNull: self = .null
        case let flag as Bool where type(of: value) == Bool.self: self = .bool(flag)
        case let number as NSNumber where ["c", "B"].contains(String(cString: number.objCType)): self = .bool(number.boolValue)
        case let number as NSNumber: self = .number(number.doubleValue)
        case let text as String: self = .string(text)
        default: return nil
        }
    }

    public var description: String {
        switch self {
        case .null: return "null"
        case .bool(let value): return String(value)
        case .number(let value): return value == value.rounded() && abs(value) < 1e15 ? String(Int64(value)) : String(value)
        case .string(let text): return quoted(text)
        }
    }
}

/// Decodes the `record` and `debezium` formats: JSON documents an upstream system writes in its
/// own shape, bound to one map, whose key and value are named by field. Strict in the same way as
/// the event format: a required field missing or of the wrong type makes the message invalid as
/// a whole (no change of it is used); other fields are ignored.
enum RecordDecoder {
    /// A `record` message: the object's `keyField` and `valueField` set the key, or the key is
    /// deleted when `deleteWhen` matches. A tombstone carries no record: no change.
    static func record(_ value: UnsafeRawBufferPointer?, map: Int, fields: RecordFields, into changes: inout [DecodedChange]) -> DecodeFailure? {
        guard let value else { return nil }
        do throws(DecodeFailure) {
            let object = try parseObject(value)
            let key = try required(object, fields.keyField, role: "key", missing: "field \(quoted(fields.keyField)) (the key) is missing")
            if let condition = fields.deleteWhen, let present = object[condition.field], JSONScalar(present) == condition.equals {
                changes.append(DecodedChange(map: map, key: key, value: nil))
                return nil
            }
            let value = try fields.valueField.map { field throws(DecodeFailure) in
                try required(object, field, role: "value", missing: "field \(quoted(field)) (the value) is missing")
            }
            changes.append(DecodedChange(map: map, key: key, value: value ?? ""))
            return nil
        } catch {
            return error
        }
    }

    /// A Debezium change event, with or without the `schema`/`payload` wrapper: `c` (create) and
    /// `r` (snapshot read) set the row's key, `u` sets it and, when the key column changed, deletes
    /// the old key first, `d` deletes it. The tombstone Debezium writes after a delete carries no
    /// change (the delete event did it).
    static func debezium(_ value: UnsafeRawBufferPointer?, map: Int, fields: RecordFields, into changes: inout [DecodedChange]) -> DecodeFailure? {
        guard let value else { return nil }
        do throws(DecodeFailure) {
            var envelope = try parseObject(value)
            if envelope["schema"] != nil, let payload = envelope["payload"] {
                guard let unwrapped = payload as? [String: Any] else { throw DecodeFailure("bad_field", "'payload' must be an object") }
                envelope = unwrapped
            }
            guard let op = envelope["op"] else { throw DecodeFailure("missing_field", "field 'op' is missing (not a Debezium change event)") }
            guard let op = op as? String else { throw DecodeFailure("bad_field", "'op' must be a string") }
            func row(_ name: String) throws(DecodeFailure) -> [String: Any]? {
                switch envelope[name] {
                case nil, is NSNull: return nil
                case let row as [String: Any]: return row
                default: throw DecodeFailure("bad_field", "'\(name)' must be an object or null")
                }
            }
            func key(of row: [String: Any], _ name: String) throws(DecodeFailure) -> String {
                try required(row, fields.keyField, role: "key", missing: "'\(name)' has no column \(quoted(fields.keyField)) (the key)")
            }
            switch op {
            case "c", "r", "u":
                guard let after = try row("after") else { throw DecodeFailure("missing_field", "a '\(op)' event needs 'after'") }
                let newKey = try key(of: after, "after")
                let newValue =
                    try fields.valueField.map { field throws(DecodeFailure) in
                        try required(after, field, role: "value", missing: "'after' has no column \(quoted(field)) (the value)")
                    } ?? ""
                // The old key, when `before` holds one that differs (REPLICA IDENTITY FULL); a
                // `before` without it (the default identity) cannot tell, and deletes nothing.
                if op == "u", let before = try row("before"), let oldKey = try? key(of: before, "before"), !oldKey.utf8.elementsEqual(newKey.utf8) {
                    changes.append(DecodedChange(map: map, key: oldKey, value: nil))
                }
                changes.append(DecodedChange(map: map, key: newKey, value: newValue))
            case "d":
                guard let before = try row("before") else { throw DecodeFailure("missing_field", "a 'd' event needs 'before'") }
                changes.append(DecodedChange(map: map, key: try key(of: before, "before"), value: nil))
            default:
                throw DecodeFailure("bad_op", "Debezium op \(quoted(op)) is not one of c, r, u, d (a truncate is not applied)")
            }
            return nil
        } catch {
            return error
        }
    }

    private static func parseObject(_ value: UnsafeRawBufferPointer) throws(DecodeFailure) -> [String: Any] {
        guard let parsed = try? JSONSerialization.jsonObject(with: Data(value), options: [.fragmentsAllowed]) else {
            throw DecodeFailure("bad_json", "not valid JSON")
        }
        guard let object = parsed as? [String: Any] else { throw DecodeFailure("bad_json", "the message is not a JSON object") }
        return object
    }

    /// A key or value column as map text: a string as it is, a number in its shortest decimal
    /// form. `missing` is the reason when it is absent or null; a boolean, object or array is a
    /// `bad_field`.
    private static func required(_ object: [String: Any], _ field: String, role: String, missing: String) throws(DecodeFailure) -> String {
        guard let raw = object[field] else { throw DecodeFailure("missing_field", missing) }
        switch JSONScalar(raw) {
        case .null?: throw DecodeFailure("missing_field", missing)
        case .string(let text)?: return text
        case .number?:
            // An integer as its digits, whatever its size (a Double would round past 2^53).
            if let number = raw as? NSNumber, "qlisQLIS".contains(String(cString: number.objCType)) {
                return number.stringValue
            }
            return JSONScalar(raw)!.description
        default: throw DecodeFailure("bad_field", "field \(quoted(field)) (the \(role)) must be a string or a number")
        }
    }
}
