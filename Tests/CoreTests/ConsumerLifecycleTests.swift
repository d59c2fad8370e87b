import Testing

@testable import Core

@Suite("Consumer lifecycle")
struct ConsumerLifecycleTests {
    typealias Machine = ConsumerLifecycle<String, String>

    @Test("commands queued before the start run once it has started; none are taken once stopping")
    func commands() {
        var machine = Machine()
        let early = machine.enqueue("early")
        let started = machine.start()
        let again = machine.start()
        #expect(early && started == .startPolling && again == .none)
        let first = machine.nextTurn()
        #expect(first.commands == ["early"] && !first.stop)
        let second = machine.nextTurn()
        #expect(second.commands.isEmpty)
        let commit = machine.enqueue("commit")
        let close = machine.close()
        let late = machine.enqueue("late")
        #expect(commit && close == .wakeAndWait && !late)
        let last = machine.nextTurn()
        #expect(last.commands == ["commit"] && last.stop)
    }

    @Test("closing: the first caller wakes the thread, later ones wait, every waiter is resumed once")
    func closing() {
        var machine = Machine()
        _ = machine.start()
        let close = machine.close()
        let closeAgain = machine.close()
        #expect(close == .wakeAndWait && closeAgain == .wait)
        let first = machine.addWaiter("first")
        let second = machine.addWaiter("second")
        #expect(first != nil && second != nil)
        let gaveUp = machine.removeWaiter(second!)
        #expect(gaveUp == "second", "a waiter that times out takes itself back")
        let end = machine.pollingEnded()
        #expect(end.waiters == ["first"])
        let twice = machine.removeWaiter(first!)
        let after = machine.addWaiter("after")
        let closeClosed = machine.close()
        #expect(twice == nil, "handed back once")
        #expect(after == nil, "closed: nothing to wait for")
        #expect(closeClosed == .closed)
    }

    @Test("a thread that ends by itself (a fatal error) hands back what it never ran; a consumer never started closes at once")
    func ends() {
        var machine = Machine()
        _ = machine.start()
        _ = machine.enqueue("commitNow")
        let end = machine.pollingEnded()
        #expect(end.unexecuted == ["commitNow"])
        #expect(machine.state == .closed)
        var idle = Machine()
        let close = idle.close()
        let start = idle.start()
        #expect(close == .closed && start == .none)
    }
}
