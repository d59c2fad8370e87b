import Testing

@testable import Core

@Suite("Commit queue")
struct CommitQueueTests {
    let p0 = TopicPartition("t", 0)
    let p1 = TopicPartition("t", 1)

    @Test("one commit unanswered at a time; what is asked meanwhile is merged, highest offset per partition")
    func oneAtATime() {
        var queue = CommitQueue()
        let start = ContinuousClock.now
        queue.request([p0: 10])
        #expect(queue.next(assigned: [p0, p1], now: start) == .send([p0: 10], abandoned: false))
        queue.sent(at: start)
        queue.request([p0: 20, p1: 5])
        queue.request([p0: 15])
        #expect(queue.next(assigned: [p0, p1], now: start + .seconds(1)) == .wait)
        queue.answered()
        #expect(queue.next(assigned: [p0, p1], now: start + .seconds(1)) == .send([p0: 20, p1: 5], abandoned: false))
    }

    @Test("an answer that never comes holds the next commit back for the patience, then is given up")
    func patience() {
        var queue = CommitQueue(patience: .seconds(60))
        let start = ContinuousClock.now
        queue.request([p0: 1])
        _ = queue.next(assigned: [p0], now: start)
        queue.sent(at: start)
        queue.request([p0: 2])
        #expect(queue.next(assigned: [p0], now: start + .seconds(60)) == .wait)
        #expect(queue.next(assigned: [p0], now: start + .seconds(61)) == .send([p0: 2], abandoned: true))
    }

    @Test("offsets of partitions no longer assigned are never committed")
    func unassigned() {
        var queue = CommitQueue()
        queue.request([p0: 3, p1: 4])
        queue.revoked([p1])
        #expect(queue.next(assigned: [p0, p1], now: .now) == .send([p0: 3], abandoned: false))
        queue.answered()
        queue.request([p1: 9])
        #expect(queue.next(assigned: [p0], now: .now) == .wait)
        #expect(queue.pending.isEmpty)
    }
}
