import TestSupport
import Testing

@testable import Core

@Suite("Desired map contents")
struct MapContentsTests {
    func keys(_ contents: MapContents) -> [String] { contents.entries().map(\.key.string) }

    @Test("order follows HAProxy: append new keys, set in place, del+set moves to the end")
    func ordering() {
        var contents = MapContents()
        contents.set(MapKey("a"), "1")
        contents.set(MapKey("b"), "2")
        contents.set(MapKey("c"), "3")
        contents.set(MapKey("a"), "1b")
        #expect(keys(contents) == ["a", "b", "c"])
        contents.moveToEnd(MapKey("a"), "1c")
        #expect(keys(contents) == ["b", "c", "a"])
        contents.remove(MapKey("c"))
        contents.set(MapKey("c"), "3b")
        #expect(keys(contents) == ["b", "a", "c"])
        #expect(contents[MapKey("a")] == "1c")
        #expect(contents.count == 3)
    }

    @Test("tombstones go to a store; a failed store gives back those no later change made obsolete")
    func tombstonesHandedToAStore() {
        var contents = MapContents()
        for key in ["a", "b", "c"] { contents.set(MapKey(key), "1", owner: 0) }
        _ = contents.remove(MapKey("a"), owner: 0)
        _ = contents.remove(MapKey("b"), owner: 0)
        _ = contents.remove(MapKey("c"), owner: 0)
        let taken = contents.takeTombstones()
        #expect(taken == [MapKey("a"): 0, MapKey("b"): 0, MapKey("c"): 0])
        #expect(contents.tombstones.isEmpty)
        // While the store was written: a set again, and c removed again by another owner.
        contents.set(MapKey("a"), "2", owner: 1)
        _ = contents.remove(MapKey("c"), owner: 1)
        contents.restoreTombstones(taken)
        #expect(contents.tombstones == [MapKey("b"): 0, MapKey("c"): 1])
        #expect(contents[MapKey("a")] == "2")
    }

    @Test("adopting live entries counts them and says whether a key was listed twice")
    func adopting() {
        let clean = MapContents.adopting([(key: "b", value: "1"), (key: "a", value: "2")])
        #expect(clean.liveCount == 2 && !clean.duplicated)
        #expect(clean.contents.entries().map(\.key.string) == ["b", "a"])
        let twice = MapContents.adopting([(key: "a", value: "1"), (key: "b", value: "2"), (key: "a", value: "3")])
        #expect(twice.liveCount == 3 && twice.duplicated)
        #expect(twice.contents[MapKey("a")] == "1" && twice.contents.count == 2)
    }

    @Test("the first of duplicate live entries wins, as in HAProxy lookups")
    func firstWins() {
        let live: [(key: String, value: String)] = [("k", "first"), ("x", "1"), ("k", "second")]
        let contents = MapContents(entries: live)
        #expect(contents[MapKey("k")] == "first")
        #expect(keys(contents) == ["k", "x"])
    }

    @Test("comparison finds missing, extra, different, duplicated and reordered entries")
    func comparison() {
        var desired = MapContents()
        for (key, value) in [("a", "1"), ("b", "2"), ("c", "3"), ("d", "4")] { desired.set(MapKey(key), value) }
        let same: [(key: String, value: String)] = [("a", "1"), ("b", "2"), ("c", "3"), ("d", "4")]
        let exact = MapComparison.compare(desired: desired, live: same, orderSensitive: true)
        #expect(exact.isExact)
        let live: [(key: String, value: String)] = [("b", "2"), ("a", "1"), ("c", "x"), ("e", "5"), ("c", "3")]
        let diff = MapComparison.compare(desired: desired, live: live, orderSensitive: true)
        #expect(diff.missing == [MapKey("d")])
        #expect(diff.extra == [MapKey("e")])
        #expect(diff.different == [MapKey("c")])
        #expect(diff.duplicated == [MapKey("c")])
        #expect(diff.outOfOrder)
        #expect(diff.liveCount == 5)
        let swapped: [(key: String, value: String)] = [("b", "2"), ("a", "1"), ("c", "3"), ("d", "4")]
        #expect(!MapComparison.compare(desired: desired, live: swapped, orderSensitive: false).outOfOrder)
        #expect(MapComparison.compare(desired: desired, live: swapped, orderSensitive: true).outOfOrder)
    }

    /// The comparison as first written: a Set of every live key seen, three look-ups per entry.
    static func reference(desired: MapContents, live: [(key: String, value: String)], orderSensitive: Bool) -> MapComparison {
        var result = MapComparison()
        var seen = Set<MapKey>()
        var duplicated = Set<MapKey>()
        var lastSequence: UInt64? = nil
        var present = 0
        for (keyText, value) in live {
            result.liveCount += 1
            let key = MapKey(keyText)
            guard seen.insert(key).inserted else {
                if duplicated.insert(key).inserted { result.duplicated.append(key) }
                continue
            }
            guard let wanted = desired[key] else {
                result.extra.append(key)
                continue
            }
            present += 1
            if wanted != value { result.different.append(key) }
            if orderSensitive, let sequence = desired.sequence(of: key) {
                if let last = lastSequence, sequence < last { result.outOfOrder = true }
                lastSequence = sequence
            }
        }
        if present < desired.count {
            for (key, _) in desired.entries() where !seen.contains(key) { result.missing.append(key) }
        }
        return result
    }

    @Test("the comparison finds what a plain Set-based comparison finds, with the bitmap and without, over random maps", arguments: 0..<30)
    func comparisonMatchesReference(seed: UInt64) {
        var random = SplitMix(seed: seed)
        var desired = MapContents()
        // Churn, so that position ranks are sparse and keys move.
        for _ in 0..<Int.random(in: 0..<200, using: &random) {
            let key = MapKey("k\(Int.random(in: 0..<60, using: &random))")
            switch Int.random(in: 0..<4, using: &random) {
            case 0: desired.remove(key)
            case 1: desired.moveToEnd(key, "v\(Int.random(in: 0..<3, using: &random))")
            default: desired.set(key, "v\(Int.random(in: 0..<3, using: &random))")
            }
        }
        var live: [(key: String, value: String)] = desired.entries().filter { _ in Int.random(in: 0..<10, using: &random) > 0 }.map {
            ($0.key.string, $0.value)
        }
        for _ in 0..<Int.random(in: 0..<20, using: &random) {
            let entry = ("k\(Int.random(in: 0..<80, using: &random))", "v\(Int.random(in: 0..<3, using: &random))")
            live.insert(entry, at: Int.random(in: 0...live.count, using: &random))
        }
        if live.count > 2 && Bool.random(using: &random) { live.swapAt(0, live.count - 1) }
        for orderSensitive in [false, true] {
            let expected = Self.reference(desired: desired, live: live, orderSensitive: orderSensitive)
            for limit in [UInt64.max, 0] {
                let found = MapComparison.compare(desired: desired, live: live, orderSensitive: orderSensitive, bitmapLimit: limit)
                #expect(found.extra == expected.extra && found.different == expected.different && found.duplicated == expected.duplicated)
                #expect(Set(found.missing) == Set(expected.missing) && found.missing.count == expected.missing.count)
                #expect(found.outOfOrder == expected.outOfOrder && found.liveCount == expected.liveCount, "seed \(seed)")
            }
        }
    }
    /// A plain model of the contents: a dictionary and HAProxy's order as a list.
    struct Model {
        var values: [String: (value: String, owner: MapContents.Owner)] = [:]
        var order: [String] = []

        mutating func set(_ key: String, _ value: String, _ owner: MapContents.Owner) {
            if values[key] == nil { order.append(key) }
            values[key] = (value, owner)
        }

        mutating func remove(_ key: String) {
            if values.removeValue(forKey: key) != nil { order.removeAll { $0 == key } }
        }

        var entries: [MapContents.Entry] {
            order.map { MapContents.Entry(key: MapKey($0), value: values[$0]!.value, owner: values[$0]!.owner) }
        }
    }

    /// A store lists the contents while the pipeline goes on changing them. A value written over
    /// its old bytes copied the whole 1 MiB arena page under it; changes to random keys of a
    /// large map then copied nearly every page, as much again as the arena, for as long as the
    /// store wrote.
    @Test("changing values while a listing lives copies no arena page but the last, and the listing keeps the old values")
    func changesBesideAListingCopyNoArenaPage() {
        var contents = MapContents()
        let count = 200_000
        for index in 0..<count { contents.set(MapKey("key-\(index)"), "value-\(index % 10)") }
        let listing = contents.listing
        let pageCount = contents.sharedArenaPages(with: listing)
        #expect(pageCount >= 4, "the entries span several arena pages")
        var random = SplitMix(seed: 7)
        for _ in 0..<5000 {
            let index = Int.random(in: 0..<count, using: &random)
            contents.set(MapKey("key-\(index)"), "other-\(index % 10)")
        }
        // The moved entries' bytes go to the arena's end: only its last page may be copied.
        #expect(contents.sharedArenaPages(with: listing) >= pageCount - 1)
        let listed = listing.entries(from: 0, limit: count).entries.map(\.value)
        #expect(listed == (0..<count).map { "value-\($0 % 10)" })
        #expect(contents.entries().filter { $0.value.hasPrefix("other-") }.count > 4000)
    }

    @Test(
        "the compact storage holds what a dictionary and an ordered list hold, through growth, removals, longer and shorter values and compaction",
        arguments: 0..<12)
    func compactStorageMatchesModel(seed: UInt64) {
        var random = SplitMix(seed: seed)
        var contents = MapContents()
        var model = Model()
        // Few keys and many changes (removals leave records and bytes behind, so the storage
        // compacts again and again), or many keys (the table grows), by seed.
        let keyCount = seed % 2 == 0 ? 50 : 5000
        func randomKey() -> String {
            let number = Int.random(in: 0..<keyCount, using: &random)
            // Short keys are stored inline by String, long ones on the heap; both must work.
            return number % 3 == 0 ? "k\(number)" : "a-much-longer-key-of-the-map/\(number)/" + String(repeating: "x", count: number % 40)
        }
        func randomValue() -> String {
            // Lengths vary so that a new value is sometimes longer than the old one (it moves)
            // and sometimes shorter (written in place); "é" makes multi-byte UTF-8.
            String(repeating: "é", count: Int.random(in: 0..<30, using: &random)) + "\(Int.random(in: 0..<9, using: &random))"
        }
        // A listing taken at one checkpoint must list the same entries at the next, however the
        // contents changed meanwhile (the pages it shares are copied when changed, not changed).
        var taken: (listing: MapContents.Listing, expected: [MapContents.Entry])?
        for step in 0..<20_000 {
            let key = randomKey()
            let owner = MapContents.Owner(Int.random(in: -1..<4, using: &random))
            switch Int.random(in: 0..<10, using: &random) {
            case 0..<3:
                let removed = contents.remove(MapKey(key))
                #expect(removed == model.values[key]?.value)
                model.remove(key)
            case 3:
                let value = randomValue()
                contents.moveToEnd(MapKey(key), value, owner: owner)
                model.remove(key)
                model.set(key, value, owner)
            default:
                let value = randomValue()
                contents.set(MapKey(key), value, owner: owner)
                model.set(key, value, owner)
            }
            #expect(contents.count == model.values.count)
            let probe = MapKey(randomKey())
            #expect(contents.valueAndOwner(of: probe).value == model.values[probe.string]?.value)
            #expect(contents.owner(of: probe) == model.values[probe.string]?.owner)
            if step % 997 == 0 || step == 19_999 {
                #expect(contents.ownedEntries() == model.entries, "seed \(seed) step \(step)")
                var fromBytes: [MapContents.Entry] = []
                contents.listing.forEachEntryBytes { key, value, owner in
                    fromBytes.append(
                        .init(key: MapKey(String(decoding: key, as: UTF8.self)), value: String(decoding: value, as: UTF8.self), owner: owner))
                }
                #expect(fromBytes == model.entries)
                #expect(contents.sequenceBound <= UInt64(2 * contents.count + 1025))
                // Ranks follow the order.
                let ranks = model.order.map { contents.sequence(of: MapKey($0))! }
                #expect(ranks == ranks.sorted())
                if let taken {
                    #expect(taken.listing.ownedEntries() == taken.expected, "a listing changed after it was taken (seed \(seed) step \(step))")
                    #expect(taken.listing.count == taken.expected.count)
                }
                taken = (contents.listing, model.entries)
            }
        }
        // Everything removed: nothing left, and the storage is usable again.
        for key in model.order { contents.remove(MapKey(key)) }
        #expect(contents.isEmpty && contents.entries().isEmpty)
        contents.set(MapKey("again"), "1")
        #expect(contents.entries().map(\.key.string) == ["again"])
    }
}
