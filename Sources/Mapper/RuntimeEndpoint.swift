/// Where HAProxy's runtime API listens: a unix socket path or a TCP host and port.
public enum RuntimeEndpoint: Sendable, Equatable, CustomStringConvertible {
    case unix(path: String)
    case tcp(host: String, port: Int)

    /// Parses `unix:///run/haproxy/admin.sock` or `tcp://127.0.0.1:9999` (IPv6 as `tcp://[::1]:9999`).
    public init(parsing text: String) throws(MapperError) {
        if text.hasPrefix("unix://") {
            let path = String(text.dropFirst("unix://".count))
            guard path.hasPrefix("/") || path.hasPrefix(".") || !path.isEmpty else {
                throw MapperError(.badEndpoint, "'\(text)': a unix:// endpoint needs a socket path")
            }
            self = .unix(path: path)
            return
        }
        if text.hasPrefix("tcp://") {
            let rest = text.dropFirst("tcp://".count)
            let host: Substring
            let portText: Substring
            if rest.hasPrefix("[") {
                guard let close = rest.firstIndex(of: "]"), rest[rest.index(after: close)...].hasPrefix(":") else {
                    throw MapperError(.badEndpoint, "'\(text)': expected tcp://[ipv6]:port")
                }
                host = rest[rest.index(after: rest.startIndex)..<close]
                portText = rest[rest.index(close, offsetBy: 2)...]
            } else {
                guard let colon = rest.lastIndex(of: ":") else {
                    throw MapperError(.badEndpoint, "'\(text)': expected tcp://host:port")
                }
                host = rest[..<colon]
                portText = rest[rest.index(after: colon)...]
            }
            guard !host.isEmpty, let port = Int(portText), (1...65535).contains(port) else {
                throw MapperError(.badEndpoint, "'\(text)': expected tcp://host:port with a port from 1 to 65535")
            }
            self = .tcp(host: String(host), port: port)
            return
        }
        throw MapperError(.badEndpoint, "'\(text)': expected unix:///path/to/socket or tcp://host:port")
    }

    public var description: String {
        switch self {
        case .unix(let path): return "unix://\(path)"
        case .tcp(let host, let port): return host.contains(":") ? "tcp://[\(host)]:\(port)" : "tcp://\(host):\(port)"
        }
    }
}
