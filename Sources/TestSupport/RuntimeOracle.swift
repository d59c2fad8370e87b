import Foundation

/// An independent, deliberately simple runtime-API client for checking what HAProxy holds: one
/// non-interactive connection per command (HAProxy answers and closes), plain blocking sockets.
/// Tests use it as the oracle so that mapbridge's own client is never checked against itself.
public struct RuntimeOracle: Sendable {
    public let socketPath: String

    public init(socketPath: String) {
        self.socketPath = socketPath
    }

    /// Sends one command line and returns HAProxy's whole answer.
    public func run(_ command: String, timeoutSeconds: Int = 30) throws -> String {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw POSIXError(.EIO) }
        defer { close(fd) }
        var timeout = timeval(tv_sec: timeoutSeconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        guard Self.connect(fd, socketPath) else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
        var line = Array(command.utf8)
        if line.last != UInt8(ascii: "\n") { line.append(UInt8(ascii: "\n")) }
        var sent = 0
        while sent < line.count {
            let n = line[sent...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            guard n > 0 else { throw POSIXError(.EPIPE) }
            sent += n
        }
        var answer: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
            if n == 0 { break }
            answer.append(contentsOf: chunk[..<n])
        }
        return String(decoding: answer, as: UTF8.self)
    }

    /// True when the socket accepts a connection.
    public func isAccepting() -> Bool {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        return Self.connect(fd, socketPath)
    }

    static func connect(_ fd: Int32, _ path: String) -> Bool {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else { return false }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Foundation.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        return result == 0
    }

    /// The entries of `show map <map>`, in HAProxy's order, as (key, value) pairs; for an ACL file
    /// (a path ending in `.acl`, as ``TestMap/acl(_:match:initialLines:)`` names them), `show acl`'s
    /// patterns with empty values.
    public func entries(of map: String) throws -> [(key: String, value: String)] {
        let answer = try run("show \(map.hasSuffix(".acl") ? "acl" : "map") \(map)")
        var result: [(String, String)] = []
        for line in answer.split(separator: "\n", omittingEmptySubsequences: true) {
            let parts = line.split(separator: " ", maxSplits: 2, omittingEmptySubsequences: false)
            guard parts.count >= 2, parts[0].hasPrefix("0x") else { continue }
            result.append((String(parts[1]), parts.count > 2 ? String(parts[2]) : ""))
        }
        return result
    }

    /// The map as a dictionary keyed by each key's UTF-8 bytes (HAProxy compares bytes, not
    /// Unicode text), and the keys that appear more than once.
    public func snapshot(of map: String) throws -> (entries: [[UInt8]: String], duplicates: [String]) {
        var entries: [[UInt8]: String] = [:]
        var duplicates: [String] = []
        for (key, value) in try self.entries(of: map) {
            let bytes = Array(key.utf8)
            if entries[bytes] != nil { duplicates.append(key) } else { entries[bytes] = value }
        }
        return (entries, duplicates)
    }

    /// `show info`'s fields.
    public func info() throws -> [String: String] {
        var fields: [String: String] = [:]
        for line in try run("show info").split(separator: "\n") {
            guard let colon = line.firstIndex(of: ":") else { continue }
            fields[String(line[..<colon])] = String(line[line.index(after: colon)...].drop(while: { $0 == " " }))
        }
        return fields
    }

    /// The paths of the maps HAProxy has loaded (`show map` without an argument).
    public func loadedMaps() throws -> [String] {
        try run("show map").split(separator: "\n").compactMap { line in
            guard let open = line.firstIndex(of: "("), let close = line.firstIndex(of: ")"), !line.hasPrefix("#") else { return nil }
            return String(line[line.index(after: open)..<close])
        }
    }
}
