import NIOCore
import NIOPosix

/// Sends payload commands (`add map [@V] M <<` and its lines) each over a session of its own,
/// non-interactive, on a unix socket.
///
/// In the interactive session HAProxy answers every payload line with a `+ ` prompt, in sends of
/// their own (about 13 reads per 12 KiB chunk). Without a prompt HAProxy answers a command once
/// (an empty line on success, the error text then an empty line) and closes the session, so a
/// chunk costs one connect, one write and one read. The chunks go one at a time: the pipeline
/// waits for them anyway, and HAProxy applies each before the next.
public enum PayloadSessions {
    /// Sends each chunk in order over a fresh session and returns HAProxy's answers; stops after
    /// the first answer that is not empty (a refused line: HAProxy kept the lines before it).
    public static func send(
        _ chunks: [ByteBuffer], path: String, options: RuntimeConnectionOptions,
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) async throws -> [RuntimeResponse] {
        let timeout = max(options.responseTimeout, options.connectTimeout)
        var answers: [RuntimeResponse] = []
        answers.reserveCapacity(chunks.count)
        for chunk in chunks {
            let answer = try await exchange(chunk, path: path, timeout: timeout, group: group)
            answers.append(answer)
            if !answer.isEmpty { break }
        }
        return answers
    }

    /// One session: connect, write the command and its payload, read the answer until HAProxy
    /// closes the session. A session silent for `timeout` is closed, and the outcome is unknown.
    static func exchange(_ command: ByteBuffer, path: String, timeout: TimeAmount, group: any EventLoopGroup) async throws -> RuntimeResponse {
        let session: NIOAsyncChannel<ByteBuffer, ByteBuffer>
        do {
            session = try await ClientBootstrap(group: group)
                .connectTimeout(timeout)
                .connect(unixDomainSocketPath: path) { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel)
                    }
                }
        } catch {
            throw MapperError(.connectFailed, "cannot connect to \(path): \(error)")
        }
        // Closing the channel ends the read below; the answer then lacks its final empty line.
        let timer = session.channel.eventLoop.scheduleTask(in: timeout) { session.channel.close(promise: nil) }
        defer { timer.cancel() }
        var answer: ByteBuffer
        do {
            answer = try await session.executeThenClose { inbound, outbound in
                try await outbound.write(command)
                var answer = ByteBuffer()
                for try await var part in inbound { answer.writeBuffer(&part) }
                return answer
            }
        } catch {
            throw MapperError(.connectionClosed, "a payload session on \(path) failed: \(error); its outcome is unknown")
        }
        // An answer ends with an empty line; anything less means the session died (or was closed
        // after `timeout`) before HAProxy answered.
        guard answer.readableBytesView.last == UInt8(ascii: "\n") else {
            throw MapperError(
                .connectionClosed,
                "HAProxy closed a payload session on \(path) without an answer (or gave none within \(timeout.nanoseconds / 1_000_000) ms); its outcome is unknown")
        }
        while answer.readableBytesView.last == UInt8(ascii: "\n") { answer.moveWriterIndex(to: answer.writerIndex - 1) }
        return RuntimeResponse(body: answer)
    }
}
