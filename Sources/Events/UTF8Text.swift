/// The bytes as a `String`, or nil when they are not valid UTF-8. ASCII, which nearly every key
/// and value is, is recognised eight bytes at a time and copied as it is; anything else goes
/// through the standard library's validation (which, unspecialised, looks up generic metadata
/// on every call: 7% of the consumer thread in W1 json).
func validUTF8String(_ bytes: UnsafeRawBufferPointer) -> String? {
    let count = bytes.count
    var index = 0
    var ascii = true
    while ascii && index + 8 <= count {
        ascii = bytes.loadUnaligned(fromByteOffset: index, as: UInt64.self) & 0x8080_8080_8080_8080 == 0
        index += 8
    }
    while ascii && index < count {
        ascii = bytes[index] < 0x80
        index += 1
    }
    return ascii ? String(decoding: bytes, as: UTF8.self) : String(validating: bytes, as: UTF8.self)
}
