import Testing

@testable import Core

@Suite("Offset tracking")
struct OffsetTrackerTests {
    let p0 = TopicPartition("t", 0)
    let p1 = TopicPartition("t", 1)

    @Test("only the contiguous finished prefix is committable")
    func contiguous() {
        var tracker = OffsetTracker()
        let a = tracker.register(p0, through: 9)
        let b = tracker.register(p0, through: 19, parts: 2)
        let c = tracker.register(p0, through: 29)
        tracker.finish(c)
        #expect(tracker.uncommitted.isEmpty)
        tracker.finish(a)
        #expect(tracker.uncommitted == [p0: 10])
        tracker.finish(b)
        #expect(tracker.uncommitted == [p0: 10], "b has one part left (a dead letter in flight)")
        tracker.finish(b)
        #expect(tracker.uncommitted == [p0: 30])
        tracker.committed([p0: 30])
        #expect(tracker.uncommitted.isEmpty)
        #expect(tracker.committable == [p0: 30])
    }

    @Test("what a stored state covers is committed, and no further: later work waits for the next store")
    func uncommittedUpToStored() {
        var tracker = OffsetTracker()
        tracker.finish(tracker.register(p0, through: 9))
        tracker.finish(tracker.register(p1, through: 4))
        let stored = tracker.committable
        // Applied while the store was being written.
        tracker.finish(tracker.register(p0, through: 19))
        #expect(tracker.uncommitted(upTo: stored) == [p0: 10, p1: 5])
        tracker.committed([p0: 10, p1: 5])
        #expect(tracker.uncommitted(upTo: stored).isEmpty, "already committed")
        #expect(tracker.uncommitted == [p0: 20], "the rest waits for the next store")
        #expect(tracker.uncommitted(upTo: [p0: 20, TopicPartition("t", 9): 3]) == [p0: 20], "an untracked partition is left out")
        _ = tracker.revoke([p0])
        #expect(tracker.uncommitted(upTo: [p0: 20]).isEmpty, "a revoked partition is left out")
    }

    @Test("partitions are independent, and extra parts delay a unit")
    func partitions() {
        var tracker = OffsetTracker()
        let a = tracker.register(p0, through: 4)
        let b = tracker.register(p1, through: 7)
        tracker.addParts(b, 1)
        tracker.finish(a)
        tracker.finish(b)
        #expect(tracker.uncommitted == [p0: 5])
        tracker.finish(b)
        #expect(tracker.uncommitted == [p0: 5, p1: 8])
    }

    @Test("work finished after its partition was revoked never counts, even after re-assignment")
    func revoked() {
        var tracker = OffsetTracker()
        let a = tracker.register(p0, through: 4)
        let b = tracker.register(p0, through: 9)
        tracker.finish(a)
        #expect(tracker.revoke([p0]) == [p0: 5])
        tracker.finish(b)
        #expect(tracker.uncommitted.isEmpty)
        let c = tracker.register(p0, through: 14)
        tracker.finish(b)
        #expect(tracker.uncommitted.isEmpty)
        tracker.finish(c)
        #expect(tracker.uncommitted == [p0: 15])
    }
}
