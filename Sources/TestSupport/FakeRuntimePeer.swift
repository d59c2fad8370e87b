import Foundation

/// A scripted stand-in for HAProxy's runtime socket, for unit tests of framing and error paths
/// (never for integration tests, which use real HAProxy). It reads commands the way HAProxy does
/// (a line, or a `<<` line and its payload up to an empty line) and answers each with what the
/// script returns, written in pieces of `writeSize` bytes to exercise reassembly.
public final class FakeRuntimePeer: @unchecked Sendable {
    /// What the peer does with one command.
    public enum Action: Sendable {
        /// Answers with this text (empty for silent success), framed as interactive HAProxy does.
        case answer(String)
        /// Writes these exact bytes.
        case raw(String)
        /// Closes the connection without answering.
        case close
        /// Writes these exact bytes, then closes the connection.
        case rawThenClose(String)
    }

    public let socketPath: String
    private let directory: TemporaryDirectory
    private let listener: Int32
    private let lock = NSLock()
    private var received: [String] = []
    private let script: @Sendable (String) -> Action
    private let writeSize: Int
    private var thread: Thread?

    public init(writeSize: Int = 1 << 20, script: @escaping @Sendable (String) -> Action) throws {
        directory = try TemporaryDirectory(prefix: "mapbridge-fakepeer")
        socketPath = directory.file("fake.sock")
        self.script = script
        self.writeSize = writeSize
        listener = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(socketPath.utf8)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listener, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard bound == 0, listen(listener, 8) == 0 else { throw POSIXError(.EADDRINUSE) }
        let thread = Thread { [self] in self.serve() }
        self.thread = thread
        thread.start()
    }

    public var endpoint: String { "unix://\(socketPath)" }

    /// The commands received so far (a payload command includes its lines).
    public var commands: [String] { lock.withLock { received } }

    public func shutdown() {
        Foundation.shutdown(listener, Int32(SHUT_RDWR))
        close(listener)
        directory.remove()
    }

    private func serve() {
        while true {
            let fd = accept(listener, nil, nil)
            if fd < 0 { return }
            handle(fd)
            close(fd)
        }
    }

    private func handle(_ fd: Int32) {
        var pending: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        var payload: [String]? = nil
        while true {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n <= 0 { return }
            pending.append(contentsOf: chunk[..<n])
            while let newline = pending.firstIndex(of: UInt8(ascii: "\n")) {
                let line = String(decoding: pending[..<newline], as: UTF8.self)
                pending.removeSubrange(...newline)
                var command: String
                var prompts = 0
                if var lines = payload {
                    if line.isEmpty {
                        command = lines.joined(separator: "\n")
                        prompts = lines.count
                        payload = nil
                    } else {
                        lines.append(line)
                        payload = lines
                        continue
                    }
                } else if line.hasSuffix(" <<") {
                    payload = [line]
                    continue
                } else {
                    command = line
                }
                lock.withLock { received.append(command) }
                let bytes: [UInt8]
                var closeAfter = false
                switch script(command) {
                case .close:
                    return
                case .raw(let text):
                    bytes = Array(text.utf8)
                case .rawThenClose(let text):
                    bytes = Array(text.utf8)
                    closeAfter = true
                case .answer(let text):
                    let plus = String(repeating: "+ ", count: prompts)
                    bytes = Array((plus + (text.isEmpty ? "\n> " : text + "\n\n> ")).utf8)
                }
                var offset = 0
                while offset < bytes.count {
                    let end = min(offset + writeSize, bytes.count)
                    let written = bytes[offset..<end].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
                    if written <= 0 { return }
                    offset += written
                }
                if closeAfter { return }
            }
        }
    }
}
