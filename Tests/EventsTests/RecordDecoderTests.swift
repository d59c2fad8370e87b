import Testing

@testable import Events

/// The `record` and `debezium` formats. The Debezium messages are shaped as Debezium's PostgreSQL
/// connector documents them (JSON converter, with and without the schema wrapper), for a table
/// `routes(host VARCHAR PRIMARY KEY, backend VARCHAR, weight INT)`.
@Suite("Records and Debezium change events")
struct RecordDecoderTests {
    let fields = RecordFields(keyField: "host", valueField: "backend")

    func decode(_ text: String?, _ format: EventFormat) -> (changes: [DecodedChange], failure: DecodeFailure?) {
        var changes: [DecodedChange] = []
        let decoder = EventDecoder(mapNames: ["other", "hosts"])
        let failure: DecodeFailure?
        if let text {
            failure = Array(text.utf8).withUnsafeBytes { decoder.decode(key: nil, value: $0, format: format, into: &changes) }
        } else {
            failure = decoder.decode(key: nil, value: nil, format: format, into: &changes)
        }
        return (changes, failure)
    }

    func set(_ key: String, _ value: String) -> DecodedChange { DecodedChange(map: 1, key: key, value: value) }
    func del(_ key: String) -> DecodedChange { DecodedChange(map: 1, key: key, value: nil) }

    @Test("records: key and value by field, numbers as text, delete_when, strict about the named fields only")
    func records() {
        var withDelete = fields
        withDelete.deleteWhen = .init(field: "deleted", equals: .bool(true))
        let format = EventFormat.record(map: 1, withDelete)
        #expect(decode(#"{"host":"api.example.com","backend":"be_api","owner":"team-a"}"#, format).changes == [set("api.example.com", "be_api")])
        #expect(decode(#"{"host":"api.example.com","backend":7}"#, format).changes == [set("api.example.com", "7")])
        #expect(decode(#"{"host":12345678901234567,"backend":-3}"#, format).changes == [set("12345678901234567", "-3")], "integers keep every digit")
        #expect(decode(#"{"host":"k","backend":1.5}"#, format).changes == [set("k", "1.5")])
        #expect(decode(#"{"host":"old.example.com","backend":"be_x","deleted":true}"#, format).changes == [del("old.example.com")])
        #expect(decode(#"{"host":"kept.example.com","backend":"be_x","deleted":false}"#, format).changes == [set("kept.example.com", "be_x")])
        #expect(
            decode(#"{"host":"kept.example.com","backend":"be_x","deleted":"true"}"#, format).changes == [set("kept.example.com", "be_x")],
            "a string is not the boolean")
        #expect(decode(nil, format).changes.isEmpty && decode(nil, format).failure == nil, "a tombstone carries no record")
        #expect(decode(#"{"backend":"be_x"}"#, format).failure?.label == "missing_field")
        #expect(decode(#"{"host":"k"}"#, format).failure?.label == "missing_field")
        #expect(decode(#"{"host":["k"],"backend":"v"}"#, format).failure?.label == "bad_field")
        #expect(decode(#"{"host":"k","backend":true}"#, format).failure?.label == "bad_field")
        #expect(decode(#"{"host":"k","#, format).failure?.label == "bad_json")
        #expect(decode(#"["k","v"]"#, format).failure?.label == "bad_json")
    }

    static let schema =
        #"{"type":"struct","fields":[{"type":"struct","fields":[{"type":"string","optional":false,"field":"host"},{"type":"string","optional":true,"field":"backend"},{"type":"int32","optional":true,"field":"weight"}],"optional":true,"name":"dbserver1.public.routes.Value","field":"before"},{"type":"struct","fields":[{"type":"string","optional":false,"field":"host"},{"type":"string","optional":true,"field":"backend"},{"type":"int32","optional":true,"field":"weight"}],"optional":true,"name":"dbserver1.public.routes.Value","field":"after"},{"type":"string","optional":false,"field":"op"},{"type":"int64","optional":true,"field":"ts_ms"}],"optional":false,"name":"dbserver1.public.routes.Envelope"}"#
    static let source =
        #"{"version":"2.5.4.Final","connector":"postgresql","name":"dbserver1","ts_ms":1559033904863,"snapshot":"false","db":"postgres","sequence":"[\"24023119\",\"24023128\"]","schema":"public","table":"routes","txId":555,"lsn":24023128,"xmin":null}"#

    func envelope(before: String, after: String, op: String, wrapped: Bool) -> String {
        let payload = #"{"before":\#(before),"after":\#(after),"source":\#(Self.source),"op":"\#(op)","ts_ms":1559033904863,"transaction":null}"#
        return wrapped ? #"{"schema":\#(Self.schema),"payload":\#(payload)}"# : payload
    }

    @Test("Debezium: every op, with and without the schema wrapper; a key change deletes the old key; tombstones carry nothing", arguments: [true, false])
    func debezium(wrapped: Bool) {
        let format = EventFormat.debezium(map: 1, fields)
        let row = #"{"host":"api.example.com","backend":"be_api","weight":10}"#
        #expect(decode(envelope(before: "null", after: row, op: "c", wrapped: wrapped), format).changes == [set("api.example.com", "be_api")])
        #expect(decode(envelope(before: "null", after: row, op: "r", wrapped: wrapped), format).changes == [set("api.example.com", "be_api")], "snapshot read")
        // REPLICA IDENTITY DEFAULT: an update's before is null.
        let updated = #"{"host":"api.example.com","backend":"be_api_v2","weight":10}"#
        #expect(decode(envelope(before: "null", after: updated, op: "u", wrapped: wrapped), format).changes == [set("api.example.com", "be_api_v2")])
        // REPLICA IDENTITY FULL: before holds the old row; a changed key column deletes the old key first.
        let moved = #"{"host":"api2.example.com","backend":"be_api_v2","weight":10}"#
        #expect(
            decode(envelope(before: updated, after: moved, op: "u", wrapped: wrapped), format).changes == [
                del("api.example.com"), set("api2.example.com", "be_api_v2"),
            ])
        #expect(decode(envelope(before: updated, after: updated, op: "u", wrapped: wrapped), format).changes == [set("api.example.com", "be_api_v2")])
        // A delete with REPLICA IDENTITY DEFAULT carries the primary key only.
        #expect(
            decode(envelope(before: #"{"host":"api.example.com","backend":null,"weight":null}"#, after: "null", op: "d", wrapped: wrapped), format).changes == [
                del("api.example.com")
            ])
        #expect(decode(nil, format).changes.isEmpty && decode(nil, format).failure == nil, "the tombstone after a delete")
        // Invalid: truncate, a missing row, a missing column, not an envelope.
        #expect(decode(envelope(before: "null", after: "null", op: "t", wrapped: wrapped), format).failure?.label == "bad_op")
        #expect(decode(envelope(before: "null", after: "null", op: "c", wrapped: wrapped), format).failure?.label == "missing_field")
        #expect(decode(envelope(before: "null", after: "null", op: "d", wrapped: wrapped), format).failure?.label == "missing_field")
        #expect(decode(envelope(before: "null", after: #"{"host":"k"}"#, op: "c", wrapped: wrapped), format).failure?.label == "missing_field")
        #expect(decode(#"{"host":"k","backend":"v"}"#, format).failure?.label == "missing_field", "a plain record is not a change event")
    }
}
