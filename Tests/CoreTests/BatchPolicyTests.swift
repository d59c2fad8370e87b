import Testing

@testable import Core

@Suite("Batch policy")
struct BatchPolicyTests {
    func policy() -> BatchPolicy {
        // The product's defaults: batch.max_events 10000, max_wait_ms 10, backlog 200000, commit 1 s.
        BatchPolicy(maxEvents: 10_000, maxWait: .milliseconds(10), backlogMaxEvents: 200_000, commitInterval: .seconds(1))
    }

    @Test("a lone event goes at once; the window grows with the batches to max_wait")
    func window() {
        var policy = policy()
        #expect(policy.window(catchingUp: false) == .zero)
        policy.batchDone(events: 500, strategies: [.incremental], sendDuration: .milliseconds(1))
        #expect(policy.window(catchingUp: false) == .milliseconds(5))
        policy.batchDone(events: 50_000, strategies: [.incremental], sendDuration: .milliseconds(1))
        #expect(policy.window(catchingUp: true) == .milliseconds(10))
        #expect(policy.limit == 10_000)
    }

    @Test("while rebuilding and behind, a batch takes the backlog and waits as long as a rebuild took, at most 2 s")
    func catchUp() {
        var policy = policy()
        policy.batchDone(events: 10_000, strategies: [.rebuild], sendDuration: .milliseconds(700))
        #expect(policy.limit == 200_000)
        #expect(policy.window(catchingUp: true) == .milliseconds(700))
        #expect(policy.window(catchingUp: false) == .milliseconds(10))
        policy.batchDone(events: 10_000, strategies: [.none, .rebuild], sendDuration: .seconds(9))
        #expect(policy.window(catchingUp: true) == .seconds(2))
        // A batch that changed no map says nothing about rebuilding.
        policy.batchDone(events: 3, strategies: nil, sendDuration: .zero)
        #expect(policy.rebuilding)
        policy.batchDone(events: 3, strategies: [.incremental], sendDuration: .zero)
        #expect(!policy.rebuilding && policy.limit == 10_000)
        #expect(policy.isCatchingUp(unconsumed: 10_000) && !policy.isCatchingUp(unconsumed: 9_999))
    }

    @Test("storing takes at most a tenth of the time: the interval stretches to nine times a store")
    func storeInterval() {
        var policy = policy()
        #expect(policy.storeInterval == .seconds(1))
        policy.stored(taking: .milliseconds(50))
        #expect(policy.storeInterval == .seconds(1))
        policy.stored(taking: .milliseconds(500))
        #expect(policy.storeInterval == .milliseconds(4500))
    }
}
