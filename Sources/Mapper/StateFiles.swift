import Core
import Dispatch

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A map's desired contents as stored on disk: entries with their owners' names, tombstones, and
/// the Kafka offsets (next offset to consume, per `topic:partition`) the contents reflect.
public struct StoredMap: Sendable, Equatable {
    public struct Entry: Sendable, Equatable {
        public var owner: String
        public var key: String
        public var value: String

        public init(owner: String, key: String, value: String) {
            self.owner = owner
            self.key = key
            self.value = value
        }
    }

    public var entries: [Entry] = []
    /// Keys removed, with the owner that removed them.
    public var tombstones: [(owner: String, key: String)] = []
    public var offsets: [String: Int64] = [:]
    /// The file's seal (its last line), when read from a file: names exactly the bytes read.
    public var seal: String?

    public init() {}

    public static func == (lhs: StoredMap, rhs: StoredMap) -> Bool {
        lhs.entries == rhs.entries && lhs.offsets == rhs.offsets
            && lhs.tombstones.map { "\($0.owner)\t\($0.key)" } == rhs.tombstones.map { "\($0.owner)\t\($0.key)" }
    }
}

/// Reading and writing map state atomically.
///
/// Two files per map can exist. The state file (in the state directory) holds entries with their
/// owners and the offsets they reflect, one `owner<TAB>key<TAB>value` line per entry and
/// `owner<TAB>key` per tombstone (keys and values hold no tab or newline: ``EntryRules``). The map
/// file is HAProxy's own `key value` format, loaded by HAProxy when it starts. Both are written
/// the same way: a temporary file in the same folder, fsync, rename over the old file, fsync of
/// the folder; a crash leaves either the old file or the new one, never a mix.
public enum StateFiles {
    /// Reads a state file; nil when it does not exist. A file that is not whole (empty, cut short,
    /// changed by hand: its last line does not count and hash what comes before it) is an error,
    /// never a smaller map.
    public static func readState(path: String) throws(MapperError) -> StoredMap? {
        guard let bytes = try readBytes(path) else { return nil }
        let body = try verifiedBodyBytes(bytes, path: path, kind: "state file")
        var stored = StoredMap()
        stored.seal = seal(of: bytes)
        // One String per run of lines with the same owner, not one per line.
        var owner = ""
        var ownerBytes: [UInt8] = []
        func name(_ bytes: UnsafeBufferPointer<UInt8>) -> String {
            if !ownerBytes.elementsEqual(bytes) {
                owner = String(decoding: bytes, as: UTF8.self)
                ownerBytes = Array(bytes)
            }
            return owner
        }
        try parseState(
            body, path: path, lines: { stored.entries.reserveCapacity($0) }, offsets: { stored.offsets = $0 },
            entry: { owner, key, value in
                stored.entries.append(.init(owner: name(owner), key: String(decoding: key, as: UTF8.self), value: String(decoding: value, as: UTF8.self)))
                return true
            },
            tombstone: { owner, key in stored.tombstones.append((name(owner), String(decoding: key, as: UTF8.self))) })
        return stored
    }

    /// Reads a state file straight into a map's contents, making no `String` per entry (a state
    /// file of millions of lines is read at every start); nil when the file does not exist.
    /// `owner` gives an owner name's id, or nil for a name it does not know (an error). The file's
    /// tombstones are not loaded, only counted.
    public static func readStateContents(
        path: String, owner: (String) -> MapContents.Owner?
    ) throws(MapperError) -> (contents: MapContents, offsets: [String: Int64], tombstones: Int, seal: String?)? {
        guard let bytes = try readBytes(path) else { return nil }
        let (body, expected) = try sealedBody(bytes, path: path, kind: "state file")
        // The hash is checked on another core while this one builds the contents (at millions
        // of entries the hash takes a tenth of the reading; neither waits for the other). A file
        // whose hash is wrong is damaged, whatever its parsing found.
        let hashed = ConcurrentHash(body)
        var contents = MapContents()
        var offsets: [String: Int64] = [:]
        var tombstones = 0
        // One look-up per run of lines with the same owner (a file holds a few dozen owners).
        var ownerBytes: [UInt8]?
        var ownerID = MapContents.unowned
        var unknown: String?
        let parsed = Result { () throws(MapperError) in
            try parseState(
                body, path: path, lines: { contents.reserve($0) }, offsets: { offsets = $0 },
                entry: { name, key, value in
                    if ownerBytes.map({ !$0.elementsEqual(name) }) ?? true {
                        let text = String(decoding: name, as: UTF8.self)
                        guard let id = owner(text) else {
                            unknown = text
                            return false
                        }
                        (ownerBytes, ownerID) = (Array(name), id)
                    }
                    contents.appendIfAbsent(key: key, value: value, owner: ownerID)
                    return true
                },
                tombstone: { _, _ in tombstones += 1 })
        }
        guard hashed.value() == expected else { throw damaged(path: path, kind: "state file", "its contents do not match its end line") }
        try parsed.get()
        if let unknown { throw MapperError(.stateFile, "\(path): unknown owner '\(unknown.prefix(120))'") }
        return (contents, offsets, tombstones, seal(of: bytes))
    }

    /// Goes through a state file's verified body byte by byte (not by Character: a state file has
    /// millions of lines): `lines` first with how many lines there are, `offsets` with its offsets,
    /// then each entry's owner, key and value bytes (until `entry` returns false) and each
    /// tombstone's owner and key bytes.
    static func parseState(
        _ body: ArraySlice<UInt8>, path: String, lines: (Int) -> Void, offsets: ([String: Int64]) -> Void,
        entry: (UnsafeBufferPointer<UInt8>, UnsafeBufferPointer<UInt8>, UnsafeBufferPointer<UInt8>) -> Bool,
        tombstone: (UnsafeBufferPointer<UInt8>, UnsafeBufferPointer<UInt8>) -> Void
    ) throws(MapperError) {
        var malformed: String?
        body.withUnsafeBufferPointer { buffer in
            let count = buffer.count
            var lineCount = 0
            for byte in buffer where byte == 0x0A { lineCount += 1 }
            lines(lineCount)
            func text(_ range: Range<Int>) -> String { String(decoding: UnsafeBufferPointer(rebasing: buffer[range]), as: UTF8.self) }
            func bytes(_ range: Range<Int>) -> UnsafeBufferPointer<UInt8> { UnsafeBufferPointer(rebasing: buffer[range]) }
            var start = 0
            while start < count {
                var end = start
                while end < count && buffer[end] != 0x0A { end += 1 }
                let line = start..<end
                start = end + 1
                guard !line.isEmpty else { continue }
                if buffer[line.lowerBound] == UInt8(ascii: "#") {
                    let content = text(line)
                    if content.hasPrefix("# offsets ") {
                        var found: [String: Int64] = [:]
                        for item in content.dropFirst("# offsets ".count).split(separator: " ") {
                            guard let equals = item.lastIndex(of: "="), let offset = Int64(item[item.index(after: equals)...]) else { continue }
                            found[String(item[..<equals])] = offset
                        }
                        offsets(found)
                    }
                    continue
                }
                guard let firstTab = line.first(where: { buffer[$0] == 0x09 }) else {
                    malformed = text(line)
                    return
                }
                let owner = bytes(line.lowerBound..<firstTab)
                let rest = (firstTab + 1)..<line.upperBound
                if let secondTab = rest.first(where: { buffer[$0] == 0x09 }) {
                    guard entry(owner, bytes(rest.lowerBound..<secondTab), bytes((secondTab + 1)..<line.upperBound)) else { return }
                } else {
                    tombstone(owner, bytes(rest))
                }
            }
        }
        if let malformed { throw MapperError(.stateFile, "\(path): malformed line '\(malformed.prefix(120))'") }
    }

    /// Reads an offsets file (`topic:partition offset` lines); nil when it does not exist. A file
    /// that is not whole is an error (see ``readState(path:)``).
    public static func readOffsets(path: String) throws(MapperError) -> [String: Int64]? {
        guard let text = try readSealed(path: path, kind: "offsets file") else { return nil }
        var offsets: [String: Int64] = [:]
        for line in lines(text) where !line.hasPrefix("#") {
            let fields = line.split(separator: " ")
            guard fields.count == 2, let offset = Int64(fields[1]) else {
                throw MapperError(.stateFile, "\(path): malformed line '\(line.prefix(120))'")
            }
            offsets[String(fields[0])] = offset
        }
        return offsets
    }

    /// The bytes of an offsets file.
    public static func offsetsFile(_ offsets: [String: Int64]) -> [UInt8] {
        var text = "# mapbridge offsets v2: per partition, the next offset to consume; every state file here reflects the events before it\n"
        for (name, offset) in offsets.sorted(by: { $0.key < $1.key }) { text += "\(name) \(offset)\n" }
        return sealed(Array(text.utf8))
    }

    /// `body` followed by its seal: a last line `# end <bytes> <fnv1a64>` that says how long the
    /// body is and what it hashes to, so that a file cut short or changed is told from a whole one.
    public static func sealed(_ body: [UInt8]) -> [UInt8] {
        var out = body
        out += sealLine(length: body.count, hash: fnv1a(body))
        return out
    }

    /// The last line of a sealed file whose body has this length and hash.
    static func sealLine(length: Int, hash: UInt64) -> [UInt8] {
        Array("# end \(length) \(String(hash, radix: 16))\n".utf8)
    }

    /// Appends the string's UTF-8 bytes at once (`+= string.utf8` goes byte by byte, retaining the
    /// string at each: most of the time storing a million entries took).
    @inline(__always)
    static func appendUTF8(_ string: String, to out: inout [UInt8]) {
        withUTF8Bytes(string) { out.append(contentsOf: $0) }
    }

    /// The body of a sealed file (see ``sealed(_:)``); nil when the file does not exist.
    public static func readSealed(path: String, kind: String) throws(MapperError) -> String? {
        guard let bytes = try readBytes(path) else { return nil }
        return try verifiedBody(bytes, path: path, kind: kind)
    }

    /// The seal (last line) of a sealed file, read without reading the file: it names the body's
    /// length and hash, so an unchanged seal is an unchanged file. Nil when there is no file.
    public static func seal(path: String) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { return nil }
        let size = Int(info.st_size)
        let length = min(size, 256)
        var tail = [UInt8](repeating: 0, count: length)
        let read = tail.withUnsafeMutableBytes { pread(fd, $0.baseAddress, length, off_t(size - length)) }
        guard read == length else { return nil }
        return seal(of: tail)
    }

    /// The seal (last line) of a sealed file's bytes.
    public static func seal<Bytes: BidirectionalCollection<UInt8>>(of bytes: Bytes) -> String? {
        guard let start = lastLineStart(bytes) else { return nil }
        return String(decoding: bytes[start..<bytes.index(before: bytes.endIndex)], as: UTF8.self)
    }

    /// Where the last line starts, in bytes that end with a newline; nil when they do not.
    static func lastLineStart<Bytes: BidirectionalCollection<UInt8>>(_ bytes: Bytes) -> Bytes.Index? {
        guard bytes.last == 0x0A else { return nil }
        let body = bytes.dropLast()
        return body.lastIndex(of: 0x0A).map { body.index(after: $0) } ?? body.startIndex
    }

    /// The body of a sealed file, or an error naming the file when its seal is missing or wrong.
    static func verifiedBody(_ bytes: [UInt8], path: String, kind: String) throws(MapperError) -> String {
        String(decoding: try verifiedBodyBytes(bytes, path: path, kind: kind), as: UTF8.self)
    }

    /// The body of a sealed file, as bytes (see ``verifiedBody(_:path:kind:)``): a slice of
    /// them, not a copy (a state file can be hundreds of megabytes).
    static func verifiedBodyBytes(_ bytes: [UInt8], path: String, kind: String) throws(MapperError) -> ArraySlice<UInt8> {
        let (body, hash) = try sealedBody(bytes, path: path, kind: kind)
        guard hash == hexHash(body) else { throw damaged(path: path, kind: kind, "its contents do not match its end line") }
        return body
    }

    /// The body of a sealed file whose end line names its length, and the hash that line names,
    /// still to be checked.
    static func sealedBody(_ bytes: [UInt8], path: String, kind: String) throws(MapperError) -> (body: ArraySlice<UInt8>, hash: Substring) {
        guard let lastLineStart = lastLineStart(bytes) else {
            throw damaged(path: path, kind: kind, bytes.isEmpty ? "empty" : "its last line is cut short")
        }
        let trailer = String(decoding: bytes[lastLineStart..<(bytes.count - 1)], as: UTF8.self).split(separator: " ")
        guard trailer.count == 4, trailer[0] == "#", trailer[1] == "end", let length = Int(trailer[2]) else {
            throw damaged(path: path, kind: kind, "no end line")
        }
        guard length == lastLineStart else { throw damaged(path: path, kind: kind, "its contents do not match its end line") }
        return (bytes[..<lastLineStart], trailer[3])
    }

    static func damaged(path: String, kind: String, _ why: String) -> MapperError {
        MapperError(
            .damagedState,
            "\(path): damaged \(kind) (\(why)); it is not used. Move the state directory away to start from HAProxy's live maps and the group's committed offsets"
        )
    }

    /// 64-bit FNV-1a of the bytes, in hexadecimal.
    static func hexHash(_ bytes: ArraySlice<UInt8>) -> String {
        String(bytes.withUnsafeBufferPointer { fnv1a($0) }, radix: 16)
    }

    static let fnvOffsetBasis: UInt64 = 0xcbf2_9ce4_8422_2325

    /// 64-bit FNV-1a, continued from `hash` (a file hashed piece by piece).
    static func fnv1a(_ bytes: [UInt8], continuing hash: UInt64 = fnvOffsetBasis) -> UInt64 {
        bytes.withUnsafeBufferPointer { fnv1a($0, continuing: hash) }
    }

    static func fnv1a(_ bytes: UnsafeBufferPointer<UInt8>, continuing hash: UInt64 = fnvOffsetBasis) -> UInt64 {
        var hash = hash
        for byte in bytes {
            hash ^= UInt64(byte)
            hash &*= 0x100_0000_01b3
        }
        return hash
    }

    /// The bytes of a state file.
    public static func stateFile(_ stored: StoredMap, title: String) -> [UInt8] {
        var files = Builder(title: title, offsets: stored.offsets, mapHeader: nil, capacity: stored.entries.count)
        for entry in stored.entries { files.append(owner: entry.owner, key: entry.key, value: entry.value) }
        for tombstone in stored.tombstones { files.appendTombstone(owner: tombstone.owner, key: tombstone.key) }
        return files.finish().state
    }

    /// The bytes of a HAProxy map file (or ACL file: patterns only) holding these entries, in
    /// order. A key starting with `#` is written after a space: HAProxy skips lines whose first
    /// character is `#`, and strips leading spaces before the key.
    public static func mapFile(_ entries: some Sequence<(key: MapKey, value: String)>, header: [String], kind: MapKind = .map) -> [UInt8] {
        var out = mapFileHeader(header, capacity: entries.underestimatedCount)
        for (key, value) in entries { appendMapLine(key: key.string, value: kind == .acl ? nil : value, to: &out) }
        return out
    }

    static func mapFileHeader(_ header: [String], capacity: Int) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(capacity * 40 + 256)
        for line in header { out += Array("# \(line)\n".utf8) }
        return out
    }

    /// One line of a map file (`key value`), or of an ACL file (`pattern`: HAProxy takes the whole
    /// line after its leading blanks as the pattern, so nothing may follow it).
    @inline(__always)
    static func appendMapLine(key: String, value: String?, to out: inout [UInt8]) {
        withUTF8Bytes(key) { key in
            guard let value else { return appendMapLine(key: key, value: nil, to: &out) }
            withUTF8Bytes(value) { appendMapLine(key: key, value: $0, to: &out) }
        }
    }

    @inline(__always)
    static func appendMapLine(key: UnsafeBufferPointer<UInt8>, value: UnsafeBufferPointer<UInt8>?, to out: inout [UInt8]) {
        if key.first == UInt8(ascii: "#") { out.append(0x20) }
        out.append(contentsOf: key)
        if let value {
            out.append(0x20)
            out.append(contentsOf: value)
        }
        out.append(0x0A)
    }

    /// A map's state file and, when asked for, its HAProxy map file, built together in one pass
    /// over the entries (each pass over a million heap-allocated strings costs a tenth of a second
    /// or more). Entries first, then tombstones (which only the state file holds).
    ///
    /// Built whole in memory, or streamed: ``takeBuffered()`` hands over what was built so far
    /// (to write it out) whenever ``isFull``, keeping the state file's running length and hash
    /// for its seal, so a map of millions of entries never lies in memory as bytes.
    public struct Builder {
        var state: [UInt8] = []
        var map: [UInt8]?
        /// The map file is an ACL file: patterns only, no values.
        let patternsOnly: Bool
        /// When streaming, how many bytes are buffered before ``isFull``.
        let bufferLimit: Int
        /// The state file's bytes already taken, and their hash.
        private var takenLength = 0
        private var takenHash = StateFiles.fnvOffsetBasis

        /// - Parameter bufferLimit: stream, taking what is built every this many bytes (nil:
        ///   build the files whole).
        public init(title: String, offsets: [String: Int64], mapHeader: [String]?, capacity: Int, kind: MapKind = .map, bufferLimit: Int? = nil) {
            patternsOnly = kind == .acl
            self.bufferLimit = bufferLimit ?? .max
            let expected = capacity * 48 + 256
            state.reserveCapacity(bufferLimit.map { min(expected, $0 + 4096) } ?? expected)
            state += Array("# mapbridge state v2: \(title)\n".utf8)
            state += Array("# offsets \(describeOffsets(offsets))\n".utf8)
            map = mapHeader.map { StateFiles.mapFileHeader($0, capacity: bufferLimit.map { min(capacity, $0 / 40) } ?? capacity) }
        }

        /// Enough is buffered to be taken (only when streaming).
        public var isFull: Bool { state.count + (map?.count ?? 0) >= bufferLimit }

        /// What was built since the last take: the state file's and the map file's next bytes.
        public mutating func takeBuffered() -> (state: [UInt8], map: [UInt8]?) {
            takenHash = StateFiles.fnv1a(state, continuing: takenHash)
            takenLength += state.count
            let capacity = state.capacity
            defer {
                state = []
                state.reserveCapacity(capacity)
                if map != nil {
                    map = []
                    map!.reserveCapacity(capacity)
                }
            }
            return (state, map)
        }

        public mutating func append(owner: String, key: String, value: String) {
            withUTF8Bytes(owner) { owner in
                withUTF8Bytes(key) { key in
                    withUTF8Bytes(value) { value in append(owner: owner, key: key, value: value) }
                }
            }
        }

        /// An entry, from its bytes (a map's contents: ``MapContents/Listing/forEachEntryBytes(_:)``).
        public mutating func append(owner: UnsafeBufferPointer<UInt8>, key: UnsafeBufferPointer<UInt8>, value: UnsafeBufferPointer<UInt8>) {
            state.append(contentsOf: owner)
            state.append(0x09)
            state.append(contentsOf: key)
            state.append(0x09)
            state.append(contentsOf: value)
            state.append(0x0A)
            if map != nil { StateFiles.appendMapLine(key: key, value: patternsOnly ? nil : value, to: &map!) }
        }

        public mutating func appendTombstone(owner: String, key: String) {
            StateFiles.appendUTF8(owner, to: &state)
            state.append(0x09)
            StateFiles.appendUTF8(key, to: &state)
            state.append(0x0A)
        }

        /// The rest of the sealed state file, and of the map file (the whole files when nothing
        /// was taken).
        public consuming func finish() -> (state: [UInt8], map: [UInt8]?) {
            let hash = StateFiles.fnv1a(state, continuing: takenHash)
            state += StateFiles.sealLine(length: takenLength + state.count, hash: hash)
            return (state, map)
        }
    }

    /// Reads a HAProxy map file the way HAProxy 2.6 does (`pat_ref_read_from_file_smp`): lines
    /// starting with `#` and empty lines are skipped, leading spaces and tabs are stripped, the key
    /// ends at the first space or tab, the value is the rest without surrounding spaces and tabs.
    /// Nil when the file does not exist.
    public static func readMapFile(path: String) throws(MapperError) -> [(key: String, value: String)]? {
        guard let text = try readFile(path) else { return nil }
        var entries: [(key: String, value: String)] = []
        for rawLine in lines(text) {
            // As HAProxy does, a carriage return ends the line's content.
            let line = rawLine.prefix { $0 != "\r" }
            if line.hasPrefix("#") { continue }
            let trimmed = line.drop(while: { $0 == " " || $0 == "\t" })
            guard !trimmed.isEmpty else { continue }
            let keyEnd = trimmed.firstIndex(where: { $0 == " " || $0 == "\t" }) ?? trimmed.endIndex
            var value = trimmed[keyEnd...].drop(while: { $0 == " " || $0 == "\t" })
            while let last = value.last, last == " " || last == "\t" { value = value.dropLast() }
            entries.append((String(trimmed[..<keyEnd]), String(value)))
        }
        return entries
    }

    /// Replaces `path` with `bytes` atomically and durably (see the type's documentation).
    ///
    /// The temporary file is created exclusively (`O_CREAT | O_EXCL | O_NOFOLLOW`) under a name
    /// nobody can predict, in the target's folder: a file or symlink planted there (maps folders
    /// are often group-writable) is never written through. The replacement keeps the existing
    /// file's mode and, where the process may set them, its owner and group (HAProxy may run as
    /// another user and must still read it); a new file gets the process's umask, as `open` gives.
    public static func writeAtomically(path: String, bytes: [UInt8]) throws(MapperError) {
        let file = try AtomicFile(path: path)
        try file.write(bytes)
        try file.commit()
    }

    /// A file that replaces `path` atomically and durably once committed, written in pieces (see
    /// ``writeAtomically(path:bytes:)``). Until ``commit()`` nothing at `path` changes; a file
    /// dropped or failed uncommitted leaves no temporary behind.
    public final class AtomicFile {
        public let path: String
        let directory: String
        let temporary: String
        private var fd: Int32
        private let existing: stat?

        public init(path: String) throws(MapperError) {
            self.path = path
            let name: String
            (directory, name) = StateFiles.location(of: path)
            var info = stat()
            existing = lstat(path, &info) == 0 && (info.st_mode & S_IFMT) == S_IFREG ? info : nil
            var fd: Int32 = -1
            var temporary = ""
            for _ in 0..<16 {
                temporary = "\(directory)/\(StateFiles.temporaryName(for: name, nonce: UInt64.random(in: 0...UInt64.max)))"
                fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, existing != nil ? 0o600 : 0o666)
                if fd >= 0 || errno != EEXIST { break }
            }
            guard fd >= 0 else { throw failure("cannot create a temporary file beside \(path)") }
            self.fd = fd
            self.temporary = temporary
        }

        deinit { abandon() }

        /// Appends bytes to the temporary file.
        public func write(_ bytes: [UInt8]) throws(MapperError) {
            precondition(fd >= 0, "written after commit")
            var written = 0
            while written < bytes.count {
                let n = bytes[written...].withUnsafeBytes { writeDescriptor(fd, $0.baseAddress, $0.count) }
                if n < 0 {
                    if errno == EINTR { continue }
                    throw abandoning("cannot write \(temporary)")
                }
                written += n
            }
        }

        /// Gives the temporary file the replaced file's owner and mode, syncs it, renames it over
        /// `path` and syncs the folder.
        public func commit() throws(MapperError) {
            precondition(fd >= 0, "committed twice")
            if let existing {
                // Owner first: changing it may clear set-id bits, which the mode then restores. Not
                // being allowed to give the file away (not root) keeps this process as its owner.
                if existing.st_uid != geteuid() || existing.st_gid != getegid() {
                    if fchown(fd, existing.st_uid, existing.st_gid) != 0 && errno != EPERM { throw abandoning("cannot set the owner of \(temporary)") }
                }
                if fchmod(fd, existing.st_mode & 0o7777) != 0 { throw abandoning("cannot set the mode of \(temporary)") }
            }
            if fsync(fd) != 0 { throw abandoning("cannot sync \(temporary)") }
            close(fd)
            fd = -1
            guard rename(temporary, path) == 0 else {
                let error = failure("cannot rename \(temporary) to \(path)")
                unlink(temporary)
                throw error
            }
            let directoryFD = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
            guard directoryFD >= 0 else { throw failure("cannot open \(directory) to sync it") }
            defer { close(directoryFD) }
            guard fsync(directoryFD) == 0 else { throw failure("cannot sync \(directory)") }
        }

        private func abandoning(_ what: String) -> MapperError {
            let error = failure(what)
            abandon()
            return error
        }

        /// Removes the temporary file, unless committed.
        private func abandon() {
            guard fd >= 0 else { return }
            close(fd)
            fd = -1
            unlink(temporary)
        }
    }

    /// The folder `path` is in (`/` for the root, `.` for a bare name) and its file name.
    static func location(of path: String) -> (folder: String, name: String) {
        guard let slash = path.lastIndex(of: "/") else { return (".", path) }
        let folder = String(path[..<slash])
        return (folder.isEmpty ? "/" : folder, String(path[path.index(after: slash)...]))
    }

    static let temporarySuffix = ".mapbridge-tmp"

    /// The name of a temporary file that replaces the file `name`: `.<name>.<16 hex digits>.mapbridge-tmp`.
    static func temporaryName(for name: String, nonce: UInt64) -> String {
        ".\(name).\(nonce.hexPadded)\(temporarySuffix)"
    }

    /// Whether `entry` is a name ``temporaryName(for:nonce:)`` makes for `name`.
    static func isTemporaryName(_ entry: String, for name: String) -> Bool {
        let prefix = ".\(name)."
        guard entry.hasPrefix(prefix), entry.hasSuffix(temporarySuffix) else { return false }
        let nonce = entry.utf8.dropFirst(prefix.utf8.count).dropLast(temporarySuffix.utf8.count)
        return nonce.count == 16
            && nonce.allSatisfy { (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) || (UInt8(ascii: "a")...UInt8(ascii: "f")).contains($0) }
    }

    /// Removes the temporaries that replacing `path` left behind when the process was killed
    /// mid-write: only names ``AtomicFile`` makes (``temporaryName(for:nonce:)``), never the
    /// target itself. Call it holding the lock every writer of `path` holds, so that no write in
    /// progress loses its temporary. Returns the names removed.
    @discardableResult
    public static func removeStaleTemporaries(beside path: String) -> [String] {
        let (folder, name) = location(of: path)
        guard let listing = opendir(folder) else { return [] }
        var entries: [String] = []
        while let item = readdir(listing) {
            entries.append(withUnsafeBytes(of: item.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) })
        }
        closedir(listing)
        var removed: [String] = []
        for entry in entries where isTemporaryName(entry, for: name) && unlink("\(folder)/\(entry)") == 0 { removed.append(entry) }
        return removed
    }

    /// Checks that files can be written atomically next to `path` (its folder is writable).
    public static func checkWritable(path: String) throws(MapperError) {
        let folder = location(of: path).folder
        guard access(folder, W_OK | X_OK) == 0 else {
            throw failure("cannot write in \(folder) (needed to replace \(path) atomically)")
        }
    }

    /// Runs `body` holding an exclusive lock on `path` (created if needed), shared by every bridge
    /// process using the same state directory.
    public static func withLock<T>(_ path: String, _ body: () throws -> T) throws -> T {
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw failure("cannot open lock file \(path)") }
        defer { close(fd) }
        while flock(fd, LOCK_EX) != 0 {
            if errno != EINTR { throw failure("cannot lock \(path)") }
        }
        defer { flock(fd, LOCK_UN) }
        return try body()
    }

    /// The non-empty lines of a text, split at every line feed byte (Swift's `Character`-based
    /// split would keep `\r\n` together as one character and not split there).
    static func lines(_ text: String) -> [Substring] {
        text.utf8.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: true).map { Substring($0) }
    }

    static func readFile(_ path: String) throws(MapperError) -> String? {
        try readBytes(path).map { String(decoding: $0, as: UTF8.self) }
    }

    static func readBytes(_ path: String) throws(MapperError) -> [UInt8]? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        if fd < 0 {
            if errno == ENOENT { return nil }
            throw failure("cannot read \(path)")
        }
        defer { close(fd) }
        var info = stat()
        var bytes: [UInt8] = []
        if fstat(fd, &info) == 0, info.st_size > 0 {
            // Read straight into an array of the file's size (growing one by appending copied a
            // state file of 150 MB twice over); what the file gained since is appended below.
            let size = Int(info.st_size)
            var failed = false
            bytes = [UInt8](unsafeUninitializedCapacity: size) { buffer, initialized in
                while initialized < size {
                    let n = read(fd, buffer.baseAddress! + initialized, size - initialized)
                    if n < 0 && errno == EINTR { continue }
                    if n < 0 { failed = true }
                    if n <= 0 { break }
                    initialized += n
                }
            }
            if failed { throw failure("cannot read \(path)") }
            // Cut short meanwhile: what was read is the file, as a read to its end would have it.
            if bytes.count < size { return bytes }
        }
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw failure("cannot read \(path)")
            }
            if n == 0 { break }
            bytes.append(contentsOf: chunk[..<n])
        }
        return bytes
    }

    static func failure(_ what: String) -> MapperError {
        MapperError(.stateFile, "\(what): \(String(cString: strerror(errno)))")
    }
}

extension UInt64 {
    /// 16 hexadecimal digits.
    var hexPadded: String {
        let digits = String(self, radix: 16)
        return String(repeating: "0", count: 16 - digits.count) + digits
    }
}

/// `write(2)`, by a name a type's own `write` does not hide.
private func writeDescriptor(_ fd: Int32, _ bytes: UnsafeRawPointer?, _ count: Int) -> Int {
    write(fd, bytes, count)
}

/// A state file's hash, computed on another thread while the caller parses the file.
private final class ConcurrentHash: @unchecked Sendable {
    private var hash = ""
    private let done = DispatchSemaphore(value: 0)

    init(_ body: ArraySlice<UInt8>) {
        DispatchQueue.global(qos: .userInitiated).async { [self] in
            hash = StateFiles.hexHash(body)
            done.signal()
        }
    }

    /// Waits for the hash; the semaphore orders the write before this read.
    func value() -> String {
        done.wait()
        return hash
    }
}
