import NIOCore
import NIOPosix

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Sends payload commands (`add map [@V] M <<` and its lines) each over a session of its own,
/// non-interactive, on a unix socket.
///
/// In the interactive session HAProxy answers every payload line with a `+ ` prompt, in sends of
/// their own: measured in the benchmark's W1, about 13 reads per 12 KiB chunk and half a core of
/// the bridge's event loop (and HAProxy's sends) went to prompts alone. Without a prompt HAProxy
/// answers a command once (an empty line on success, the error text then an empty line) and
/// closes the session, so a chunk costs one connect, one write and one read. The chunks are sent
/// one at a time, blocking, on NIO's thread pool: the pipeline waits for them anyway, and a
/// blocking socket per chunk costs less than a NIO channel per chunk (the benchmark's
/// "session per chunk" ceiling was 21% lower through `NIOAsyncChannel`).
public enum PayloadSessions {
    /// Sends each chunk in order over a fresh session and returns HAProxy's answers; stops after
    /// the first answer that is not empty (a refused line: HAProxy kept the lines before it).
    public static func send(_ chunks: [ByteBuffer], path: String, options: RuntimeConnectionOptions) async throws -> [RuntimeResponse] {
        let timeout = max(options.responseTimeout, options.connectTimeout)
        return try await NIOThreadPool.singleton.runIfActive {
            var answers: [RuntimeResponse] = []
            answers.reserveCapacity(chunks.count)
            for chunk in chunks {
                let answer = try exchange(chunk, path: path, timeout: timeout)
                answers.append(answer)
                if !answer.isEmpty { break }
            }
            return answers
        }
    }

    /// One session: connect, write the command and its payload, read the answer until HAProxy
    /// closes the session.
    static func exchange(_ command: ByteBuffer, path: String, timeout: TimeAmount) throws -> RuntimeResponse {
        #if os(Linux)
        let descriptor = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        #else
        let descriptor = socket(AF_UNIX, SOCK_STREAM, 0)
        #endif
        guard descriptor >= 0 else { throw MapperError(.connectFailed, "socket(): \(lastError())") }
        defer { close(descriptor) }
        var seconds = timeval(tv_sec: Int(timeout.nanoseconds / 1_000_000_000), tv_usec: Int((timeout.nanoseconds % 1_000_000_000) / 1000))
        _ = setsockopt(descriptor, SOL_SOCKET, SO_RCVTIMEO, &seconds, socklen_t(MemoryLayout<timeval>.size))
        _ = setsockopt(descriptor, SOL_SOCKET, SO_SNDTIMEO, &seconds, socklen_t(MemoryLayout<timeval>.size))

        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let pathBytes = Array(path.utf8)
        let capacity = MemoryLayout.size(ofValue: address.sun_path)
        guard pathBytes.count < capacity else { throw MapperError(.connectFailed, "socket path too long: \(path)") }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: pathBytes)
            raw[pathBytes.count] = 0
        }
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard connected == 0 else { throw MapperError(.connectFailed, "cannot connect to \(path): \(lastError())") }

        try command.withUnsafeReadableBytes { bytes in
            var sent = 0
            while sent < bytes.count {
                let written = write(descriptor, bytes.baseAddress! + sent, bytes.count - sent)
                if written < 0 && errno == EINTR { continue }
                guard written > 0 else {
                    throw MapperError(.connectionClosed, "writing a payload to \(path): \(lastError()); its outcome is unknown")
                }
                sent += written
            }
        }

        var answer = ByteBuffer()
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = buffer.withUnsafeMutableBytes { read(descriptor, $0.baseAddress!, $0.count) }
            if count < 0 && errno == EINTR { continue }
            if count < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) {
                throw MapperError(.timeout, "HAProxy did not answer a payload on \(path) within \(timeout.nanoseconds / 1_000_000) ms; its outcome is unknown")
            }
            guard count >= 0 else { throw MapperError(.connectionClosed, "reading from \(path): \(lastError()); the payload's outcome is unknown") }
            if count == 0 { break }
            answer.writeBytes(buffer[..<count])
        }
        // An answer ends with an empty line; nothing at all means the session died before answering.
        guard answer.readableBytesView.last == UInt8(ascii: "\n") else {
            throw MapperError(.connectionClosed, "HAProxy closed a payload session on \(path) without an answer; its outcome is unknown")
        }
        while answer.readableBytesView.last == UInt8(ascii: "\n") { answer.moveWriterIndex(to: answer.writerIndex - 1) }
        return RuntimeResponse(body: answer)
    }

    private static func lastError() -> String { String(cString: strerror(errno)) }
}
