import Core
import NIOCore

#if canImport(Glibc)
import Glibc
#endif

/// What `show info` says about the HAProxy process behind a session: enough to notice a restart
/// or reload (a new `Pid` or `Start_time_sec`), an old worker draining (`Stopping: 1`), and the
/// version (whose set/del cost model differs before 2.9).
public struct HAProxyInfo: Sendable, Equatable {
    public var pid: Int
    public var startTimeSec: Int?
    public var uptimeSec: Int?
    public var version: String
    public var stopping: Bool

    public init(pid: Int, startTimeSec: Int?, uptimeSec: Int?, version: String, stopping: Bool) {
        self.pid = pid
        self.startTimeSec = startTimeSec
        self.uptimeSec = uptimeSec
        self.version = version
        self.stopping = stopping
    }

    /// Parses the `Name: value` lines of `show info`.
    public init(parsing text: String) throws(MapperError) {
        var fields: [Substring: Substring] = [:]
        for line in text.split(separator: "\n") {
            guard let colon = line.firstIndex(of: ":") else { continue }
            let value = line[line.index(after: colon)...].drop(while: { $0 == " " })
            fields[line[..<colon]] = value
        }
        guard let pidText = fields["Pid"], let pid = Int(pidText), let version = fields["Version"] else {
            throw MapperError(.protocolViolation, "'show info' answered without Pid and Version: '\(text.prefix(200))'")
        }
        self.pid = pid
        self.startTimeSec = fields["Start_time_sec"].flatMap { Int($0) }
        self.uptimeSec = fields["Uptime_sec"].flatMap { Int($0) }
        self.version = String(version)
        self.stopping = fields["Stopping"] == "1"
    }

    /// Identifies one HAProxy process: a restart or reload changes it.
    public var processIdentity: String { "\(pid)@\(startTimeSec.map(String.init) ?? "?")" }

    /// The major and minor version numbers (`2.6.12-1+deb12u4` gives 2 and 6).
    public var majorMinor: (major: Int, minor: Int) {
        let parts = version.split(whereSeparator: { !$0.isNumber }).prefix(2).compactMap { Int($0) }
        return (parts.first ?? 0, parts.count > 1 ? parts[1] : 0)
    }

    /// True before 2.9, where `set map` and `del map` scan the whole list of entries.
    public var hasLinearSetAndDelete: Bool { isBefore(2, 9) }

    /// True before 3.2, where `set map` answers a value it cannot parse with silence and keeps
    /// the old value: a silent answer proves nothing and is confirmed by reading the map back.
    public var answersRefusedValuesSilently: Bool { isBefore(3, 2) }

    /// From 3.3 on, `del map` in an interactive session removes one entry of a duplicated key per
    /// call (earlier versions remove them all): a delete is repeated until the key is gone.
    public var deletesOneEntryPerCall: Bool { !isBefore(3, 3) }

    /// The oldest version the bridge works with: 2.4 (measured here: 2.4, 2.6, 2.8, 3.0, 3.2, 3.3).
    public static let oldestSupported = (major: 2, minor: 4)
    /// The newest version measured; later ones are used, with a warning.
    public static let newestTested = (major: 3, minor: 3)

    public var isSupported: Bool { !isBefore(Self.oldestSupported.major, Self.oldestSupported.minor) }
    public var isNewerThanTested: Bool { !isBefore(Self.newestTested.major, Self.newestTested.minor + 1) }

    func isBefore(_ major: Int, _ minor: Int) -> Bool {
        let version = majorMinor
        return version.major < major || (version.major == major && version.minor < minor)
    }

    /// What the bridge does differently on this version, one phrase each (for `check` and logs).
    public var behaviour: [String] {
        var notes: [String] = []
        notes.append(
            hasLinearSetAndDelete
                ? "set/del scan the whole map (before 2.9): large batches on large maps are applied as atomic rebuilds"
                : "set/del use a tree (2.9 and later): batches are applied incrementally unless a rebuild is cheaper")
        if answersRefusedValuesSilently {
            notes.append("a refused typed value gets no answer (before 3.2): silent set map answers on _ip/_int maps are confirmed by reading the map back")
        }
        if deletesOneEntryPerCall {
            notes.append("del map removes one entry of a duplicated key per call (3.3 and later): deletes are repeated until HAProxy holds none")
        }
        if isNewerThanTested { notes.append("newer than the last version tested (\(Self.newestTested.major).\(Self.newestTested.minor)): used as that one") }
        return notes
    }
}

/// One line of the `show map` listing: a map HAProxy has loaded.
public struct LoadedMap: Sendable, Equatable {
    public var id: Int
    /// The name HAProxy knows it by (its file path, as written in the configuration).
    public var path: String
    public var entryCount: Int?
    public var currentVersion: Int?
    public var nextVersion: Int?

    /// Parses the listing (`# id (file) description` then one line per map).
    public static func parseListing(_ text: String) -> [LoadedMap] {
        var maps: [LoadedMap] = []
        for line in text.split(separator: "\n") where !line.hasPrefix("#") {
            guard let space = line.firstIndex(of: " "), let id = Int(line[..<space]) else { continue }
            let rest = line[line.index(after: space)...]
            guard rest.hasPrefix("("), let close = rest.firstIndex(of: ")") else { continue }
            let path = String(rest[rest.index(after: rest.startIndex)..<close])
            func number(after label: String) -> Int? {
                guard let range = line.firstRange(of: label) else { return nil }
                return Int(line[range.upperBound...].prefix(while: { $0.isNumber }))
            }
            maps.append(
                LoadedMap(
                    id: id, path: path, entryCount: number(after: "entry_cnt="),
                    currentVersion: number(after: "curr_ver="), nextVersion: number(after: "next_ver=")))
        }
        return maps
    }
}

/// Reads the entries of a `show map <map>` answer, one `0x<ref> <key> <value>` line each, in
/// HAProxy's order (insertion order).
public struct MapDump: Sequence, LiveEntries {
    let body: ByteBuffer

    public init(body: ByteBuffer) {
        self.body = body
    }

    public struct Iterator: IteratorProtocol {
        let body: ByteBuffer
        var offset = 0

        public mutating func next() -> (key: String, value: String)? {
            var offset = self.offset
            defer { self.offset = offset }
            return body.withUnsafeReadableBytes { raw in
                let bytes = raw.bindMemory(to: UInt8.self)
                guard let entry = MapDump.nextEntry(in: bytes, from: &offset) else { return nil }
                return (String(decoding: bytes[entry.key], as: UTF8.self), String(decoding: bytes[entry.value], as: UTF8.self))
            }
        }
    }

    public func makeIterator() -> Iterator { Iterator(body: body) }

    /// Each entry's key and value bytes, read in place: without a `String` per key and value.
    public func forEachEntryBytes(_ body: (_ key: UnsafeBufferPointer<UInt8>, _ value: UnsafeBufferPointer<UInt8>) -> Void) {
        self.body.withUnsafeReadableBytes { raw in
            let bytes = raw.bindMemory(to: UInt8.self)
            var offset = 0
            while let entry = Self.nextEntry(in: bytes, from: &offset) {
                body(UnsafeBufferPointer(rebasing: bytes[entry.key]), UnsafeBufferPointer(rebasing: bytes[entry.value]))
            }
        }
    }

    /// The next entry's key and value at or after `offset` (moved past its line), skipping lines
    /// that are not entries; nil at the end. A line is the entry reference, a space, the key, and
    /// after the first space that follows it the value (which may hold spaces, or be absent).
    static func nextEntry(in bytes: UnsafeBufferPointer<UInt8>, from offset: inout Int) -> (key: Range<Int>, value: Range<Int>)? {
        guard let base = bytes.baseAddress else { return nil }
        func find(_ byte: UInt8, from start: Int, to end: Int) -> Int? {
            memchr(base + start, Int32(byte), end - start).map { UnsafePointer($0.assumingMemoryBound(to: UInt8.self)) - base }
        }
        while offset < bytes.count {
            let start = offset
            let lineEnd = find(UInt8(ascii: "\n"), from: start, to: bytes.count) ?? bytes.count
            offset = lineEnd + 1
            guard let refEnd = find(UInt8(ascii: " "), from: start, to: lineEnd) else { continue }
            let keyStart = refEnd + 1
            guard let keyEnd = find(UInt8(ascii: " "), from: keyStart, to: lineEnd) else { return (keyStart..<lineEnd, lineEnd..<lineEnd) }
            return (keyStart..<keyEnd, (keyEnd + 1)..<lineEnd)
        }
        return nil
    }

    /// About how many entries the dump holds (its newlines), for sizing tables once instead of
    /// growing them through millions of entries. Not `underestimatedCount`: a line that is not an
    /// entry would make it an overestimate, which `Sequence` forbids.
    public var sizeHint: Int {
        body.withUnsafeReadableBytes { bytes in
            guard var cursor = bytes.baseAddress else { return 0 }
            let end = cursor + bytes.count
            var lines = 0
            while cursor < end, let found = memchr(cursor, Int32(UInt8(ascii: "\n")), end - cursor) {
                lines += 1
                cursor = UnsafeRawPointer(found) + 1
            }
            return lines
        }
    }
}
