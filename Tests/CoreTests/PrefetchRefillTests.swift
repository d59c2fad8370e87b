import Core
import Testing

@Suite("When to wake librdkafka's fetcher")
struct PrefetchRefillTests {
    let start = ContinuousClock.now

    func at(_ milliseconds: Int) -> ContinuousClock.Instant { start + .milliseconds(milliseconds) }

    func wakes(_ refill: inout PrefetchRefill, queued: Int, at milliseconds: Int) -> Bool {
        refill.check(queued: queued, now: at(milliseconds))
    }

    @Test("a queue drained below half its bound, with nothing arriving, wakes the fetcher")
    func drainedAndQuiet() {
        var refill = PrefetchRefill(maxMessages: 1000, maxBytes: 100_000, now: start)
        // The fetcher filled the queue past its bound, then stopped.
        #expect(!wakes(&refill, queued: 1200, at: 50))
        for _ in 0..<800 { refill.consumed(payloadBytes: 20) }
        // 400 left: below half the message bound, and nothing arrived (1200 - 800 = 400).
        #expect(wakes(&refill, queued: 400, at: 100))
    }

    @Test("nothing is woken while messages arrive, while the queue is above half of a bound, or before the interval")
    func notWhileBusy() {
        var refill = PrefetchRefill(maxMessages: 1000, maxBytes: 100_000, now: start)
        #expect(!refill.isDue(at(10)))
        #expect(refill.isDue(at(50)))
        _ = refill.check(queued: 300, now: at(50))
        // 100 consumed, yet 300 are queued: 100 arrived, so the fetcher is at work.
        for _ in 0..<100 { refill.consumed(payloadBytes: 20) }
        #expect(!wakes(&refill, queued: 300, at: 100))
        var full = PrefetchRefill(maxMessages: 1000, maxBytes: 100_000, now: start)
        _ = full.check(queued: 700, now: at(50))
        for _ in 0..<100 { full.consumed(payloadBytes: 20) }
        #expect(!wakes(&full, queued: 600, at: 100), "600 of 1000 is above half")
    }

    @Test("the byte bound counts the mean payload of what was consumed")
    func bytesBound() {
        // 1,000 messages of 200 bytes in a 100,000-byte bound: 400 queued is 80,000 bytes, above half.
        var refill = PrefetchRefill(maxMessages: 100_000, maxBytes: 100_000, now: start)
        _ = refill.check(queued: 1000, now: at(50))
        for _ in 0..<600 { refill.consumed(payloadBytes: 200) }
        #expect(!wakes(&refill, queued: 400, at: 100))
        for _ in 0..<300 { refill.consumed(payloadBytes: 200) }
        // 100 left, 20,000 bytes: below half.
        #expect(wakes(&refill, queued: 100, at: 150))
    }

    @Test("wake-ups that bring nothing stop after a few in a row, until messages arrive again")
    func fruitless() {
        var refill = PrefetchRefill(maxMessages: 1000, maxBytes: 100_000, now: start)
        var time = 0
        func next() -> Int {
            time += 50
            return time
        }
        // An idle queue, a partition that looks behind: each wake-up brings nothing.
        for _ in 0..<PrefetchRefill.fruitlessLimit {
            #expect(wakes(&refill, queued: 0, at: next()))
            refill.woke()
        }
        #expect(!wakes(&refill, queued: 0, at: next()))
        #expect(!wakes(&refill, queued: 0, at: next()))
        // Messages arrive (and are consumed): the fetcher may be woken again.
        for _ in 0..<10 { refill.consumed(payloadBytes: 20) }
        #expect(!wakes(&refill, queued: 0, at: next()), "10 arrived since the last check")
        #expect(wakes(&refill, queued: 0, at: next()))
    }

    @Test("the bounds are read from librdkafka's settings, with its defaults")
    func settings() {
        let set = PrefetchRefill(settings: ["queued.min.messages": "50000", "queued.max.messages.kbytes": "8192"])
        #expect(set.maxMessages == 50_000)
        #expect(set.maxBytes == 8192 * 1024)
        let defaults = PrefetchRefill(settings: [:])
        #expect(defaults.maxMessages == 100_000)
        #expect(defaults.maxBytes == 65_536 * 1024)
    }
}
