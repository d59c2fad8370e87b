/// The one error type of the HAProxy side: a code a caller can branch on and a reason a human can act on.
public struct MapperError: Error, CustomStringConvertible, Sendable, Equatable {
    /// What went wrong, coarsely.
    public enum Code: String, Sendable, Equatable {
        /// The runtime API socket could not be reached: nothing answered there (HAProxy not
        /// running, still loading, its socket absent), or the connection timed out.
        case unreachable
        /// A further session (a payload's) could not be opened while the main one was up.
        case connectFailed
        /// The connection ended; commands in flight have an unknown outcome.
        case connectionClosed
        /// HAProxy did not answer within the configured time.
        case timeout
        /// HAProxy answered something the protocol does not allow here; the stream is no longer trusted.
        case protocolViolation
        /// HAProxy refused a command (the reason carries its answer).
        case commandFailed
        /// HAProxy does not know the map (it is not loaded by its configuration).
        case unknownMap
        /// The endpoint string is not a `unix://` or `tcp://` address.
        case badEndpoint
        /// A state file could not be read or written.
        case stateFile
        /// The HAProxy reached is older than the oldest version the bridge supports.
        case unsupportedVersion
        /// A stored state file is not whole (cut short, empty, changed): it is never used.
        case damagedState
    }

    public var code: Code
    public var reason: String

    public init(_ code: Code, _ reason: String) {
        self.code = code
        self.reason = reason
    }

    public var description: String { "\(code.rawValue): \(reason)" }
}
