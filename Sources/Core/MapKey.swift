/// A map key, compared and hashed byte for byte as HAProxy compares keys.
///
/// Swift's `String` equality treats canonically equivalent Unicode sequences as equal
/// (`"é"` and `"e\u{301}"`); HAProxy does not, so a desired state keyed by `String` could merge two
/// keys HAProxy keeps apart. `MapKey` keeps the original UTF-8 bytes and compares exactly those.
public struct MapKey: Hashable, Sendable, CustomStringConvertible {
    public let string: String

    public init(_ string: String) {
        var string = string
        string.makeContiguousUTF8()
        self.string = string
    }

    public var utf8Count: Int { string.utf8.count }

    public var description: String { string }

    public static func == (lhs: MapKey, rhs: MapKey) -> Bool {
        bytesEqual(lhs.string, rhs.string)
    }

    public func hash(into hasher: inout Hasher) {
        let done: Void? = string.utf8.withContiguousStorageIfAvailable { hasher.combine(bytes: UnsafeRawBufferPointer($0)) }
        if done == nil {
            for byte in string.utf8 { hasher.combine(byte) }
        }
    }
}

/// Whether two strings hold the same UTF-8 bytes (not merely canonically equivalent text).
@inlinable
public func bytesEqual(_ lhs: String, _ rhs: String) -> Bool {
    let count = lhs.utf8.count
    guard count == rhs.utf8.count else { return false }
    let fast: Bool?? = lhs.utf8.withContiguousStorageIfAvailable { a in
        rhs.utf8.withContiguousStorageIfAvailable { b in
            count == 0 || memcmpBytes(a.baseAddress!, b.baseAddress!, count)
        }
    }
    if let fast, let fast { return fast }
    return lhs.utf8.elementsEqual(rhs.utf8)
}

@usableFromInline
func memcmpBytes(_ a: UnsafePointer<UInt8>, _ b: UnsafePointer<UInt8>, _ count: Int) -> Bool {
    var index = 0
    while index + 8 <= count {
        let x = UnsafeRawPointer(a + index).loadUnaligned(as: UInt64.self)
        let y = UnsafeRawPointer(b + index).loadUnaligned(as: UInt64.self)
        if x != y { return false }
        index += 8
    }
    while index < count {
        if a[index] != b[index] { return false }
        index += 1
    }
    return true
}
