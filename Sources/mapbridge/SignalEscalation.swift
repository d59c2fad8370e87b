import Dispatch
import Foundation

/// The second SIGTERM or SIGINT ends the process at once (the first starts a graceful shutdown,
/// handled by the service group): an operator who asks twice is not kept waiting.
final class SignalEscalation {
    private let sources: [any DispatchSourceSignal]

    init() {
        let count = Counter()
        sources = [SIGTERM, SIGINT].map { number in
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler {
                if count.increment() >= 2 {
                    FileHandle.standardError.write(Data("mapbridge: second signal, exiting at once without finishing\n".utf8))
                    _exit(128 + number)
                }
            }
            source.resume()
            return source
        }
    }

    private final class Counter: @unchecked Sendable {
        private let lock = NSLock()
        private var value = 0

        func increment() -> Int {
            lock.withLock {
                value += 1
                return value
            }
        }
    }
}
