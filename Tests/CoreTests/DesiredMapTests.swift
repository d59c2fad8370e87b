import TestSupport
import Testing

@testable import Core

extension ListMap {
    /// Carries out a plan as the applier sends it incrementally: set/del in order, then the adds.
    mutating func run(_ plan: MapPlan) {
        for update in plan.updates {
            if let value = update.value { set(update.key.string, value) } else { del(update.key.string) }
        }
        for add in plan.adds { self.add(add.key.string, add.value) }
    }
}

@Suite("Planning a batch against the desired map")
struct DesiredMapTests {
    func contents(_ pairs: [(String, String)]) -> MapContents {
        MapContents(entries: pairs.map { (key: $0.0, value: $0.1) })
    }

    func change(_ key: String, _ value: String?, deletedFirst: Bool = false, tag: Int = 0) -> KeyChange {
        KeyChange(key: MapKey(key), value: value, deletedFirst: deletedFirst, tag: tag)
    }

    @Test("each change becomes the cheapest command that is right: add, set, del, or nothing")
    func commands() {
        var map = DesiredMap(initial: contents([("a", "1"), ("b", "2")]))
        map.inSync = true
        let plan = map.plan([change("a", "1"), change("b", "3"), change("c", "4"), change("x", nil), change("a", nil)], orderSensitive: false, exclusive: true)
        #expect(plan.sendable)
        #expect(plan.sizeBefore == 2)
        #expect(plan.updates.map(\.key.string) == ["b", "a"])
        #expect(plan.updates.map(\.value) == ["3", nil])
        #expect(plan.adds.map(\.key.string) == ["c"])
        #expect(map.contents.entries().map(\.key.string) == ["b", "c"])
        #expect(!map.inSync, "out of sync until HAProxy acknowledges")
    }

    @Test("sharing the map, a delete of a key believed absent is still sent")
    func sharedDelete() {
        var map = DesiredMap(initial: MapContents())
        #expect(map.plan([change("x", nil)], orderSensitive: false, exclusive: true).isEmpty)
        #expect(map.plan([change("x", nil)], orderSensitive: false, exclusive: false).updates.map(\.key.string) == ["x"])
    }

    @Test("delete then set moves a list-matched key to the end with del and add; a tree-matched one is set in place")
    func moves() {
        var list = DesiredMap(initial: contents([("a", "1"), ("b", "2")]))
        let plan = list.plan([change("a", "9", deletedFirst: true)], orderSensitive: true, exclusive: true)
        #expect(plan.updates.map(\.value) == [nil])
        #expect(plan.adds.map(\.key.string) == ["a"])
        #expect(list.contents.entries().map(\.key.string) == ["b", "a"])
        var tree = DesiredMap(initial: contents([("a", "1"), ("b", "2")]))
        let treePlan = tree.plan([change("a", "9", deletedFirst: true)], orderSensitive: false, exclusive: true)
        #expect(treePlan.updates.map(\.value) == ["9"])
        #expect(treePlan.adds.isEmpty)
    }

    @Test("a refused change goes back to its value before the first unacknowledged batch")
    func refusal() {
        var map = DesiredMap(initial: contents([("a", "1")]))
        _ = map.plan([change("a", "2", tag: 1), change("n", "new", tag: 2)], orderSensitive: false, exclusive: true)
        // A second batch before the first was acknowledged: the oldest value before is kept.
        _ = map.plan([change("a", "3", tag: 3)], orderSensitive: false, exclusive: true)
        #expect(map.tag(of: MapKey("a")) == 3)
        #expect(map.refuse(MapKey("a")) == nil)
        #expect(map.contents[MapKey("a")] == "1")
        map.refuse(MapKey("n"))
        #expect(!map.contents.contains(MapKey("n")), "a refused new key leaves the desired state")
        map.settle()
        #expect(map.inSync && map.uncertain.isEmpty)
    }

    @Test("a refused add of a moved key is given back its old value, at the end where its add puts it")
    func refusedMove() {
        var map = DesiredMap(initial: contents([("a", "1"), ("b", "2")]))
        _ = map.plan([change("a", "bad", deletedFirst: true)], orderSensitive: true, exclusive: true)
        #expect(map.refuse(MapKey("a"), wasAdd: true) == "1")
        #expect(map.contents.entries().map(\.key.string) == ["b", "a"])
        #expect(map.contents[MapKey("a")] == "1")
    }

    @Test(
        "coalesced and planned batches leave HAProxy exactly as the events applied one by one would, order included",
        arguments: 0..<40)
    func matchesEventOrder(seed: Int) {
        var random = SplitMix(seed: UInt64(seed))
        let keys = (0..<6).map { "k\($0)" }
        var model = ListMap()
        for key in keys.shuffled(using: &random).prefix(3) { model.add(key, "init") }
        var haproxy = model
        var desired = DesiredMap(initial: MapContents(entries: model.entries))
        desired.inSync = true
        for _ in 0..<5 {
            var events: [PendingChange] = []
            for index in 0..<Int.random(in: 1...12, using: &random) {
                let key = keys.randomElement(using: &random)!
                let value: String? = Bool.random(using: &random) ? "v\(Int.random(in: 0..<3, using: &random))" : nil
                events.append(PendingChange(map: 0, key: MapKey(key), value: value, message: index))
                model.apply(key, value)
            }
            let batch = Coalescer.coalesce(events, mapCount: 1)[0]
            let plan = desired.plan(batch, orderSensitive: true, exclusive: true)
            haproxy.run(plan)
            desired.settle()
            #expect(haproxy == model, "seed \(seed)")
            #expect(desired.contents.entries().map { "\($0.key.string)=\($0.value)" } == model.entries.map { "\($0.key)=\($0.value)" }, "seed \(seed)")
        }
    }
}

@Suite("Choosing how a batch goes to HAProxy")
struct StrategyChoiceTests {
    func plan(updates: Int, adds: Int, sizeBefore: Int) -> MapPlan {
        var plan = MapPlan()
        plan.updates = (0..<updates).map { MapPlan.Update(change: $0, key: MapKey("u\($0)"), value: "v", tag: $0) }
        plan.adds = (0..<adds).map { MapPlan.Add(change: $0, key: MapKey("a\($0)"), value: "v") }
        plan.sizeBefore = sizeBefore
        return plan
    }

    @Test("many sets on a large map rebuild it where set scans the map; a tree keeps them incremental")
    func byCost() {
        let choice = StrategyChoice()
        let big = plan(updates: 5000, adds: 0, sizeBefore: 100_000)
        #expect(choice.choose(big, sizeAfter: 100_000, costs: ApplyCostModel(linearSetDelete: true), exclusive: true) == .rebuild)
        var tree = ApplyCostModel(linearSetDelete: false)
        tree.perCommand = 3.2e-6
        #expect(choice.choose(big, sizeAfter: 100_000, costs: tree, exclusive: true) == .incremental)
        #expect(choice.choose(plan(updates: 3, adds: 0, sizeBefore: 100_000), sizeAfter: 100_000, costs: ApplyCostModel(), exclusive: true) == .incremental)
    }

    @Test("only the only writer rebuilds; small maps never do; an override wins")
    func limits() {
        let big = plan(updates: 5000, adds: 0, sizeBefore: 100_000)
        #expect(StrategyChoice().choose(big, sizeAfter: 100_000, costs: ApplyCostModel(), exclusive: false) == .incremental)
        let small = plan(updates: 400, adds: 0, sizeBefore: 400)
        #expect(StrategyChoice().choose(small, sizeAfter: 400, costs: ApplyCostModel(), exclusive: true) == .incremental)
        #expect(StrategyChoice(override: .rebuild).choose(small, sizeAfter: 400, costs: ApplyCostModel(), exclusive: false) == .rebuild)
        #expect(StrategyChoice(override: .incremental).choose(big, sizeAfter: 100_000, costs: ApplyCostModel(), exclusive: true) == .incremental)
    }
}
