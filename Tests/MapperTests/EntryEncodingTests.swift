import Core
import NIOCore
import Testing

@testable import Mapper

@Suite("Encoding and entry rules")
struct EntryEncodingTests {
    let rules = EntryRules.default

    @Test("every byte the CLI interprets is escaped, everything else is verbatim")
    func escaping() {
        #expect(RuntimeCommand.escaped("plain.example.com") == "plain.example.com")
        #expect(RuntimeCommand.escaped("a b") == #"a\ b"#)
        #expect(RuntimeCommand.escaped("semi;colon") == #"semi\;colon"#)
        #expect(RuntimeCommand.escaped(#"back\slash"#) == #"back\\slash"#)
        #expect(RuntimeCommand.escaped("a <<") == #"a\ \<\<"#)
        #expect(RuntimeCommand.escaped("#hash") == "#hash")
        #expect(RuntimeCommand.escaped("ünïcødé ✓") == #"ünïcødé\ ✓"#)
    }

    @Test("commands are single lines with escaped arguments")
    func commandLines() {
        #expect(String(buffer: RuntimeCommand.set("/m.map", key: "k;1", value: "v 2")) == "set map /m.map k\\;1 v\\ 2\n")
        #expect(String(buffer: RuntimeCommand.del("/m.map", key: "k")) == "del map /m.map k\n")
        #expect(String(buffer: RuntimeCommand.add("/m.map", key: "k", value: "v", version: 3)) == "add map @3 /m.map k v\n")
        #expect(String(buffer: RuntimeCommand.commit("/m.map", version: 3)) == "commit map @3 /m.map\n")
        #expect(String(buffer: RuntimeCommand.showMap("/a b.map")) == "show map /a\\ b.map\n")
    }

    @Test("keys and values HAProxy can hold and reload pass")
    func validEntries() {
        for (key, value) in [
            ("api.example.com", "be_api"), ("semi;colon", "v;v"), (#"back\slash"#, #"a\b"#), ("#hash", "#v"),
            ("ünïcødé", "välue ✓"), ("<<", "<<"), ("k", "value with inner spaces"), ("/test1", "-"),
        ] {
            #expect(rules.check(key: key, value: value) == nil, "\(key) \(value)")
        }
    }

    @Test("what cannot be sent or stored exactly is refused, with its reason")
    func invalidEntries() {
        #expect(rules.check(key: "", value: "v") == .empty(.key))
        #expect(rules.check(key: "k", value: "") == .empty(.value))
        #expect(rules.check(key: "a b", value: "v") == .spaceInKey)
        #expect(rules.check(key: "k", value: " v") == .surroundingSpace)
        #expect(rules.check(key: "k", value: "v ") == .surroundingSpace)
        #expect(rules.check(key: "k\n", value: "v") == .controlCharacter(.key, offset: 1))
        #expect(rules.check(key: "k", value: "v\nclear map /other") == .controlCharacter(.value, offset: 1))
        #expect(rules.check(key: "k", value: "v\r") == .controlCharacter(.value, offset: 1))
        #expect(rules.check(key: "k\t", value: "v") == .controlCharacter(.key, offset: 1))
        #expect(rules.check(key: "k\u{0}", value: "v") == .controlCharacter(.key, offset: 1))
        #expect(rules.check(key: "k", value: "a\u{7F}") == .controlCharacter(.value, offset: 1))
        #expect(rules.check(key: "k\u{85}", value: "v") == .controlCharacter(.key, offset: 1))
        #expect(rules.check(key: "#0x55aa", value: "v") == .entryReference)
        let long = String(repeating: "x", count: rules.maxEntryBytes)
        #expect(rules.check(key: long, value: "v") == .tooLong(bytes: long.utf8.count + 1, limit: rules.maxEntryBytes))
        #expect(
            rules.check(key: String(repeating: "y", count: rules.maxEntryBytes + 1)) == .tooLong(bytes: rules.maxEntryBytes + 1, limit: rules.maxEntryBytes))
    }

    @Test("the longest valid entry, escaped at worst, still fits one buffer")
    func limitFitsBuffer() {
        for bufsize in [4096, 16384, 65536] {
            let rules = EntryRules(bufsize: bufsize)
            let half = rules.maxEntryBytes / 2
            let key = String(repeating: ";", count: half)
            let value = String(repeating: "\\", count: rules.maxEntryBytes - half)
            #expect(rules.check(key: key, value: value) == nil)
            let command = RuntimeCommand.set("/etc/haproxy/maps/some-long-map-name.map", key: key, value: value)
            #expect(command.readableBytes < bufsize - 1024, "bufsize \(bufsize)")
        }
    }

    @Test("payload chunks stay within budget and carry every entry once, in order")
    func chunking() {
        var chunker = PayloadChunker(map: "/m.map", version: 7, budget: 1000)
        let entries = (0..<500).map { ("/test\($0)", String(repeating: "v", count: $0 % 40 + 1)) }
        for (key, value) in entries { chunker.append(key: key, value: value) }
        let chunks = chunker.finish()
        #expect(chunks.count > 1)
        var next = 0
        for chunk in chunks {
            #expect(chunk.bytes.readableBytes <= 1000)
            #expect(chunk.entries.lowerBound == next)
            next = chunk.entries.upperBound
            let text = String(buffer: chunk.bytes)
            #expect(text.hasPrefix("add map @7 /m.map <<\n"))
            #expect(text.hasSuffix("\n\n"))
            let lines = text.split(separator: "\n").dropFirst()
            #expect(lines.count == chunk.entries.count)
            for (line, index) in zip(lines, chunk.entries) {
                #expect(line == "\(entries[index].0) \(entries[index].1)")
            }
        }
        #expect(next == entries.count)
    }

    @Test("keys compare byte for byte, not by Unicode equivalence")
    func byteKeys() {
        let composed = MapKey("caf\u{E9}")
        let decomposed = MapKey("cafe\u{301}")
        #expect("caf\u{E9}" == "cafe\u{301}")  // Swift's String equality...
        #expect(composed != decomposed)  // ...is not HAProxy's.
        #expect(Set([composed, decomposed]).count == 2)
        #expect(!bytesEqual("caf\u{E9}", "cafe\u{301}"))
        #expect(bytesEqual("same-bytes-longer-than-sixteen", "same-bytes-longer-than-sixteen"))
    }
}
