import Dispatch
import Foundation
import ServiceLifecycle
import Synchronization

/// SIGTERM and SIGINT from the first instant of `run`: the first signal asks the service group
/// for a graceful shutdown, even when it arrives before the group exists (during start-up it is
/// remembered, and the group stops as soon as it is attached); the second ends the process at
/// once, so that an operator who asks twice is not kept waiting.
final class SignalEscalation {
    private struct State {
        var count = 0
        var group: ServiceGroup?
    }

    private final class Shared: Sendable {
        let state = Mutex(State())
    }

    private let sources: [any DispatchSourceSignal]
    private let shared = Shared()

    init() {
        let shared = self.shared
        sources = [SIGTERM, SIGINT].map { number in
            // Not SIG_IGN: libdispatch installs its own handler only when it registers the source,
            // on its own thread a moment after `resume()`, and an ignored signal in between was
            // lost (the process then ran on after a SIGTERM). Until then, this handler counts them.
            signal(number, countEarlySignal)
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler {
                let (count, group) = shared.state.withLock { state in
                    state.count += 1
                    return (state.count + earlySignals.load(ordering: .relaxed), state.group)
                }
                if count >= 2 {
                    FileHandle.standardError.write(Data("mapbridge: second signal, exiting at once without finishing\n".utf8))
                    _exit(128 + number)
                }
                if let group { Task { await group.triggerGracefulShutdown() } }
            }
            source.resume()
            return source
        }
    }

    /// The group to stop on the first signal; stopped at once when a signal came before.
    func attach(_ group: ServiceGroup) {
        let signalled = shared.state.withLock { state in
            state.group = group
            return state.count + earlySignals.load(ordering: .relaxed) > 0
        }
        if signalled { Task { await group.triggerGracefulShutdown() } }
    }
}

/// Signals received before libdispatch's handler replaced ``countEarlySignal(_:)``.
private let earlySignals = Atomic<Int>(0)

/// A signal handler (async-signal-safe: an atomic add, and `write` and `_exit` on the second).
private func countEarlySignal(_ number: Int32) {
    if earlySignals.add(1, ordering: .relaxed).newValue >= 2 {
        let message: StaticString = "mapbridge: second signal, exiting at once without finishing\n"
        _ = write(2, message.utf8Start, message.utf8CodeUnitCount)
        _exit(128 + number)
    }
}
