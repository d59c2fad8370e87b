/// A map key, compared and hashed byte for byte as HAProxy compares keys.
///
/// Swift's `String` equality treats canonically equivalent Unicode sequences as equal
/// (`"é"` and `"e\u{301}"`); HAProxy does not, so a desired state keyed by `String` could merge two
/// keys HAProxy keeps apart. `MapKey` keeps the original UTF-8 bytes and compares exactly those.
///
/// A key hashes its bytes once, when it is made: the compaction, the coalescer, the desired
/// contents (``MapContents``) and every dictionary keyed by it reuse ``hashCode`` rather than
/// hash the bytes again (a change used to be hashed byte by byte four times on its way to HAProxy).
public struct MapKey: Hashable, Sendable, CustomStringConvertible {
    public let string: String
    /// ``hashCode(of:)`` of the key's bytes.
    public let hashCode: UInt32

    public init(_ string: String) {
        var string = string
        string.makeContiguousUTF8()
        self.string = string
        hashCode = withUTF8Bytes(string) { Self.hashCode(of: $0) }
    }

    /// A key whose hash is known: the desired contents keep every key's (``MapContents``), so
    /// listing them hashes nothing. `string` is a native string (contiguous UTF-8).
    @usableFromInline
    package init(_ string: String, hashCode: UInt32) {
        self.string = string
        self.hashCode = hashCode
    }

    /// A key read as bytes (from HAProxy's answers); bytes that are not UTF-8 are repaired, as
    /// reading them into a `String` always did.
    public init(bytes: UnsafeBufferPointer<UInt8>) {
        self.init(String(decoding: bytes, as: UTF8.self))
    }

    /// The hash of a key's bytes: seeded per process (`Hasher`), so keys chosen to collide cannot
    /// be planned from outside.
    @inlinable
    public static func hashCode(of bytes: UnsafeBufferPointer<UInt8>) -> UInt32 {
        var hasher = Hasher()
        hasher.combine(bytes: UnsafeRawBufferPointer(bytes))
        return UInt32(truncatingIfNeeded: hasher.finalize())
    }

    public var utf8Count: Int { string.utf8.count }

    public var description: String { string }

    public static func == (lhs: MapKey, rhs: MapKey) -> Bool {
        lhs.hashCode == rhs.hashCode && bytesEqual(lhs.string, rhs.string)
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(hashCode)
    }
}

/// Calls `body` with the string's UTF-8 bytes: in place when they are contiguous (every native
/// string), else from a contiguous copy. Going through `String.UTF8View` byte by byte instead
/// costs a retain and a bounds check per byte, on paths that touch millions of entries.
@inlinable
public func withUTF8Bytes<R>(_ string: String, _ body: (UnsafeBufferPointer<UInt8>) throws -> R) rethrows -> R {
    if let result = try string.utf8.withContiguousStorageIfAvailable(body) { return result }
    var copy = string
    return try copy.withUTF8(body)
}

/// Whether two buffers hold the same bytes.
@inlinable
public func sameBytes(_ lhs: UnsafeBufferPointer<UInt8>, _ rhs: UnsafeBufferPointer<UInt8>) -> Bool {
    lhs.count == rhs.count && (lhs.isEmpty || memcmpBytes(lhs.baseAddress!, rhs.baseAddress!, lhs.count))
}

/// Whether two strings hold the same UTF-8 bytes (not merely canonically equivalent text).
@inlinable
public func bytesEqual(_ lhs: String, _ rhs: String) -> Bool {
    guard lhs.utf8.count == rhs.utf8.count else { return false }
    return withUTF8Bytes(lhs) { a in withUTF8Bytes(rhs) { b in sameBytes(a, b) } }
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
