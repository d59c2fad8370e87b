import Core
import NIOCore

/// Builds runtime-API command lines, escaping every argument so that nothing in a key, value or
/// map name can end a word, end the command, start another command or start a payload.
///
/// HAProxy's CLI splits words on spaces and tabs, separates commands with `;`, honours `\` as an
/// escape for the next character, and turns a command whose last word starts with `<<` into a
/// payload (measured on 2.6: `set map M k a\ <<` swallowed the next command as map data).
/// Escaping ` `, tab, `;`, `\` and `<` defeats all of these; keys and values containing newlines or
/// other control characters never get here (``EntryRules``).
public enum RuntimeCommand {
    static let allocator = ByteBufferAllocator()

    /// Appends `text` with every byte the CLI would interpret preceded by a backslash.
    public static func appendEscaped(_ text: String, to buffer: inout ByteBuffer) {
        let utf8 = text.utf8
        buffer.reserveCapacity(minimumWritableBytes: utf8.count + 8)
        for byte in utf8 {
            switch byte {
            case 0x20, 0x09, 0x3B, 0x5C, 0x3C:  // space, tab, ';', '\', '<'
                buffer.writeInteger(UInt8(ascii: "\\"))
            default:
                break
            }
            buffer.writeInteger(byte)
        }
    }

    /// The escaped form of `text`, as a string (for logs and tests).
    public static func escaped(_ text: String) -> String {
        var buffer = allocator.buffer(capacity: text.utf8.count * 2)
        appendEscaped(text, to: &buffer)
        return buffer.readString(length: buffer.readableBytes) ?? ""
    }

    static func line(_ words: [String], escaping escapedWords: [String] = []) -> ByteBuffer {
        var buffer = allocator.buffer(capacity: 64)
        var first = true
        for word in words {
            if !first { buffer.writeInteger(UInt8(ascii: " ")) }
            buffer.writeString(word)
            first = false
        }
        for word in escapedWords {
            buffer.writeInteger(UInt8(ascii: " "))
            appendEscaped(word, to: &buffer)
        }
        buffer.writeInteger(UInt8(ascii: "\n"))
        return buffer
    }

    /// `prompt`: switch the session to interactive mode (every answer then ends with `\n> `).
    public static func prompt() -> ByteBuffer { line(["prompt"]) }

    /// `set timeout cli <seconds>`: keep the session open while idle.
    public static func setTimeout(seconds: Int) -> ByteBuffer { line(["set", "timeout", "cli", String(seconds)]) }

    public static func showInfo() -> ByteBuffer { line(["show", "info"]) }

    /// `show map` without an argument: the list of maps HAProxy has loaded (`show acl`: its ACLs).
    public static func listMaps(kind: MapKind = .map) -> ByteBuffer { line(["show", kind.rawValue]) }

    /// `show map [@<version>] <map>`: every entry of the map (or of one of its versions).
    public static func showMap(_ map: String, version: Int? = nil, kind: MapKind = .map) -> ByteBuffer {
        line(["show", kind.rawValue] + (version.map { ["@\($0)"] } ?? []), escaping: [map])
    }

    /// `set map`: maps only (an ACL pattern has no value to change).
    public static func set(_ map: String, key: String, value: String) -> ByteBuffer {
        line(["set", "map"], escaping: [map, key, value])
    }

    public static func del(_ map: String, key: String, kind: MapKind = .map) -> ByteBuffer {
        line(["del", kind.rawValue], escaping: [map, key])
    }

    public static func add(_ map: String, key: String, value: String, version: Int? = nil) -> ByteBuffer {
        line(["add", "map"] + (version.map { ["@\($0)"] } ?? []), escaping: [map, key, value])
    }

    /// `add acl [@<version>] <acl> <pattern>`: HAProxy takes no payload for ACLs (2.4 to 3.3
    /// answer "'add acl' expects two parameters"), so patterns go one command each.
    public static func addPattern(_ acl: String, pattern: String, version: Int? = nil) -> ByteBuffer {
        line(["add", "acl"] + (version.map { ["@\($0)"] } ?? []), escaping: [acl, pattern])
    }

    public static func get(_ map: String, key: String) -> ByteBuffer {
        line(["get", "map"], escaping: [map, key])
    }

    public static func prepare(_ map: String, kind: MapKind = .map) -> ByteBuffer { line(["prepare", kind.rawValue], escaping: [map]) }

    public static func commit(_ map: String, version: Int, kind: MapKind = .map) -> ByteBuffer {
        line(["commit", kind.rawValue, "@\(version)"], escaping: [map])
    }

    public static func clear(_ map: String, version: Int? = nil, kind: MapKind = .map) -> ByteBuffer {
        line(["clear", kind.rawValue] + (version.map { ["@\($0)"] } ?? []), escaping: [map])
    }

    /// The first line of a payload add: `add map [@<version>] <map> <<`.
    static func payloadHeader(_ map: String, version: Int?) -> ByteBuffer {
        var buffer = allocator.buffer(capacity: 64)
        buffer.writeString(version.map { "add map @\($0) " } ?? "add map ")
        appendEscaped(map, to: &buffer)
        buffer.writeString(" <<\n")
        return buffer
    }
}

/// One payload `add map` command and the entries it carries.
public struct PayloadChunk: Sendable {
    /// The whole command: header line, one `key value` line per entry, and the empty line that ends it.
    public var bytes: ByteBuffer
    /// Which of the entries given to ``PayloadChunker`` this chunk carries, in order.
    public var entries: Range<Int>
}

/// Cuts a list of entries into payload `add map` commands that each fit in `budget` bytes.
///
/// In a payload the key ends at the first space and the value runs verbatim to the end of the
/// line: no escapes are honoured, which is why keys never contain spaces (``EntryRules``). A
/// command and its payload must fit in one `tune.bufsize` buffer, or HAProxy 2.6 drops the
/// connection without an answer (measured: 22,720 bytes lost silently), so chunks stay well under.
public struct PayloadChunker {
    public let budget: Int
    let header: ByteBuffer
    var current: ByteBuffer
    var firstEntry = 0
    var nextEntry = 0
    public private(set) var chunks: [PayloadChunk] = []

    public init(map: String, version: Int? = nil, budget: Int) {
        self.budget = budget
        self.header = RuntimeCommand.payloadHeader(map, version: version)
        self.current = header
        self.current.reserveCapacity(budget)
    }

    /// Adds the next entry; it goes into the current chunk, or starts a new one when it would not fit.
    public mutating func append(key: String, value: String) {
        let lineBytes = key.utf8.count + 1 + value.utf8.count + 1
        if nextEntry > firstEntry && current.readableBytes + lineBytes + 1 > budget {
            closeChunk()
        }
        current.writeString(key)
        current.writeInteger(UInt8(ascii: " "))
        current.writeString(value)
        current.writeInteger(UInt8(ascii: "\n"))
        nextEntry += 1
    }

    mutating func closeChunk() {
        guard nextEntry > firstEntry else { return }
        current.writeInteger(UInt8(ascii: "\n"))
        chunks.append(PayloadChunk(bytes: current, entries: firstEntry..<nextEntry))
        firstEntry = nextEntry
        current = header
        current.reserveCapacity(budget)
    }

    /// Closes the last chunk and returns them all.
    public mutating func finish() -> [PayloadChunk] {
        closeChunk()
        return chunks
    }
}
