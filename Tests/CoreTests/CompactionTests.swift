import Testing

@testable import Core

@Suite("Compaction")
struct CompactionTests {
    @Test("the rule: the last value wins in place, a set after a delete re-enters, sources stay apart")
    func rule() {
        #expect(Compaction.merge(pendingIsDelete: false, incomingIsSet: true, sameSource: true) == .replace)
        #expect(Compaction.merge(pendingIsDelete: false, incomingIsSet: false, sameSource: true) == .replace)
        #expect(Compaction.merge(pendingIsDelete: true, incomingIsSet: false, sameSource: true) == .replace)
        #expect(Compaction.merge(pendingIsDelete: true, incomingIsSet: true, sameSource: true) == .reenter)
        #expect(Compaction.merge(pendingIsDelete: true, incomingIsSet: true, sameSource: false) == .separate)
        #expect(Compaction.merge(pendingIsDelete: false, incomingIsSet: true, sameSource: false) == .separate)
    }

    @Test("positions name their index, or say there is none and why")
    func positions() {
        #expect(ChangePosition(7).index == 7)
        #expect(ChangePosition(0).index == 0)
        #expect(ChangePosition.absent.index == nil)
        #expect(ChangePosition.mixed.index == nil)
        #expect(ChangePosition.absent != ChangePosition.mixed)
    }

    @Test("coalescing names the deciding change and its source's owner")
    func owners() {
        let changes = [
            PendingChange(map: 0, key: MapKey("a"), value: "1", message: 0),
            PendingChange(map: 0, key: MapKey("a"), value: "2", message: 1),
        ]
        let result = Coalescer.coalesce(changes, mapCount: 1, owners: [5, 6])[0]
        #expect(result == [KeyChange(key: MapKey("a"), value: "2", deletedFirst: false, tag: 1, owner: 6)])
    }
}
