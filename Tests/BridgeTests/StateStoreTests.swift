import Consumer
import Foundation
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
        let stored = try #require(try StateFiles.readState(path: directory.file("state/hosts.state")))
        #expect(Set(stored.entries.map { "\($0.owner) \($0.key)=\($0.value)" }) == ["changes:0 a1=1b", "changes:1 b1=2"])
        #expect(stored.offsets == ["changes:0": 6, "changes:1": 9])
        // The offsets file, written after the state files, merges both bridges' partitions.
        #expect(try StateFiles.readOffsets(path: directory.file("state/offsets")) == ["changes:0": 6, "changes:1": 9])
        #expect(try a.storedOffsets([TopicPartition("changes", 1), TopicPartition("changes", 2)]) == [TopicPartition("changes", 1): 9])
        let mapFile = try #require(try StateFiles.readMapFile(path: directory.file("hosts.map")))
        #expect(Set(mapFile.map { "\($0.key)=\($0.value)" }) == ["a1=1b", "b1=2"])
        // When A is given partition 1, it reloads what B stored for it (and everything else it does not own).
        let reloaded = try #require(try a.reload(except: [p0a])[0])
        #expect(reloaded.entries.map(\.key.string) == ["b1"])
        #expect(reloaded.tombstones[MapKey("seed")] != nil)
    }
}
