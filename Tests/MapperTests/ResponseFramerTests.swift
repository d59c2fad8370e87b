import NIOCore
import TestSupport
import Testing

@testable import Mapper

@Suite("Response framing")
struct ResponseFramerTests {
    /// Feeds `stream` in pieces of `size` bytes and collects every answer.
    func frame(_ stream: String, pieces size: Int) -> (answers: [RuntimeResponse], partial: Bool) {
        var framer = ResponseFramer()
        var answers: [RuntimeResponse] = []
        let bytes = Array(stream.utf8)
        var offset = 0
        while offset < bytes.count {
            var piece = ByteBuffer(bytes: bytes[offset..<min(offset + size, bytes.count)])
            framer.append(&piece)
            while let answer = framer.next() { answers.append(answer) }
            offset += size
        }
        return (answers, framer.hasPartialAnswer)
    }

    static let stream =
        "\n> "  // set: silent success
        + "entry not found.\n\n> "  // set of a missing key
        + "Key not found.\n\n> "  // del of a missing key
        + "+ + + \n> "  // payload add: a prompt per line, then success
        + "+ + + Missing value for key 'x4'.\n\n> "  // payload add stopped at a bad line
        + "0x55b120a4e270 a.example.com be_a\n0x55b120a4e2c0 #hash x\n\n> "  // show map
        + "Unknown command, but maybe one of the following ones is a better match:\n  help [<command>]  : list\n  quit   : disconnect\n\n> "
        + "New version created: 1\n\n> "
        + "line one\n\nafter an empty line\n\n> "  // an empty line inside an answer is text

    static let expected: [(String, Int)] = [
        ("", 0), ("entry not found.", 0), ("Key not found.", 0), ("", 3), ("Missing value for key 'x4'.", 3),
        ("0x55b120a4e270 a.example.com be_a\n0x55b120a4e2c0 #hash x", 0),
        ("Unknown command, but maybe one of the following ones is a better match:\n  help [<command>]  : list\n  quit   : disconnect", 0),
        ("New version created: 1", 0), ("line one\n\nafter an empty line", 0),
    ]

    @Test("answers are the same however the stream is split across reads", arguments: [1, 2, 3, 5, 7, 64, 4096])
    func splitAnywhere(size: Int) {
        let (answers, partial) = frame(Self.stream, pieces: size)
        #expect(!partial)
        #expect(answers.map(\.text) == Self.expected.map(\.0))
        #expect(answers.map(\.payloadPrompts) == Self.expected.map(\.1))
    }

    @Test("an incomplete answer is held back, not delivered")
    func partialAnswers() {
        for cut in ["entry not found.", "entry not found.\n", "entry not found.\n\n", "entry not found.\n\n>", "+ ", "+ +", "+ + \n"] {
            let (answers, partial) = frame(cut, pieces: 1)
            #expect(answers.isEmpty, "\(cut.debugDescription)")
            #expect(partial, "\(cut.debugDescription)")
        }
    }

    @Test("a large answer is framed as one")
    func largeAnswer() {
        let lines = (0..<20000).map { "0x\($0) key\($0) value\($0)" }
        let (answers, partial) = frame(lines.joined(separator: "\n") + "\n\n> \n> ", pieces: 1500)
        #expect(!partial)
        #expect(answers.count == 2)
        #expect(Array(MapDump(body: answers[0].body)).count == 20000)
        #expect(answers[1].isEmpty)
    }

    @Test("show map lines parse into keys and values, values keep their inner spaces")
    func mapDump() {
        let body = ByteBuffer(string: "0x1 a.example.com be_a\n0x2 #hash x y z\n0x3 k;\\ v<<\n0x4 lonely")
        let entries = Array(MapDump(body: body))
        #expect(entries.map(\.key) == ["a.example.com", "#hash", "k;\\", "lonely"])
        #expect(entries.map(\.value) == ["be_a", "x y z", "v<<", ""])
        // The size hint counts the dump's lines.
        #expect(MapDump(body: body).sizeHint == 3)
        #expect(MapDump(body: ByteBuffer(string: "0x1 a b\n0x2 c d\n")).sizeHint == 2)
        #expect(MapDump(body: ByteBuffer()).sizeHint == 0)
        // A line that is not an entry: the Sequence's own estimate stays a lower bound.
        let odd = MapDump(body: ByteBuffer(string: "not-an-entry\nnor-this\n0x1 a b"))
        #expect(Array(odd).count == 1 && odd.underestimatedCount <= 1)
    }

    /// Comparisons and adoptions read the dump as bytes in place, and the iterator reads it
    /// through the same split: both must give, line for line, what a plain reading of the format
    /// gives (a reference, a space, the key, and after the next space the value), whatever the
    /// lines hold.
    @Test("show map lines split into keys and values as the format says, as bytes and as strings", arguments: 0..<20)
    func mapDumpBytes(seed: UInt64) {
        var random = SplitMix(seed: seed)
        let pieces = ["0x1", " ", "  ", "a", "key", "é", "\\", "#", "v", "x y", "\n", "\n\n", "\r", "\t"]
        var text = ""
        for _ in 0..<Int.random(in: 0..<200, using: &random) { text += pieces[Int.random(in: 0..<pieces.count, using: &random)] }
        if seed == 0 { text = "0x1 a.example.com be_a\n0x2 #hash x y z\n0x3 k;\\ v<<\n0x4 lonely\n\nnot-an-entry\n0x5  empty-key" }
        // The reference: each line, split at its first space (a line without one is not an entry),
        // then what follows split at its first space.
        var expected: [(key: String, value: String)] = []
        for line in text.utf8.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false) {
            guard let refEnd = line.firstIndex(of: UInt8(ascii: " ")) else { continue }
            let rest = line[line.index(after: refEnd)...]
            if let keyEnd = rest.firstIndex(of: UInt8(ascii: " ")) {
                expected.append((String(decoding: rest[..<keyEnd], as: UTF8.self), String(decoding: rest[rest.index(after: keyEnd)...], as: UTF8.self)))
            } else {
                expected.append((String(decoding: rest, as: UTF8.self), ""))
            }
        }
        let dump = MapDump(body: ByteBuffer(string: text))
        var read: [(key: String, value: String)] = []
        dump.forEachEntryBytes { key, value in read.append((String(decoding: key, as: UTF8.self), String(decoding: value, as: UTF8.self))) }
        let iterated = Array(dump)
        #expect(read.map(\.key) == expected.map(\.key), "\(text.debugDescription)")
        #expect(read.map(\.value) == expected.map(\.value), "\(text.debugDescription)")
        #expect(iterated.map(\.key) == expected.map(\.key), "\(text.debugDescription)")
        #expect(iterated.map(\.value) == expected.map(\.value), "\(text.debugDescription)")
    }

    @Test("show info and the map listing parse")
    func infoAndListing() throws {
        let info = try HAProxyInfo(parsing: "Name: HAProxy\nVersion: 2.6.12-1+deb12u4\nPid: 3476\nUptime_sec: 19\nStopping: 0\nStart_time_sec: 1795622992\n")
        #expect(info.pid == 3476)
        #expect(info.startTimeSec == 1_795_622_992)
        #expect(info.majorMinor == (2, 6))
        #expect(info.hasLinearSetAndDelete)
        #expect(!info.stopping)
        #expect(try !HAProxyInfo(parsing: "Version: 3.0.1\nPid: 1\n").hasLinearSetAndDelete)
        #expect(try HAProxyInfo(parsing: "Version: 2.6.1\nPid: 1\nStopping: 1\n").stopping)
        #expect(throws: MapperError.self) { try HAProxyInfo(parsing: "Unknown command") }

        let listing = LoadedMap.parseListing(
            "# id (file) description\n0 (/tmp/hx/hosts.map) pattern loaded from file '/tmp/hx/hosts.map' used by map at file 'h.cfg' line 11. curr_ver=0 next_ver=2 entry_cnt=10\n1 (/tmp/hx/ip.map) pattern loaded. curr_ver=1 next_ver=1 entry_cnt=0\n"
        )
        #expect(listing.map(\.path) == ["/tmp/hx/hosts.map", "/tmp/hx/ip.map"])
        #expect(listing.map(\.entryCount) == [10, 0])
        #expect(listing[0].nextVersion == 2)
    }
}
