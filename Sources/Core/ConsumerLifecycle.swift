/// The Kafka consumer's life, as a state machine: created, running (a polling thread owns the
/// client), stopping (asked to close), closed (the polling thread has ended). Other threads hand
/// work to the polling thread as commands; callers waiting for the close are kept as waiters.
///
/// Guarantees: a command is accepted only while the polling thread will still take it, and every
/// accepted command is either handed to the polling thread or returned as unexecuted when it
/// ends; every waiter is handed back exactly once (at the end, or when it gives up).
///
/// `Command` and `Waiter` are the shell's own types (closures, continuations): the machine only
/// keeps them.
public struct ConsumerLifecycle<Command, Waiter> {
    public enum State: Sendable, Equatable {
        case created, running, stopping, closed
    }

    public internal(set) var state: State = .created
    @usableFromInline var commands: [Command] = []
    @usableFromInline var waiters: [Int: Waiter] = [:]
    @usableFromInline var nextWaiter = 0

    public init() {}

    public enum StartAction: Sendable, Equatable {
        /// Start the polling thread.
        case startPolling
        /// Already started, or closed: nothing to do.
        case none
    }

    public mutating func start() -> StartAction {
        guard state == .created else { return .none }
        state = .running
        return .startPolling
    }

    /// Queues a command for the polling thread; false once it is stopping (the caller answers the
    /// command itself). Commands queued before ``start()`` run once the thread starts.
    @inlinable
    public mutating func enqueue(_ command: Command) -> Bool {
        switch state {
        case .created, .running:
            commands.append(command)
            return true
        case .stopping, .closed:
            return false
        }
    }

    /// What the polling thread does next: the commands queued since its last turn, and whether to
    /// stop.
    @inlinable
    public mutating func nextTurn() -> (commands: [Command], stop: Bool) {
        // Called on every turn of the polling loop: nothing to hand over is the common case.
        guard !commands.isEmpty else { return ([], state == .stopping) }
        defer { commands.removeAll() }
        return (commands, state == .stopping)
    }

    public enum CloseAction: Sendable, Equatable {
        /// Nothing runs: closed already (or never started).
        case closed
        /// Wake the polling thread so it sees the stop, then wait for it.
        case wakeAndWait
        /// Another caller already asked: wait for the end.
        case wait
    }

    public mutating func close() -> CloseAction {
        switch state {
        case .created:
            state = .closed
            return .closed
        case .running:
            state = .stopping
            return .wakeAndWait
        case .stopping:
            return .wait
        case .closed:
            return .closed
        }
    }

    /// Keeps a caller waiting for the end; nil when it has come already (resume it at once).
    public mutating func addWaiter(_ waiter: Waiter) -> Int? {
        guard state != .closed else { return nil }
        nextWaiter += 1
        waiters[nextWaiter] = waiter
        return nextWaiter
    }

    /// A waiter gives up (timeout or cancellation); nil when it was handed back already.
    public mutating func removeWaiter(_ id: Int) -> Waiter? {
        waiters.removeValue(forKey: id)
    }

    /// The polling thread has ended (asked to, or after a fatal error): what it never took is to
    /// be failed, and every waiter resumed.
    public mutating func pollingEnded() -> (unexecuted: [Command], waiters: [Waiter]) {
        state = .closed
        defer {
            commands.removeAll()
            waiters.removeAll()
        }
        return (commands, waiters.sorted { $0.key < $1.key }.map(\.value))
    }
}

extension ConsumerLifecycle: Sendable where Command: Sendable, Waiter: Sendable {}
