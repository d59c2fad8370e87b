/// A strict RFC 8259 reader over a message's bytes, for the few shapes events take. Strings are
/// checked (valid UTF-8, no raw control characters, escapes including surrogate pairs), nesting
/// is skipped without recursion and limited in depth, so no input can crash or exhaust it.
struct JSONReader {
    /// A string as it appeared: its raw bytes when it had no escapes, else its decoded bytes.
    enum RawString {
        case plain(UnsafeRawBufferPointer)
        case escaped([UInt8])

        /// The text, or nil when it is not valid UTF-8.
        var text: String? {
            switch self {
            case .plain(let bytes): return validUTF8String(bytes)
            case .escaped(let bytes): return bytes.withUnsafeBytes { validUTF8String($0) }
            }
        }
    }

    static let maximumDepth = 64

    private let bytes: UnsafeRawBufferPointer
    private(set) var index = 0
    /// Why the last read returned nil.
    private(set) var lastFailure: DecodeFailure?

    init(_ bytes: UnsafeRawBufferPointer) {
        self.bytes = bytes
    }

    var atEnd: Bool { index >= bytes.count }

    func peek() -> UInt8? { index < bytes.count ? bytes[index] : nil }

    mutating func advance() { index += 1 }

    mutating func consume(_ byte: UInt8) -> Bool {
        guard peek() == byte else { return false }
        index += 1
        return true
    }

    mutating func skipWhitespace() {
        while index < bytes.count {
            switch bytes[index] {
            case 0x20, 0x09, 0x0A, 0x0D: index += 1
            default: return
            }
        }
    }

    func failure(_ label: String, _ reason: String) -> DecodeFailure {
        DecodeFailure(label, "\(reason) (at byte \(index))")
    }

    /// Reads a string starting at the current `"`.
    mutating func readRawString() -> RawString? {
        guard consume(UInt8(ascii: "\"")) else {
            lastFailure = failure("bad_field", "expected a string")
            return nil
        }
        let start = index
        // Fast path: no escapes.
        while index < bytes.count {
            let byte = bytes[index]
            if byte == UInt8(ascii: "\"") {
                let slice = UnsafeRawBufferPointer(rebasing: bytes[start..<index])
                index += 1
                return .plain(slice)
            }
            if byte == UInt8(ascii: "\\") { break }
            if byte < 0x20 {
                lastFailure = failure("bad_json", "a control character inside a string must be escaped")
                return nil
            }
            index += 1
        }
        guard index < bytes.count else {
            lastFailure = failure("bad_json", "unterminated string")
            return nil
        }
        var decoded = Array(bytes[start..<index])
        while index < bytes.count {
            let byte = bytes[index]
            if byte == UInt8(ascii: "\"") {
                index += 1
                return .escaped(decoded)
            }
            if byte < 0x20 {
                lastFailure = failure("bad_json", "a control character inside a string must be escaped")
                return nil
            }
            if byte != UInt8(ascii: "\\") {
                decoded.append(byte)
                index += 1
                continue
            }
            index += 1
            guard let escape = peek() else { break }
            index += 1
            switch escape {
            case UInt8(ascii: "\""): decoded.append(0x22)
            case UInt8(ascii: "\\"): decoded.append(0x5C)
            case UInt8(ascii: "/"): decoded.append(0x2F)
            case UInt8(ascii: "b"): decoded.append(0x08)
            case UInt8(ascii: "f"): decoded.append(0x0C)
            case UInt8(ascii: "n"): decoded.append(0x0A)
            case UInt8(ascii: "r"): decoded.append(0x0D)
            case UInt8(ascii: "t"): decoded.append(0x09)
            case UInt8(ascii: "u"):
                guard var scalar = readHex4() else {
                    lastFailure = failure("bad_json", "bad \\u escape")
                    return nil
                }
                if (0xD800...0xDBFF).contains(scalar) {
                    guard consume(UInt8(ascii: "\\")), consume(UInt8(ascii: "u")), let low = readHex4(), (0xDC00...0xDFFF).contains(low) else {
                        lastFailure = failure("bad_json", "a high surrogate escape without its low surrogate")
                        return nil
                    }
                    scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                } else if (0xDC00...0xDFFF).contains(scalar) {
                    lastFailure = failure("bad_json", "a lone low surrogate escape")
                    return nil
                }
                decoded.append(contentsOf: String(Character(Unicode.Scalar(scalar)!)).utf8)
            default:
                lastFailure = failure("bad_json", "unknown escape")
                return nil
            }
        }
        lastFailure = failure("bad_json", "unterminated string")
        return nil
    }

    private mutating func readHex4() -> UInt32? {
        guard index + 4 <= bytes.count else { return nil }
        var value: UInt32 = 0
        for _ in 0..<4 {
            let byte = bytes[index]
            let digit: UInt32
            switch byte {
            case 0x30...0x39: digit = UInt32(byte - 0x30)
            case 0x41...0x46: digit = UInt32(byte - 0x41 + 10)
            case 0x61...0x66: digit = UInt32(byte - 0x61 + 10)
            default: return nil
            }
            value = value << 4 | digit
            index += 1
        }
        return value
    }

    /// Skips any JSON value (checking it), returning why it is malformed.
    mutating func skipValue() -> DecodeFailure? {
        // Containers still open: true for an object, false for an array.
        var open: [Bool] = []
        var expectValue = true
        while true {
            skipWhitespace()
            if expectValue {
                guard let byte = peek() else { return failure("bad_json", "unexpected end of data") }
                switch byte {
                case UInt8(ascii: "{"), UInt8(ascii: "["):
                    guard open.count < Self.maximumDepth else { return failure("too_deep", "nesting deeper than \(Self.maximumDepth)") }
                    index += 1
                    let isObject = byte == UInt8(ascii: "{")
                    open.append(isObject)
                    skipWhitespace()
                    if consume(isObject ? UInt8(ascii: "}") : UInt8(ascii: "]")) {
                        open.removeLast()
                        expectValue = false
                    } else if isObject {
                        guard readRawString() != nil else { return lastFailure! }
                        skipWhitespace()
                        guard consume(UInt8(ascii: ":")) else { return failure("bad_json", "expected ':'") }
                    }
                    if open.isEmpty && !expectValue { return nil }
                    continue
                case UInt8(ascii: "\""):
                    guard readRawString() != nil else { return lastFailure! }
                case UInt8(ascii: "t"): guard literal("true") else { return failure("bad_json", "bad literal") }
                case UInt8(ascii: "f"): guard literal("false") else { return failure("bad_json", "bad literal") }
                case UInt8(ascii: "n"): guard literal("null") else { return failure("bad_json", "bad literal") }
                case UInt8(ascii: "-"), 0x30...0x39: guard number() else { return failure("bad_json", "bad number") }
                default: return failure("bad_json", "unexpected character")
                }
                expectValue = false
                if open.isEmpty { return nil }
            } else {
                guard let inObject = open.last else { return nil }
                if consume(UInt8(ascii: ",")) {
                    if inObject {
                        skipWhitespace()
                        guard readRawString() != nil else { return lastFailure! }
                        skipWhitespace()
                        guard consume(UInt8(ascii: ":")) else { return failure("bad_json", "expected ':'") }
                    }
                    expectValue = true
                } else if consume(inObject ? UInt8(ascii: "}") : UInt8(ascii: "]")) {
                    open.removeLast()
                    if open.isEmpty { return nil }
                } else {
                    return failure("bad_json", "expected ',' or the end of a container")
                }
            }
        }
    }

    private mutating func literal(_ word: StaticString) -> Bool {
        let count = word.utf8CodeUnitCount
        guard index + count <= bytes.count else { return false }
        for offset in 0..<count where bytes[index + offset] != word.utf8Start[offset] { return false }
        index += count
        return true
    }

    private mutating func number() -> Bool {
        func digits() -> Int {
            let start = index
            while index < bytes.count, (0x30...0x39).contains(bytes[index]) { index += 1 }
            return index - start
        }
        _ = consume(UInt8(ascii: "-"))
        if consume(0x30) {
            // A leading zero stands alone.
        } else if digits() == 0 {
            return false
        }
        if consume(UInt8(ascii: ".")) && digits() == 0 { return false }
        if consume(UInt8(ascii: "e")) || consume(UInt8(ascii: "E")) {
            if !consume(UInt8(ascii: "+")) { _ = consume(UInt8(ascii: "-")) }
            if digits() == 0 { return false }
        }
        return true
    }
}
