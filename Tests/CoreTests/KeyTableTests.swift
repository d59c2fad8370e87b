import TestSupport
import Testing

@testable import Core

@Suite("KeyTable")
struct KeyTableTests {
    @Test("agrees with a Dictionary through growth, in-place updates and look-ups of absent keys, in insertion order")
    func agreesWithDictionary() {
        var generator = SplitMix(seed: 7)
        for round in 0..<20 {
            // Some rounds start sized, most grow from empty through many doublings.
            var table = round % 4 == 0 ? KeyTable<Int>(minimumCapacity: 100) : KeyTable<Int>()
            var reference: [String: Int] = [:]
            var order: [String] = []
            let span = 1 + Int(generator.next() % 5000)
            for _ in 0..<4000 {
                let name = "k\(generator.next() % UInt64(span)).example.com"
                let key = MapKey(name)
                switch generator.next() % 3 {
                case 0:
                    #expect(table[key] == reference[name])
                case 1:
                    table[key, default: 0] += 1
                    if reference[name] == nil { order.append(name) }
                    reference[name, default: 0] += 1
                default:
                    let slot = table.insert(key) { -1 }
                    #expect(slot.inserted == (reference[name] == nil))
                    if slot.inserted { order.append(name) }
                    table[entry: slot.entry] = 5
                    reference[name] = 5
                }
            }
            #expect(table.count == reference.count)
            #expect(table.keys.map(\.string) == order)
            for name in order { #expect(table[MapKey(name)] == reference[name]) }
        }
    }

    @Test("keys whose hashes collide, wholly or in the slot they start from, stay apart")
    func collisions() {
        var table = KeyTable<String>()
        // The same 32-bit hash for every key: each look-up must compare the keys' bytes.
        let same = (0..<300).map { MapKey("key-\($0)", hashCode: 42) }
        // Hashes that differ only above any table's mask: the same first slot, told apart by hash.
        let shifted = (0..<300).map { MapKey("other-\($0)", hashCode: UInt32($0) << 24 | 42) }
        for key in same + shifted { table[key, default: ""] = key.string }
        #expect(table.count == 600)
        for key in same + shifted { #expect(table[key] == key.string) }
        #expect(table[MapKey("key-300", hashCode: 42)] == nil)
        #expect(table[MapKey("key-1", hashCode: 43)] == nil)
        #expect(table.keys == same + shifted)
    }

    @Test("an empty table answers look-ups, and a key that is equal but built apart finds its entry")
    func lookUps() {
        let empty = KeyTable<Int>()
        #expect(empty.isEmpty && empty[MapKey("a")] == nil)
        var table = KeyTable<Int>()
        table[MapKey("a.example.com"), default: 0] = 1
        let rebuilt = MapKey(String(decoding: Array("a.example.com".utf8), as: UTF8.self))
        #expect(table[rebuilt] == 1)
        #expect(!table.insert(rebuilt) { 2 }.inserted)
        #expect(table[rebuilt] == 1)
    }
}
