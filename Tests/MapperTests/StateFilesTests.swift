import Core
import Foundation
import TestSupport
import Testing

@testable import Mapper

@Suite("State and map files")
struct StateFilesTests {
    static let awkward: [(key: String, value: String)] = [
        ("plain.example.com", "be_a"), ("#hash-key", "#hash value"), ("semi;colon", "v;v"), (#"back\slash"#, #"C:\x"#),
        ("ünïcødé", "välue ✓ 日本"), ("k", "value with  inner   spaces"), ("<<", "<<"),
    ]

    @Test("a state file keeps owners, tombstones and offsets exactly")
    func stateRoundTrip() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        var stored = StoredMap()
        stored.entries = Self.awkward.enumerated().map {
            StoredMap.Entry(owner: $0.offset % 2 == 0 ? "-" : "changes:\($0.offset)", key: $0.element.key, value: $0.element.value)
        }
        // A key and a value that start with a combining mark, and a value holding a tab.
        stored.entries.append(StoredMap.Entry(owner: "changes:1", key: "\u{301}accent", value: "\u{301}v\tafter a tab"))
        stored.tombstones = [("routes:1", "gone.example.com"), ("routes:1", "\u{301}gone")]
        stored.offsets = ["changes:0": 42, "routes:1": 7]
        let path = directory.file("hosts.state")
        try StateFiles.writeAtomically(path: path, bytes: StateFiles.stateFile(stored, title: "map hosts"))
        #expect(try StateFiles.readState(path: path) == stored)
        #expect(try StateFiles.readState(path: directory.file("absent.state")) == nil)
    }

    @Test("a state file read straight into contents holds what it holds read as text: entries in order, owners, offsets; an unknown owner is an error")
    func stateReadIntoContents() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        var stored = StoredMap()
        stored.entries = Self.awkward.enumerated().map {
            StoredMap.Entry(owner: ["-", "changes:0", "changes:1"][$0.offset % 3], key: $0.element.key, value: $0.element.value)
        }
        // A key listed twice (only a hand-made file can): the first wins, as everywhere.
        stored.entries.append(StoredMap.Entry(owner: "changes:1", key: Self.awkward[0].key, value: "second"))
        stored.entries.append(StoredMap.Entry(owner: "changes:0", key: "", value: "empty key"))
        stored.tombstones = [("changes:1", "gone.example.com")]
        stored.offsets = ["changes:0": 42, "changes:1": 7]
        let path = directory.file("hosts.state")
        try StateFiles.writeAtomically(path: path, bytes: StateFiles.stateFile(stored, title: "map hosts"))
        let ids: [String: MapContents.Owner] = ["-": MapContents.unowned, "changes:0": 0, "changes:1": 1]
        let read = try #require(try StateFiles.readStateContents(path: path, owner: { ids[$0] }))
        let expected = MapContents(owned: stored.entries.map { MapContents.Entry(key: MapKey($0.key), value: $0.value, owner: ids[$0.owner]!) })
        #expect(read.contents.ownedEntries() == expected.ownedEntries())
        #expect(read.contents.count == Self.awkward.count + 1)
        #expect(read.offsets == stored.offsets && read.tombstones == 1)
        #expect(read.seal == StateFiles.seal(path: path))
        #expect(try StateFiles.readStateContents(path: directory.file("absent.state"), owner: { ids[$0] }) == nil)
        #expect(throws: MapperError.self) { try StateFiles.readStateContents(path: path, owner: { $0 == "-" ? MapContents.unowned : nil }) }
    }

    @Test("files streamed a piece at a time are byte for byte the files built whole, seal included", arguments: [1, 64, 1000, 1 << 20])
    func streamedFiles(bufferLimit: Int) throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let entries: [(owner: String, key: String, value: String)] =
            (0..<500).map { (owner: $0 % 3 == 0 ? "-" : "changes:\($0 % 4)", key: "k\($0).example.com", value: "be_\($0)") }
            + Self.awkward.map { (owner: "-", key: $0.key, value: $0.value) }
        func build(_ limit: Int?, into state: StateFiles.AtomicFile?, _ map: StateFiles.AtomicFile?) throws -> (state: [UInt8], map: [UInt8]) {
            var files = StateFiles.Builder(
                title: "map hosts", offsets: ["changes:0": 9], mapHeader: ["managed"], capacity: entries.count, bufferLimit: limit)
            var whole: (state: [UInt8], map: [UInt8]) = ([], [])
            func take(_ part: (state: [UInt8], map: [UInt8]?)) throws {
                whole.state += part.state
                whole.map += part.map ?? []
                try state?.write(part.state)
                try map?.write(part.map ?? [])
            }
            for entry in entries {
                files.append(owner: entry.owner, key: entry.key, value: entry.value)
                if files.isFull { try take(files.takeBuffered()) }
            }
            files.appendTombstone(owner: "changes:1", key: "gone")
            try take(files.finish())
            return whole
        }
        let expected = try build(nil, into: nil, nil)
        let statePath = directory.file("hosts.state")
        let mapPath = directory.file("hosts.map")
        let stateFile = try StateFiles.AtomicFile(path: statePath)
        let mapFile = try StateFiles.AtomicFile(path: mapPath)
        let streamed = try build(bufferLimit, into: stateFile, mapFile)
        // Compared as one verdict each: a failure would otherwise print every byte.
        let sameState = streamed.state == expected.state
        let sameMap = streamed.map == expected.map
        #expect(sameState, "the state file differs (\(streamed.state.count) bytes against \(expected.state.count))")
        #expect(sameMap, "the map file differs (\(streamed.map.count) bytes against \(expected.map.count))")
        #expect(!FileManager.default.fileExists(atPath: statePath), "nothing replaced before the commit")
        try stateFile.commit()
        try mapFile.commit()
        #expect(try StateFiles.readState(path: statePath)?.entries.count == entries.count)
        #expect(try StateFiles.readMapFile(path: mapPath)?.count == entries.count)
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory.path).sorted() == ["hosts.map", "hosts.state"])
    }

    @Test("a file abandoned before its commit leaves the old file and no temporary behind")
    func abandonedFile() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let path = directory.file("hosts.map")
        try StateFiles.writeAtomically(path: path, bytes: Array("a 1\n".utf8))
        do {
            let file = try StateFiles.AtomicFile(path: path)
            try file.write(Array("b 2\n".utf8))
            #expect(try FileManager.default.contentsOfDirectory(atPath: directory.path).count == 2, "the temporary beside it")
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory.path) == ["hosts.map"])
        #expect(try String(contentsOfFile: path, encoding: .utf8) == "a 1\n")
    }

    @Test("a state or offsets file that is not whole (empty, cut short, changed) is an error, never a smaller map")
    func damagedFiles() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        var stored = StoredMap()
        stored.entries = (0..<50).map { StoredMap.Entry(owner: "changes:0", key: "k\($0)", value: "v\($0)") }
        stored.offsets = ["changes:0": 50]
        let whole = StateFiles.stateFile(stored, title: "map hosts")
        let path = directory.file("hosts.state")
        let newline = whole.firstIndex(of: 0x0A)!
        let damaged: [(String, [UInt8])] = [
            ("empty", []),
            ("cut at a line end", Array(whole[...whole[..<(whole.count / 2)].lastIndex(of: 0x0A)!])),
            ("cut mid-line", Array(whole[..<(whole.count / 2)])),
            (
                "a value changed",
                Array(whole[...newline]) + Array(String(decoding: whole[(newline + 1)...], as: UTF8.self).replacingOccurrences(of: "v7\n", with: "v8\n").utf8)
            ),
            ("a line dropped", Array(String(decoding: whole, as: UTF8.self).replacingOccurrences(of: "changes:0\tk7\tv7\n", with: "").utf8)),
            // Damaged and malformed at once: the damage is what is reported (the contents are
            // read while the hash is checked beside them).
            (
                "a line garbled",
                Array(String(decoding: whole, as: UTF8.self).replacingOccurrences(of: "changes:0\tk7\tv7\n", with: "changes:0-k7-v7\n").utf8)
            ),
        ]
        let owners = ["changes:0": MapContents.Owner(0)]
        for (what, bytes) in damaged {
            try StateFiles.writeAtomically(path: path, bytes: bytes)
            #expect(throws: MapperError.self, "\(what)") { try StateFiles.readState(path: path) }
            #expect((try? StateFiles.readState(path: path)) == nil, "\(what)")
            for read in [{ _ = try StateFiles.readState(path: path) }, { _ = try StateFiles.readStateContents(path: path, owner: { owners[$0] }) }] {
                do {
                    try read()
                    Issue.record("\(what): read as whole")
                } catch {
                    #expect((error as? MapperError)?.code == .damagedState, "\(what): \(error)")
                }
            }
        }
        try StateFiles.writeAtomically(path: path, bytes: whole)
        #expect(try StateFiles.readState(path: path) == stored)
        let contents = try #require(try StateFiles.readStateContents(path: path, owner: { owners[$0] }))
        #expect(contents.contents.entries().map { "\($0.key.string) \($0.value)" } == stored.entries.map { "\($0.key) \($0.value)" })
        #expect(contents.offsets == stored.offsets && contents.tombstones == 0)
        let offsets = StateFiles.offsetsFile(["changes:0": 50])
        try StateFiles.writeAtomically(path: directory.file("offsets"), bytes: Array(offsets.dropLast(3)))
        #expect(throws: MapperError.self) { try StateFiles.readOffsets(path: directory.file("offsets")) }
    }

    @Test("a symlink planted in the maps folder is never written through, whatever its name")
    func plantedSymlink() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let victim = directory.file("victim")
        try "precious\n".write(toFile: victim, atomically: false, encoding: .utf8)
        let path = directory.file("hosts.map")
        try "a 1\n".write(toFile: path, atomically: false, encoding: .utf8)
        // Links at the old fixed temporary name and at names like it: none may be followed.
        for name in [".hosts.map.mapbridge-tmp", ".hosts.map.0000000000000000.mapbridge-tmp"] {
            #expect(symlink(victim, directory.file(name)) == 0)
        }
        try StateFiles.writeAtomically(path: path, bytes: Array("b 2\n".utf8))
        #expect(try String(contentsOfFile: victim, encoding: .utf8) == "precious\n")
        #expect(try String(contentsOfFile: path, encoding: .utf8) == "b 2\n")
        var info = stat()
        #expect(lstat(path, &info) == 0 && (info.st_mode & S_IFMT) == S_IFREG, "the map file is a regular file, not the link")
        let left = try FileManager.default.contentsOfDirectory(atPath: directory.path).filter { $0.hasSuffix(".mapbridge-tmp") }
        #expect(left.sorted() == [".hosts.map.0000000000000000.mapbridge-tmp", ".hosts.map.mapbridge-tmp"], "only the planted links remain")
    }

    @Test("a replaced file keeps its owner, group and mode; a new file follows the umask")
    func ownerAndMode() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let path = directory.file("hosts.map")
        try StateFiles.writeAtomically(path: path, bytes: Array("a 1\n".utf8))
        var info = stat()
        let mask = umask(0o022)
        umask(mask)
        #expect(stat(path, &info) == 0 && info.st_mode & 0o777 == 0o666 & ~mask, "a new file gets 0666 less the umask")
        chmod(path, 0o640)
        // HAProxy's user owns the file (here: an arbitrary other user and group, when root may give it away).
        let other: (uid_t, gid_t) = (4242, 4343)
        let givenAway = geteuid() == 0 && chown(path, other.0, other.1) == 0
        try StateFiles.writeAtomically(path: path, bytes: Array("b 2\n".utf8))
        #expect(stat(path, &info) == 0)
        #expect(info.st_mode & 0o7777 == 0o640)
        if givenAway {
            #expect(info.st_uid == other.0 && info.st_gid == other.1, "owner and group kept")
        }
        #expect(try String(contentsOfFile: path, encoding: .utf8) == "b 2\n")
    }

    @Test("a map file reads back as HAProxy reads it, '#' keys included")
    func mapFileRoundTrip() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let path = directory.file("hosts.map")
        try StateFiles.writeAtomically(
            path: path, bytes: StateFiles.mapFile(Self.awkward.map { (MapKey($0.key), $0.value) }, header: ["managed", "offsets x=1"]))
        let read = try #require(try StateFiles.readMapFile(path: path))
        #expect(read.map(\.key) == Self.awkward.map(\.key))
        #expect(read.map(\.value) == Self.awkward.map(\.value))
        try "# comment\n  spaced\tvalue with tail  \t\n\nk2 v2\r\n#not-a-key x\n".write(toFile: path, atomically: true, encoding: .utf8)
        let parsed = try #require(try StateFiles.readMapFile(path: path))
        #expect(parsed.map(\.key) == ["spaced", "k2"])
        #expect(parsed.map(\.value) == ["value with tail", "v2"])
    }

    @Test("atomic writes keep the file's permissions and leave no temporary file behind")
    func atomicWrites() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let path = directory.file("m.map")
        try StateFiles.writeAtomically(path: path, bytes: Array("a 1\n".utf8))
        chmod(path, 0o640)
        try StateFiles.writeAtomically(path: path, bytes: Array("b 2\n".utf8))
        let attributes = try FileManager.default.attributesOfItem(atPath: path)
        #expect((attributes[.posixPermissions] as? NSNumber)?.intValue == 0o640)
        #expect(try String(contentsOfFile: path, encoding: .utf8) == "b 2\n")
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory.path) == ["m.map"])
        #expect(throws: MapperError.self) { try StateFiles.writeAtomically(path: "/nonexistent-dir/m.map", bytes: []) }
        #expect(throws: MapperError.self) { try StateFiles.checkWritable(path: "/nonexistent-dir/m.map") }
    }

    @Test("HAProxy loads a written map file exactly as the bridge wrote it")
    func haproxyLoadsIt() async throws {
        try await withHAProxy([TestMap("hosts")]) { haproxy in
            try StateFiles.writeAtomically(
                path: haproxy.mapPath("hosts"), bytes: StateFiles.mapFile(Self.awkward.map { (MapKey($0.key), $0.value) }, header: ["managed by a test"]))
            try await haproxy.restart()
            let served = try haproxy.oracle.entries(of: haproxy.mapPath("hosts"))
            #expect(served.map(\.key) == Self.awkward.map(\.key))
            #expect(served.map(\.value) == Self.awkward.map(\.value))
        }
    }

    @Test("comparing only owned keys ignores other owners' and unowned entries, and finds owned tombstones")
    func ownedComparison() {
        var desired = MapContents()
        desired.set(MapKey("mine"), "1", owner: 1)
        desired.set(MapKey("theirs"), "2", owner: 2)
        desired.set(MapKey("seed"), "3")
        desired.set(MapKey("gone"), "4", owner: 1)
        desired.remove(MapKey("gone"), owner: 1)
        desired.set(MapKey("missing"), "5", owner: 1)
        let live: [(key: String, value: String)] = [("mine", "x"), ("theirs", "other"), ("seed", "changed"), ("gone", "4"), ("unknown", "9"), ("mine", "x")]
        let comparison = MapComparison.compare(desired: desired, live: live, owned: [1])
        #expect(comparison.different == [MapKey("mine")])
        #expect(comparison.duplicated == [MapKey("mine")])
        #expect(comparison.extra == [MapKey("gone")])
        #expect(comparison.missing == [MapKey("missing")])
        var replaced = desired
        replaced.replace(owners: [2, MapContents.unowned], with: [.init(key: MapKey("new"), value: "n", owner: 2)], tombstones: [MapKey("seed"): 2])
        #expect(replaced[MapKey("theirs")] == nil && replaced[MapKey("new")] == "n" && replaced[MapKey("seed")] == nil)
        #expect(replaced.tombstones[MapKey("seed")] == 2)
        #expect(replaced[MapKey("mine")] == "1")
    }
}
