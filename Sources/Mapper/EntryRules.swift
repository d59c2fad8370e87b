import Core

/// Why a key or value cannot be given to HAProxy safely and exactly.
public enum EntryDefect: Sendable, Equatable, CustomStringConvertible {
    public enum Field: String, Sendable { case key, value }

    case empty(Field)
    /// A newline, carriage return, NUL, tab or other C0/C1 control character, or DEL.
    case controlCharacter(Field, offset: Int)
    /// A space in a key: HAProxy's map files, `show map` and payloads all end the key at the first
    /// space (an ACL pattern keeps it, but `show acl` could not be told from a value then).
    case spaceInKey
    /// Leading or trailing spaces in a value: HAProxy strips them when it loads a map file.
    case surroundingSpace
    /// A key starting with `#0x`: `set map`/`del map` read it as an entry reference, not a key.
    case entryReference
    /// Longer than one runtime-API command or map-file line may be.
    case tooLong(bytes: Int, limit: Int)
    /// The bytes are not valid UTF-8.
    case invalidUTF8(Field)
    /// Not what the map's type accepts (an address for `ip`, an integer for `int`...).
    case wrongType(Field, expected: String)

    public var description: String {
        switch self {
        case .empty(let field): return "empty \(field.rawValue)"
        case .controlCharacter(let field, let offset):
            return "\(field.rawValue) contains a control character (newline, tab, NUL...) at byte \(offset)"
        case .spaceInKey: return "key contains a space (HAProxy map keys end at the first space)"
        case .surroundingSpace: return "value starts or ends with a space (HAProxy strips it when loading the map file)"
        case .entryReference: return "key starts with '#0x', which HAProxy reads as an entry reference"
        case .tooLong(let bytes, let limit): return "entry is \(bytes) bytes, over the limit of \(limit)"
        case .invalidUTF8(let field): return "\(field.rawValue) is not valid UTF-8"
        case .wrongType(let field, let expected): return "\(field.rawValue) is not \(expected)"
        }
    }

    /// A short, stable label for metrics and dead-letter headers.
    public var label: String {
        switch self {
        case .empty: return "empty"
        case .controlCharacter: return "control_character"
        case .spaceInKey: return "space_in_key"
        case .surroundingSpace: return "surrounding_space"
        case .entryReference: return "entry_reference"
        case .tooLong: return "too_long"
        case .invalidUTF8: return "invalid_utf8"
        case .wrongType: return "wrong_type"
        }
    }
}

/// The rules every key and value must pass before anything is sent to HAProxy.
///
/// mapbridge accepts exactly what HAProxy can hold AND load back from its own map file after a
/// reload: the bridge writes that file, so anything the file cannot express would be silently
/// changed by the next reload. Within those rules, every byte reaches HAProxy verbatim: the
/// command encoder escapes what the CLI would otherwise interpret (spaces, `;`, `\`, `<`).
public struct EntryRules: Sendable, Equatable {
    /// The largest `key + value` in bytes. It keeps every escaped single-line command (which can
    /// double in size) and every payload line inside one `tune.bufsize` buffer.
    public var maxEntryBytes: Int

    /// The default for HAProxy's default `tune.bufsize` of 16384 bytes.
    public static let `default` = EntryRules(bufsize: 16384)

    public init(maxEntryBytes: Int) {
        self.maxEntryBytes = maxEntryBytes
    }

    /// Derives the entry limit from HAProxy's `tune.bufsize` and the longest map name a command
    /// carries (see ``entryLimit(bufsize:longestMapPath:)``).
    public init(bufsize: Int, longestMapPath: Int = 0) {
        self.maxEntryBytes = Self.entryLimit(bufsize: bufsize, longestMapPath: longestMapPath)
    }

    /// The largest entry (key + value bytes) whose longest command — `set map` or a versioned
    /// `add map @V`, with the map's name and the entry escaped, which may double it — fits one
    /// `tune.bufsize` buffer: at most (bufsize - 2048) / 2, less where a long map path takes the
    /// room (measured on HAProxy 2.6: a 16,341-byte command fits a 16,384-byte buffer, whatever
    /// `tune.maxrewrite` says). Below ``smallestUsefulLimit`` the configuration is refused.
    public static func entryLimit(bufsize: Int, longestMapPath: Int = 0) -> Int {
        max(0, min((bufsize - 2048) / 2, (bufsize - commandOverhead - longestMapPath) / 2))
    }

    /// The command words, version, spaces and line end around a map path and an entry.
    public static let commandOverhead = 64
    /// An entry limit under this is a configuration error.
    public static let smallestUsefulLimit = 256

    /// Returns the first defect of the key, or nil when it can be sent and stored exactly.
    public func check(key: String) -> EntryDefect? {
        // Over the string's contiguous bytes: iterating its UTF8View cost 1.5% of decoding an event.
        withUTF8Bytes(key) { bytes in
            if bytes.isEmpty { return .empty(.key) }
            if let offset = Self.firstControl(bytes) { return .controlCharacter(.key, offset: offset) }
            if bytes.contains(0x20) { return .spaceInKey }
            if bytes.starts(with: "#0x".utf8) { return .entryReference }
            if bytes.count > maxEntryBytes { return .tooLong(bytes: bytes.count, limit: maxEntryBytes) }
            return nil
        }
    }

    /// Returns the first defect of the pair, or nil when `set key value` can be sent and stored exactly.
    public func check(key: String, value: String) -> EntryDefect? {
        if let defect = check(key: key) { return defect }
        return withUTF8Bytes(value) { bytes in
            if bytes.isEmpty { return .empty(.value) }
            if let offset = Self.firstControl(bytes) { return .controlCharacter(.value, offset: offset) }
            if bytes.first == 0x20 || bytes.last == 0x20 { return .surroundingSpace }
            let total = key.utf8.count + bytes.count
            if total > maxEntryBytes { return .tooLong(bytes: total, limit: maxEntryBytes) }
            return nil
        }
    }

    /// Checks a change for a typed map: the rules above, then exactly what the map's match and
    /// value types accept in HAProxy (``TypeSyntax``). Checking before sending matters for typed
    /// values: HAProxy 2.4 to 3.0 answer `set map` with an unparsable value of a `_int`/`_ip` map
    /// with silence and keep the old value, and the value would fail the map file's next load.
    /// An ACL's pattern is checked as a key; its value (always empty) is not checked.
    public func check(key: String, value: String?, for map: MapDefinition) -> EntryDefect? {
        let value = map.kind == .acl ? nil : value
        if let defect = value.map({ check(key: key, value: $0) }) ?? check(key: key) { return defect }
        switch map.match {
        case .ip where !TypeSyntax.isAddressKey(key):
            return .wrongType(.key, expected: "an IPv4 or IPv6 address or network")
        case .int where !TypeSyntax.isIntegerKey(key):
            return .wrongType(.key, expected: "an integer or an integer range (a:b, a-b)")
        default:
            break
        }
        guard let value else { return nil }
        switch map.valueType {
        case .int where !TypeSyntax.isIntegerValue(value):
            return .wrongType(.value, expected: "an integer")
        case .ip where !TypeSyntax.isAddressValue(value):
            return .wrongType(.value, expected: "an IPv4 or IPv6 address (a network is not a value)")
        default:
            return nil
        }
    }

    /// The offset of the first C0 control (including tab, CR, LF, NUL), DEL, or C1 control
    /// (U+0080...U+009F, encoded as 0xC2 0x80...0x9F) in valid UTF-8.
    static func firstControl(_ bytes: UnsafeBufferPointer<UInt8>) -> Int? {
        var previous: UInt8 = 0
        var offset = 0
        for byte in bytes {
            if byte < 0x20 || byte == 0x7F { return offset }
            if previous == 0xC2 && byte >= 0x80 && byte <= 0x9F { return offset - 1 }
            previous = byte
            offset += 1
        }
        return nil
    }
}
