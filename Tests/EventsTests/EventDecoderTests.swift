import Testing

@testable import Events

@Suite("Event decoding")
struct EventDecoderTests {
    let decoder = EventDecoder(mapNames: ["hosts", "flags"])

    func decode(_ text: String) -> ([DecodedChange], DecodeFailure?) {
        decodeBytes(Array(text.utf8))
    }

    func decodeBytes(_ bytes: [UInt8]?, key: [UInt8]? = nil, format: EventFormat = .json) -> ([DecodedChange], DecodeFailure?) {
        var changes: [DecodedChange] = [DecodedChange(map: 9, key: "before", value: nil)]
        let failure = withOptional(key) { keyBuffer in
            withOptional(bytes) { valueBuffer in
                decoder.decode(key: keyBuffer, value: valueBuffer, format: format, into: &changes)
            }
        }
        #expect(changes.first == DecodedChange(map: 9, key: "before", value: nil), "earlier changes are kept")
        return (Array(changes.dropFirst()), failure)
    }

    @Test("one change, or an array of changes in order; unknown fields ignored")
    func valid() {
        #expect(
            decode(#"{"map": "hosts", "op": "set", "key": "api.example.com", "value": "be_api"}"#).0 == [
                DecodedChange(map: 0, key: "api.example.com", value: "be_api")
            ])
        #expect(decode(#"{"op":"del","key":"old.example.com","map":"flags"}"#).0 == [DecodedChange(map: 1, key: "old.example.com", value: nil)])
        #expect(decode(#"{"map":"hosts","op":"del","key":"k","value":{"ignored":[1,2,{"x":null}]}}"#).0 == [DecodedChange(map: 0, key: "k", value: nil)])
        let array = decode(
            #" [ {"map":"hosts","op":"set","key":"a","value":"1"} , {"map":"hosts","op":"del","key":"a"},{"map":"flags","op":"set","key":"b","value":"2","extra":[true,false,-1.5e+3,"s"]} ] "#
        )
        #expect(array.1 == nil)
        #expect(
            array.0 == [DecodedChange(map: 0, key: "a", value: "1"), DecodedChange(map: 0, key: "a", value: nil), DecodedChange(map: 1, key: "b", value: "2")])
        #expect(decode("[]").0.isEmpty && decode("[]").1 == nil)
        #expect(
            decode(#"{"map":"hosts","op":"set","key":"caf\u00e9 \ud83d\ude00 \"q\" \\ \/","value":"tab\there"}"#).0 == [
                DecodedChange(map: 0, key: "café 😀 \"q\" \\ /", value: "tab\there")
            ])
    }

    @Test(
        "invalid messages are refused as a whole, with a reason",
        arguments: [
            (#"not json"#, "bad_json"), (#"{"map":"hosts","op":"set","key":"k"}"#, "missing_field"),
            (#"{"map":"hosts","op":"set","value":"v"}"#, "missing_field"),
            (#"{"op":"set","key":"k","value":"v"}"#, "missing_field"), (#"{"map":"hosts","key":"k","value":"v"}"#, "missing_field"),
            (#"{"map":"nope","op":"set","key":"k","value":"v"}"#, "unknown_map"),
            (#"{"map":"/etc/haproxy/hosts.map","op":"set","key":"k","value":"v"}"#, "unknown_map"),
            (#"{"map":"hosts","op":"upsert","key":"k","value":"v"}"#, "bad_op"), (#"{"map":"hosts","op":"set","key":1,"value":"v"}"#, "bad_field"),
            (#"{"map":"hosts","op":"set","key":"k","value":5}"#, "bad_field"), (#"{"map":"hosts","op":"set","key":"k","value":null}"#, "bad_field"),
            (#"{"map":"hosts","op":"set","key":"k","key":"k2","value":"v"}"#, "duplicate_field"),
            (#"{"map":"hosts","map":"flags","op":"del","key":"k"}"#, "duplicate_field"),
            (#"[{"map":"hosts","op":"set","key":"a","value":"1"},{"map":"hosts","op":"set","key":"b"}]"#, "missing_field"),
            (#"[{"map":"hosts","op":"set","key":"a","value":"1"}, 5]"#, "bad_json"), (#"{"map":"hosts","op":"set","key":"k","value":"v"} {}"#, "bad_json"),
            (#"{"map":"hosts","op":"set","key":"k","value":"v""#, "bad_json"), (#"{"map":"hosts","op":"set","key":"\ud800","value":"v"}"#, "bad_json"),
            (#"{"map":"hosts","op":"set","key":"\udc00x","value":"v"}"#, "bad_json"), (#"{"map":"hosts","op":"set","key":"k","value":"v","x":01}"#, "bad_json"),
            ("{\"map\":\"hosts\",\"op\":\"set\",\"key\":\"raw\nnewline\",\"value\":\"v\"}", "bad_json"),
            (#"{"m\u0061p":"hosts","op":"del","key":"k"}"#, "bad_json"),
            ("", "bad_json"), ("   ", "bad_json"),
            (
                #"{"map":"hosts","op":"del","key":"k","x":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}"#,
                "too_deep"
            ),
        ])
    func invalid(text: String, label: String) {
        let (changes, failure) = decode(text)
        #expect(changes.isEmpty)
        #expect(failure?.label == label, "\(text): \(String(describing: failure))")
    }

    @Test("invalid UTF-8 anywhere in a string is refused")
    func invalidUTF8() {
        var bytes = Array(#"{"map":"hosts","op":"set","key":"k","value":"v"#.utf8)
        bytes += [0xC3, 0x28] + Array(#""}"#.utf8)
        #expect(decodeBytes(bytes).1?.label == "invalid_utf8")
        #expect(decodeBytes([0xFF, 0xFE]).1?.label == "bad_json")
    }

    @Test("kv messages: key is the map key, a null value deletes")
    func keyValue() {
        #expect(
            decodeBytes(Array("be_api".utf8), key: Array("api.example.com".utf8), format: .kv(map: 1)).0 == [
                DecodedChange(map: 1, key: "api.example.com", value: "be_api")
            ])
        #expect(decodeBytes(nil, key: Array("gone".utf8), format: .kv(map: 0)).0 == [DecodedChange(map: 0, key: "gone", value: nil)])
        #expect(decodeBytes(Array("v".utf8), key: nil, format: .kv(map: 0)).1?.label == "missing_key")
        #expect(decodeBytes(Array("v".utf8), key: [0xFF], format: .kv(map: 0)).1?.label == "invalid_utf8")
        #expect(decodeBytes(nil).1?.label == "tombstone")
    }

    /// ASCII is recognised a word at a time: a byte at or above 0x80 at any position, in a word
    /// or in the tail after the last whole word, must reach the full validation.
    @Test("text is validated as UTF-8 wherever a non-ASCII byte sits, in keys and in JSON strings")
    func utf8AtEveryPosition() {
        for length in 0..<20 {
            let ascii = Array(String(repeating: "k", count: length).utf8)
            #expect(validUTF8String(ascii) == String(repeating: "k", count: length))
            for position in 0...length {
                var valid = ascii
                valid.insert(contentsOf: Array("é".utf8), at: position)
                #expect(validUTF8String(valid) == String(decoding: valid, as: UTF8.self))
                for bad: [UInt8] in [[0xFF], [0xC3], [0xC3, 0x28], [0xE2, 0x82], [0xC0, 0xAF], [0xED, 0xA0, 0x80]] {
                    var invalid = ascii
                    invalid.insert(contentsOf: bad, at: position)
                    #expect(validUTF8String(invalid) == nil, "\(invalid)")
                    #expect(decodeBytes(Array("v".utf8), key: invalid, format: .kv(map: 0)).1?.label == "invalid_utf8")
                    let json = Array(#"{"map":"hosts","op":"set","key":""#.utf8) + invalid + Array(#"","value":"v"}"#.utf8)
                    #expect(decodeBytes(json).1?.label == "invalid_utf8")
                }
            }
        }
    }

    func validUTF8String(_ bytes: [UInt8]) -> String? {
        bytes.withUnsafeBytes { Events.validUTF8String($0) }
    }

    @Test("random bytes never crash the decoder")
    func randomBytes() {
        var generator = SystemRandomNumberGenerator()
        let alphabet = Array(#"{}[]":,\ ntrufalse0123456789-.eE"mapopkeyvaluesetdelhosts"#.utf8) + [0x00, 0x0A, 0xC3, 0xFF]
        for _ in 0..<20000 {
            let length = Int.random(in: 0..<64, using: &generator)
            let bytes = (0..<length).map { _ in alphabet.randomElement(using: &generator)! }
            _ = decodeBytes(bytes)
        }
    }
}

func withOptional<T>(_ bytes: [UInt8]?, _ body: (UnsafeRawBufferPointer?) -> T) -> T {
    guard let bytes else { return body(nil) }
    return bytes.withUnsafeBytes { body($0) }
}
