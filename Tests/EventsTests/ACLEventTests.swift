import Testing

@testable import Events

/// Events that change ACL files: `{"acl", "op": "add"|"del", "pattern"}` in json, and kv, record
/// and Debezium topics bound to an ACL (the key is the pattern, an ACL's change has the empty value).
@Suite("ACL events")
struct ACLEventTests {
    // Map "hosts" is index 0, ACL "blocklist" index 1, ACL "allow" index 2.
    let decoder = EventDecoder(targets: [("hosts", false), ("blocklist", true), ("allow", true)])

    func decode(_ text: String?, key: String? = nil, _ format: EventFormat = .json) -> (changes: [DecodedChange], failure: DecodeFailure?) {
        var changes: [DecodedChange] = []
        let failure = withOptional(key.map { Array($0.utf8) }) { keyBuffer in
            withOptional(text.map { Array($0.utf8) }) { valueBuffer in
                decoder.decode(key: keyBuffer, value: valueBuffer, format: format, into: &changes)
            }
        }
        return (changes, failure)
    }

    func add(_ pattern: String, _ acl: Int = 1) -> DecodedChange { DecodedChange(map: acl, key: pattern, value: "") }
    func del(_ pattern: String, _ acl: Int = 1) -> DecodedChange { DecodedChange(map: acl, key: pattern, value: nil) }

    @Test("json: add and del of a pattern, alone or in an array with map changes; the value is ignored")
    func json() {
        #expect(decode(#"{"acl": "blocklist", "op": "add", "pattern": "203.0.113.0/24"}"#).changes == [add("203.0.113.0/24")])
        #expect(decode(#"{"op":"del","pattern":"203.0.113.0/24","acl":"allow"}"#).changes == [del("203.0.113.0/24", 2)])
        #expect(decode(#"{"acl":"blocklist","op":"add","pattern":"p","value":"ignored","key":"ignored too"}"#).changes == [add("p")])
        // The other kind's field is an unknown field, ignored whatever it holds (it must be JSON).
        #expect(decode(#"{"acl":"blocklist","op":"add","pattern":"p","key":{"any":[1]},"key":7}"#).changes == [add("p")])
        #expect(
            decode(#"{"map":"hosts","op":"set","key":"k","value":"v","pattern":null,"pattern":7}"#).changes == [
                DecodedChange(map: 0, key: "k", value: "v")
            ])
        #expect(decode(#"{"map":"hosts","op":"set","key":"k","value":"v","pattern":[}"#).failure?.label == "bad_json")
        let mixed = decode(
            #"[{"map":"hosts","op":"set","key":"a","value":"be_a"},{"acl":"blocklist","op":"add","pattern":"10.0.0.1"},{"acl":"blocklist","op":"del","pattern":"10.0.0.1"}]"#
        )
        #expect(mixed.failure == nil)
        #expect(mixed.changes == [DecodedChange(map: 0, key: "a", value: "be_a"), add("10.0.0.1"), del("10.0.0.1")])
    }

    @Test("json: what makes an ACL event invalid, with its label")
    func invalid() {
        let cases: [(String, String)] = [
            (#"{"acl":"blocklist","op":"set","pattern":"p"}"#, "bad_op"),
            (#"{"map":"hosts","op":"add","key":"k","value":"v"}"#, "bad_op"),
            (#"{"acl":"blocklist","op":"add"}"#, "missing_field"),
            (#"{"acl":"blocklist","op":"add","key":"p"}"#, "missing_field"),
            (#"{"acl":"blocklist","pattern":"p"}"#, "missing_field"),
            (#"{"op":"add","pattern":"p"}"#, "missing_field"),
            (#"{"acl":"nope","op":"add","pattern":"p"}"#, "unknown_acl"),
            (#"{"acl":"hosts","op":"add","pattern":"p"}"#, "unknown_acl"),
            (#"{"map":"blocklist","op":"set","key":"p","value":"v"}"#, "unknown_map"),
            (#"{"acl":"blocklist","map":"hosts","op":"add","pattern":"p"}"#, "bad_field"),
            (#"{"acl":"blocklist","acl":"allow","op":"add","pattern":"p"}"#, "duplicate_field"),
            (#"{"acl":"blocklist","op":"add","pattern":"p","pattern":"q"}"#, "duplicate_field"),
            (#"{"acl":"blocklist","op":"add","pattern":7}"#, "bad_field"),
            (#"{"acl":"blocklist","op":"add","p\u0061ttern":"p"}"#, "bad_json"),
        ]
        for (text, label) in cases {
            let result = decode(text)
            #expect(result.failure?.label == label, "\(text): \(String(describing: result.failure))")
            #expect(result.changes.isEmpty, "\(text)")
        }
        #expect(decode(#"{"acl":"hosts","op":"add","pattern":"p"}"#).failure?.reason.contains("is a map") == true)
        // One invalid change invalidates the whole message.
        #expect(decode(#"[{"acl":"blocklist","op":"add","pattern":"ok"},{"acl":"blocklist","op":"set","pattern":"p"}]"#).changes.isEmpty)
    }

    @Test("kv bound to an ACL: the key is the pattern, any value adds it (even one not UTF-8), a tombstone deletes it")
    func kv() {
        #expect(decode("1", key: "198.51.100.0/24", .kv(map: 1)).changes == [add("198.51.100.0/24")])
        #expect(decode("", key: "p", .kv(map: 1)).changes == [add("p")])
        var changes: [DecodedChange] = []
        let failure = withOptional(Array("p".utf8)) { key in
            withOptional([0xFF, 0xFE]) { value in decoder.decode(key: key, value: value, format: .kv(map: 1), into: &changes) }
        }
        #expect(failure == nil && changes == [add("p")])
        #expect(decode(nil, key: "198.51.100.0/24", .kv(map: 1)).changes == [del("198.51.100.0/24")])
        #expect(decode("1", key: nil, .kv(map: 1)).failure?.label == "missing_key")
    }

    @Test("record and Debezium topics bound to an ACL: the key field is the pattern, no value field is read")
    func records() {
        let fields = RecordFields(keyField: "cidr", valueField: nil, deleteWhen: .init(field: "active", equals: .bool(false)))
        #expect(decode(#"{"cidr":"192.0.2.0/24","active":true,"reason":"abuse"}"#, .record(map: 1, fields)).changes == [add("192.0.2.0/24")])
        #expect(decode(#"{"cidr":"192.0.2.0/24","active":false}"#, .record(map: 1, fields)).changes == [del("192.0.2.0/24")])
        #expect(decode(#"{"active":true}"#, .record(map: 1, fields)).failure?.label == "missing_field")
        let debezium = RecordFields(keyField: "cidr", valueField: nil)
        let created = #"{"before":null,"after":{"id":1,"cidr":"192.0.2.0/24"},"op":"c","ts_ms":1}"#
        #expect(decode(created, .debezium(map: 1, debezium)).changes == [add("192.0.2.0/24")])
        let moved = #"{"before":{"id":1,"cidr":"192.0.2.0/24"},"after":{"id":1,"cidr":"198.51.100.0/24"},"op":"u","ts_ms":2}"#
        #expect(decode(moved, .debezium(map: 1, debezium)).changes == [del("192.0.2.0/24"), add("198.51.100.0/24")])
        let deleted = #"{"before":{"id":1,"cidr":"198.51.100.0/24"},"after":null,"op":"d","ts_ms":3}"#
        #expect(decode(deleted, .debezium(map: 1, debezium)).changes == [del("198.51.100.0/24")])
    }
}
