import Foundation
import Synchronization
import Testing

@testable import Consumer

@Suite("Thread-bound state")
struct ThreadBoundTests {
    @Test("its own thread reads and changes it in place")
    func ownThread() async {
        let bound = ThreadBound([Int]())
        let done = DispatchSemaphore(value: 0)
        let result = Locker()
        let thread = Thread {
            bound.bindToCurrentThread()
            for number in 0..<3 { bound.value.append(number) }
            result.set(bound.value)
            done.signal()
        }
        thread.start()
        await withCheckedContinuation { continuation in
            DispatchQueue.global().async {
                done.wait()
                continuation.resume()
            }
        }
        #expect(result.get() == [0, 1, 2])
    }

    @Test("another thread using it stops the process instead of racing")
    func otherThread() async {
        await #expect(processExitsWith: .failure) {
            let bound = ThreadBound(0)
            let done = DispatchSemaphore(value: 0)
            let thread = Thread {
                bound.bindToCurrentThread()
                done.signal()
            }
            thread.start()
            done.wait()
            bound.value += 1
        }
    }

    @Test("using it before its thread binds it stops the process")
    func unbound() async {
        await #expect(processExitsWith: .failure) {
            let bound = ThreadBound(0)
            _ = bound.value
        }
    }
}

private final class Locker: Sendable {
    private let value = Mutex<[Int]>([])
    func set(_ new: [Int]) { value.withLock { $0 = new } }
    func get() -> [Int] { value.withLock { $0 } }
}
