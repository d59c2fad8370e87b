import Consumer
import Core
import Foundation
import Kafka
import Mapper
import TestSupport
import Testing

@testable import Bridge

@Suite("State store")
struct StateStoreTests {
    func configuration(_ directory: TemporaryDirectory, writeMapFile: Bool = true) -> BridgeConfiguration {
        var configuration = BridgeConfiguration(groupID: "g")
        configuration.stateDirectory = directory.file("state")
        configuration.maps = [.init(name: "hosts", path: directory.file("hosts.map"), writeMapFile: writeMapFile)]
        return configuration
    }

    @Test("the sole writer's state is stored and loaded back, with its offsets; the map file holds the same entries")
    func exclusive() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let owners = OwnerTable()
        let store = StateStore(configuration: configuration(directory), owners: owners, logger: testLogger("test"))
        try store.prepare()
        #expect(try store.load().first?.contents == nil)
        let p0 = owners.id(TopicPartition("changes", 0))
        let entries = [MapContents.Entry(key: MapKey("a"), value: "1", owner: p0), .init(key: MapKey("#b"), value: "2 two", owner: MapContents.unowned)]
        try store.store([MapSnapshot(map: 0, entries: entries, tombstones: [:])], offsets: [TopicPartition("changes", 0): 17], owned: nil)
        let loaded = try store.load()[0]
        #expect(loaded.offsets == ["changes:0": 17])
        #expect(loaded.contents?.ownedEntries() == entries)
        let mapFile = try #require(try StateFiles.readMapFile(path: directory.file("hosts.map")))
        #expect(mapFile.map(\.key) == ["a", "#b"] && mapFile.map(\.value) == ["1", "2 two"])
    }

    @Test("temporaries a killed store left behind are removed at start; other files in the folders stay")
    func staleTemporaries() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let configuration = configuration(directory)
        let state = configuration.groupStateDirectory
        try FileManager.default.createDirectory(atPath: state, withIntermediateDirectories: true)
        let stale = [
            "\(state)/.hosts.state.0123456789abcdef.mapbridge-tmp", "\(state)/.offsets.fedcba9876543210.mapbridge-tmp",
            directory.file(".hosts.map.00000000000000ff.mapbridge-tmp"),
        ]
        // Not names a store makes: another map's, a malformed one, and someone else's files.
        let kept = [
            directory.file(".other.map.0123456789abcdef.mapbridge-tmp"), directory.file(".hosts.map.xyz.mapbridge-tmp"),
            directory.file(".hosts.map.0123456789ABCDEF.mapbridge-tmp"), directory.file("hosts.map.bak"), "\(state)/notes",
        ]
        for path in stale + kept { #expect(FileManager.default.createFile(atPath: path, contents: Data("partial".utf8))) }
        let store = StateStore(configuration: configuration, owners: OwnerTable(), logger: testLogger("test"))
        try store.prepare()
        for path in stale { #expect(!FileManager.default.fileExists(atPath: path), "\(path) removed") }
        for path in kept { #expect(FileManager.default.fileExists(atPath: path), "\(path) kept") }
    }

    @Test("two bridges sharing the maps each store their own partitions' entries without erasing the other's")
    func sharedMerge() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let (ownersA, ownersB) = (OwnerTable(), OwnerTable())
        let a = StateStore(configuration: configuration(directory), owners: ownersA, logger: testLogger("test"))
        let b = StateStore(configuration: configuration(directory), owners: ownersB, logger: testLogger("test"))
        try a.prepare()
        let p0a = ownersA.id(TopicPartition("changes", 0))
        let p1b = ownersB.id(TopicPartition("changes", 1))
        // A starts alone with a seed entry and one of its own, then shares.
        try a.store(
            [
                MapSnapshot(
                    map: 0, entries: [.init(key: MapKey("seed"), value: "s", owner: MapContents.unowned), .init(key: MapKey("a1"), value: "1", owner: p0a)],
                    tombstones: [:])
            ],
            offsets: [TopicPartition("changes", 0): 5], owned: nil)
        // B owns partition 1: adds b1 and deletes the seed key.
        try b.store(
            [MapSnapshot(map: 0, entries: [.init(key: MapKey("b1"), value: "2", owner: p1b)], tombstones: [MapKey("seed"): p1b])],
            offsets: [TopicPartition("changes", 1): 9], owned: [p1b])
        // A, still owning only partition 0, updates a1.
        try a.store(
            [MapSnapshot(map: 0, entries: [.init(key: MapKey("a1"), value: "1b", owner: p0a)], tombstones: [:])], offsets: [TopicPartition("changes", 0): 6],
            owned: [p0a])
        let stored = try #require(try StateFiles.readState(path: directory.file("state/g/hosts.state")))
        #expect(Set(stored.entries.map { "\($0.owner) \($0.key)=\($0.value)" }) == ["changes:0 a1=1b", "changes:1 b1=2"])
        #expect(stored.offsets == ["changes:0": 6, "changes:1": 9])
        // The offsets file, written after the state files, merges both bridges' partitions.
        #expect(try StateFiles.readOffsets(path: directory.file("state/g/offsets")) == ["changes:0": 6, "changes:1": 9])
        #expect(try a.storedOffsets([TopicPartition("changes", 1), TopicPartition("changes", 2)]) == [TopicPartition("changes", 1): 9])
        let mapFile = try #require(try StateFiles.readMapFile(path: directory.file("hosts.map")))
        #expect(Set(mapFile.map { "\($0.key)=\($0.value)" }) == ["a1=1b", "b1=2"])
        // When A is given partition 1, it reloads what B stored for it (and everything else it does not own).
        let reloaded = try #require(try a.reload(except: [p0a])[0])
        #expect(reloaded.entries.map(\.key.string) == ["b1"])
        #expect(reloaded.tombstones[MapKey("seed")] != nil)
    }

    @Test("a reload of a state file nobody changed since this bridge loaded or wrote it whole reads nothing; one changed by another bridge is read")
    func reloadSkipsUnchangedFiles() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let (ownersA, ownersB) = (OwnerTable(), OwnerTable())
        let a = StateStore(configuration: configuration(directory), owners: ownersA, logger: testLogger("test"))
        try a.prepare()
        let p0 = ownersA.id(TopicPartition("changes", 0))
        // The sole writer's store: memory and file agree.
        try a.store(
            [MapSnapshot(map: 0, entries: [.init(key: MapKey("a"), value: "1", owner: p0)], tombstones: [:])], offsets: [TopicPartition("changes", 0): 1],
            owned: nil)
        #expect(try a.reload(except: [])[0] == nil, "nothing to reload: the file is what this bridge wrote")
        // Loaded by a restarted bridge: the same.
        let restarted = StateStore(configuration: configuration(directory), owners: OwnerTable(), logger: testLogger("test"))
        #expect(try restarted.load()[0].contents?.count == 1)
        #expect(try restarted.reload(except: [])[0] == nil)
        // Another bridge stores its partition: the file changed, and is read.
        let b = StateStore(configuration: configuration(directory), owners: ownersB, logger: testLogger("test"))
        let p1 = ownersB.id(TopicPartition("changes", 1))
        try b.store(
            [MapSnapshot(map: 0, entries: [.init(key: MapKey("b"), value: "2", owner: p1)], tombstones: [:])], offsets: [TopicPartition("changes", 1): 1],
            owned: [p1])
        let reloaded = try #require(try restarted.reload(except: [])[0])
        #expect(Set(reloaded.entries.map(\.key.string)) == ["a", "b"])
        // Merged into memory, the file is read again next time (memory is no longer the file).
        #expect(try restarted.reload(except: [])[0] != nil)
    }

    @Test("state knows whose it is: another group, other topics or another HAProxy map is refused, naming the directory and the difference")
    func identity() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        var mine = configuration(directory)
        mine.topics = [.init(name: "changes", format: .json)]
        let store = StateStore(configuration: mine, owners: OwnerTable(), logger: testLogger("test"))
        try store.prepare()
        try store.checkIdentity()
        try store.store(
            [MapSnapshot(map: 0, entries: [.init(key: MapKey("a"), value: "1", owner: MapContents.unowned)], tombstones: [:])],
            offsets: [TopicPartition("changes", 0): 1], owned: nil)
        try store.verifyCluster("cluster-A")
        // The same configuration again: accepted.
        try StateStore(configuration: mine, owners: OwnerTable(), logger: testLogger("test")).checkIdentity()

        func refusal(_ change: (inout BridgeConfiguration) -> Void) -> ForeignStateError? {
            var other = mine
            change(&other)
            let store = StateStore(configuration: other, owners: OwnerTable(), logger: testLogger("test"))
            do {
                try store.prepare()
                try store.checkIdentity()
                return nil
            } catch {
                return error as? ForeignStateError
            }
        }
        let otherMap = try #require(refusal { $0.maps[0].path = directory.file("other-hosts.map") })
        #expect(otherMap.description.contains(directory.file("state/g")) && otherMap.description.contains(directory.file("other-hosts.map")))
        let otherTopics = try #require(refusal { $0.topics.append(.init(name: "more", format: .json)) })
        #expect(otherTopics.description.contains("topics changes"))
        // Another group lives in a folder of its own: nothing to refuse, and nothing shared.
        #expect(refusal { $0.kafka.groupID = "edge-2" } == nil)
        #expect(FileManager.default.fileExists(atPath: directory.file("state/edge-2/identity")))
        #expect(!FileManager.default.fileExists(atPath: directory.file("state/edge-2/hosts.state")))
        // A map added to the configuration is no difference (it has no state yet).
        #expect(refusal { $0.maps.append(.init(name: "blocklist", path: directory.file("blocklist.map"))) } == nil)
        // Another cluster.
        #expect(throws: ForeignStateError.self) { try store.verifyCluster("cluster-B") }
        try store.verifyCluster("cluster-A")
    }

    @Test("a damaged state directory is refused: state without an identity, a garbled identity, a state file cut short")
    func damaged() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let store = StateStore(configuration: configuration(directory), owners: OwnerTable(), logger: testLogger("test"))
        try store.prepare()
        try store.checkIdentity()
        try store.store(
            [MapSnapshot(map: 0, entries: (0..<100).map { .init(key: MapKey("k\($0)"), value: "v", owner: MapContents.unowned) }, tombstones: [:])],
            offsets: [:], owned: nil)
        let statePath = directory.file("state/g/hosts.state")
        let whole = try Data(contentsOf: URL(fileURLWithPath: statePath))
        try whole.prefix(whole.count / 2).write(to: URL(fileURLWithPath: statePath))
        #expect(throws: ForeignStateError.self) { try store.load() }
        try Data().write(to: URL(fileURLWithPath: statePath))
        #expect(throws: ForeignStateError.self) { try store.load() }
        try whole.write(to: URL(fileURLWithPath: statePath))
        #expect(try store.load()[0].contents?.count == 100)
        try "garbage\n".write(toFile: directory.file("state/g/identity"), atomically: true, encoding: .utf8)
        #expect(throws: ForeignStateError.self) { try store.checkIdentity() }
        try FileManager.default.removeItem(atPath: directory.file("state/g/identity"))
        #expect(throws: ForeignStateError.self) { try store.checkIdentity() }
    }

    @Test("keys are merged byte for byte: two spellings of café are two keys")
    func unicodeSpellings() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let owners = OwnerTable()
        let store = StateStore(configuration: configuration(directory), owners: owners, logger: testLogger("test"))
        try store.prepare()
        let (p0, p1) = (owners.id(TopicPartition("changes", 0)), owners.id(TopicPartition("changes", 1)))
        let (nfc, nfd) = ("caf\u{E9}", "cafe\u{301}")
        #expect(nfc == nfd, "Swift's String equality takes them for one")
        try store.store(
            [MapSnapshot(map: 0, entries: [.init(key: MapKey(nfc), value: "composed", owner: p0)], tombstones: [:])], offsets: [:], owned: [p0])
        try store.store(
            [MapSnapshot(map: 0, entries: [.init(key: MapKey(nfd), value: "decomposed", owner: p1)], tombstones: [:])], offsets: [:], owned: [p1])
        let stored = try #require(try StateFiles.readState(path: directory.file("state/g/hosts.state")))
        #expect(Set(stored.entries.map { Array($0.key.utf8) }) == [Array(nfc.utf8), Array(nfd.utf8)])
    }
}
