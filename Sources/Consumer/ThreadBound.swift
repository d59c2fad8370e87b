import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// State that belongs to one thread, checked at run time to be used only there (as swift-nio's
/// `NIOLoopBound` is for an event loop): the consumer's polling-thread state, which librdkafka's
/// callbacks also reach from inside a poll on that thread (so a lock around it would deadlock on
/// their re-entry). The thread binds it with ``bindToCurrentThread()`` before its first use; any
/// use from another thread, or before that, stops the process instead of racing.
final class ThreadBound<Value>: @unchecked Sendable {
    private var storage: Value
    /// The owning thread (`pthread_self()`), 0 until bound.
    private let owner = Atomic<UInt>(0)

    init(_ value: Value) {
        storage = value
    }

    /// Makes the calling thread the owner; once only.
    func bindToCurrentThread() {
        let (exchanged, _) = owner.compareExchange(expected: 0, desired: Self.currentThread, ordering: .acquiringAndReleasing)
        precondition(exchanged, "thread-bound state bound twice")
    }

    var value: Value {
        _read {
            check()
            yield storage
        }
        _modify {
            check()
            yield &storage
        }
    }

    @inline(__always)
    private func check() {
        precondition(owner.load(ordering: .relaxed) == Self.currentThread, "thread-bound state used from another thread than its own")
    }

    private static var currentThread: UInt {
        #if canImport(Darwin)
        UInt(bitPattern: pthread_self())
        #else
        UInt(pthread_self())
        #endif
    }
}
