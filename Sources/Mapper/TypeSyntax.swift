#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// What HAProxy accepts for typed keys and values: the parsers of HAProxy 2.4 to 3.3 (identical in
/// all of them: `pat_parse_int`, `pat_parse_ip`, `map_parse_int`, `map_parse_ip` and the helpers
/// they call), ported line for line, so that the bridge accepts exactly what HAProxy accepts, at
/// run time and when it loads the map file. A value HAProxy 2.4 to 3.0 cannot parse is answered
/// with silence on `set map` (the old value stays) and fails the next load of the file, so the
/// bridge must refuse it first. Proven against the real HAProxy by `TypeRulesAgainstHAProxyTests`.
enum TypeSyntax {
    /// An `_int` map's value (`map_parse_int`: `read_int64`, then nothing may follow): an optional
    /// sign and digits, possibly none (`+` and `-` read as 0); a number too large saturates.
    static func isIntegerValue(_ text: String) -> Bool {
        var digits = text.utf8[...]
        if let first = digits.first, first == UInt8(ascii: "+") || first == UInt8(ascii: "-") { digits = digits.dropFirst() }
        return digits.allSatisfy { $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }
    }

    /// An `int` map's key (`pat_parse_int`): a number, or a range around the first `:` or `-`
    /// (`a:b`, `a-b`, `:b`, `-b`, `a:`, `a-`) with a <= b; each number as `strl2llrc` reads it.
    static func isIntegerKey(_ text: String) -> Bool {
        let bytes = Array(text.utf8)
        guard !bytes.isEmpty else { return false }
        guard let separator = bytes.firstIndex(where: { $0 == UInt8(ascii: ":") || $0 == UInt8(ascii: "-") }) else {
            return strl2llrc(bytes[...]) != nil
        }
        let low = bytes[..<separator]
        let high = bytes[(separator + 1)...]
        if separator == 0 && !high.isEmpty { return strl2llrc(high) != nil }
        if high.isEmpty { return strl2llrc(low) != nil }
        guard let min = strl2llrc(low), let max = strl2llrc(high) else { return false }
        return min <= max
    }

    /// HAProxy's `strl2llrc`: an optional `-` and decimal digits (a lone `-` is 0), within 64 bits.
    static func strl2llrc(_ bytes: ArraySlice<UInt8>) -> Int64? {
        guard let first = bytes.first else { return nil }
        let negative = first == UInt8(ascii: "-")
        var value: Int64 = 0
        for byte in negative ? bytes.dropFirst() : bytes {
            guard byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") else { return nil }
            let digit = Int64(byte - UInt8(ascii: "0"))
            let (times, overflow) = value.multipliedReportingOverflow(by: 10)
            guard !overflow else { return nil }
            let (next, overflow2) = negative ? times.subtractingReportingOverflow(digit) : times.addingReportingOverflow(digit)
            guard !overflow2 else { return nil }
            value = next
        }
        return value
    }

    /// An `ip` map's key (`pat_parse_ip` at run time, where nothing is resolved): `str2net`, an
    /// IPv4 address with an optional `/bits` or dotted mask (any mask `inet_pton` reads), or
    /// `str62net`, an IPv6 address with an optional `/bits` up to 128.
    static func isAddressKey(_ text: String) -> Bool {
        isIPv4Network(text) || isIPv6Network(text)
    }

    static func isIPv4Network(_ text: String) -> Bool {
        var address = Substring(text)
        if let slash = text.lastIndex(of: "/") {
            address = text[..<slash]
            let mask = String(text[text.index(after: slash)...])
            if mask.contains(".") {
                guard isIPv4(mask) else { return false }
            } else {
                // strtol, as str2mask calls it.
                guard let bits = cNumber(mask, signed: true), bits <= 32 else { return false }
            }
        }
        return isIPv4(String(address))
    }

    static func isIPv6Network(_ text: String) -> Bool {
        var address = Substring(text)
        if let slash = text.lastIndex(of: "/") {
            address = text[..<slash]
            // strtoul, as str62net calls it.
            guard let bits = cNumber(String(text[text.index(after: slash)...]), signed: false), bits <= 128 else { return false }
        }
        return isIPv6(String(address))
    }

    /// A prefix length as HAProxy reads it with C's `strtol` (`signed`) or `strtoul`: leading
    /// blanks and a sign allowed, nothing after the digits, and the result compared as the
    /// `unsigned` HAProxy casts it to (so `-1` is huge). Nil when the text is empty or not all read.
    static func cNumber(_ text: String, signed: Bool) -> UInt32? {
        guard !text.isEmpty else { return nil }
        return text.withCString { pointer -> UInt32? in
            var end: UnsafeMutablePointer<CChar>?
            let value = signed ? UInt(bitPattern: strtol(pointer, &end, 10)) : strtoul(pointer, &end, 10)
            guard let end, end.pointee == 0 else { return nil }
            return UInt32(truncatingIfNeeded: value)
        }
    }

    /// An `_ip` map's value (`map_parse_ip`): what `buf2ip` reads (four decimal parts up to 255,
    /// leading zeros allowed, and anything after the fourth part ignored: `10.0.0.1/8` is read as
    /// `10.0.0.1`), else an IPv6 address (`buf2ip6`: no prefix length).
    static func isAddressValue(_ text: String) -> Bool {
        buf2ip(Array(text.utf8)) || (text.utf8.count <= Int(INET6_ADDRSTRLEN) && isIPv6(text))
    }

    /// HAProxy's `buf2ip`.
    static func buf2ip(_ bytes: [UInt8]) -> Bool {
        var part: UInt32 = 0
        var sawDigit = false
        var octets = 0
        for byte in bytes {
            if byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") {
                part = part * 10 + UInt32(byte - UInt8(ascii: "0"))
                if part > 255 { return false }
                if !sawDigit {
                    octets += 1
                    if octets > 4 { return false }
                    sawDigit = true
                }
            } else if byte == UInt8(ascii: ".") {
                guard sawDigit, octets != 4 else { return false }
                part = 0
                sawDigit = false
            } else {
                break
            }
        }
        return octets == 4
    }

    /// `inet_pton(AF_INET)`, as HAProxy calls it: four dotted decimal parts, no leading zeros.
    static func isIPv4(_ text: String) -> Bool {
        var storage = in_addr()
        return inet_pton(AF_INET, text, &storage) == 1
    }

    static func isIPv6(_ text: String) -> Bool {
        var storage = in6_addr()
        return inet_pton(AF_INET6, text, &storage) == 1
    }
}
