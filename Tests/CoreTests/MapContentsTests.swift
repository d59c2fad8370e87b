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
}
