#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The syntax HAProxy 2.6 accepts for typed keys and values, as measured on this machine: the
/// bridge is at least as strict, so nothing it sends is refused or, worse, silently ignored.
enum TypeSyntax {
    /// `[+-]?[0-9]+`: what a `_int` map's values accept (`0x10`, `1.5`, `1e3`, `12abc` are refused).
    static func isInteger(_ text: String) -> Bool {
        var digits = text.utf8[...]
        if let first = digits.first, first == UInt8(ascii: "+") || first == UInt8(ascii: "-") { digits = digits.dropFirst() }
        return !digits.isEmpty && digits.allSatisfy { $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }
    }

    /// An `int` map key: `-?[0-9]+`, or a range `a:b`, `:b`, `a:` with a <= b (`+7` is refused).
    static func isIntegerOrRange(_ text: String) -> Bool {
        func plain(_ part: Substring) -> Int64? {
            var digits = part.utf8[...]
            if digits.first == UInt8(ascii: "-") { digits = digits.dropFirst() }
            guard !digits.isEmpty, digits.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }) else { return nil }
            return Int64(part)
        }
        let parts = text.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false)
        if parts.count == 1 { return plain(parts[0]) != nil }
        switch (parts[0].isEmpty ? nil : plain(parts[0]), parts[1].isEmpty ? nil : plain(parts[1])) {
        case (let low?, let high?): return low <= high
        case (.some, nil): return parts[1].isEmpty
        case (nil, .some): return parts[0].isEmpty
        case (nil, nil): return false
        }
    }

    /// An IPv4 or IPv6 address, optionally with a prefix length (or, for IPv4, a dotted mask).
    static func isAddressOrNetwork(_ text: String) -> Bool {
        let parts = text.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false)
        let address = String(parts[0])
        if isIPv4(address) {
            guard parts.count == 2 else { return true }
            if let bits = Int(parts[1]), parts[1].utf8.allSatisfy({ $0 >= 48 && $0 <= 57 }) { return bits <= 32 }
            return isContiguousMask(String(parts[1]))
        }
        if isIPv6(address) {
            guard parts.count == 2 else { return true }
            guard let bits = Int(parts[1]), parts[1].utf8.allSatisfy({ $0 >= 48 && $0 <= 57 }) else { return false }
            return bits <= 128
        }
        return false
    }

    static func isIPv4(_ text: String) -> Bool {
        // Exactly four decimal parts of at most three digits, each 0...255 (`10.1` and `0x0a000001` are refused).
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4 else { return false }
        return parts.allSatisfy { part in
            !part.isEmpty && part.utf8.count <= 3 && part.utf8.allSatisfy { $0 >= 48 && $0 <= 57 } && Int(part)! <= 255
        }
    }

    static func isIPv6(_ text: String) -> Bool {
        guard text.contains(":") else { return false }
        var storage = in6_addr()
        return inet_pton(AF_INET6, text, &storage) == 1
    }

    static func isContiguousMask(_ text: String) -> Bool {
        guard isIPv4(text) else { return false }
        let value = text.split(separator: ".").reduce(UInt32(0)) { $0 << 8 | UInt32($1)! }
        // A mask is ones then zeros: its complement plus one is a power of two (or zero).
        let inverted = ~value
        return inverted & (inverted &+ 1) == 0
    }
}
