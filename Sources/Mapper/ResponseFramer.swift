import NIOCore

/// One answer of HAProxy's interactive runtime API.
public struct RuntimeResponse: Sendable, Equatable, CustomStringConvertible {
    /// The answer's text without its trailing newline and prompt; empty for a command that succeeded silently.
    public var body: ByteBuffer
    /// How many `+ ` payload prompts preceded the answer.
    public var payloadPrompts: Int

    public init(body: ByteBuffer, payloadPrompts: Int = 0) {
        self.body = body
        self.payloadPrompts = payloadPrompts
    }

    public init(_ text: String, payloadPrompts: Int = 0) {
        self.body = ByteBuffer(string: text)
        self.payloadPrompts = payloadPrompts
    }

    /// True when HAProxy answered nothing: the success of add, set, del, clear and commit.
    public var isEmpty: Bool { body.readableBytes == 0 }

    public var text: String { String(buffer: body) }

    public var description: String { isEmpty ? "<empty>" : text }
}

/// Splits the byte stream of an interactive (`prompt`) runtime-API session into answers.
///
/// In interactive mode every answer ends with the prompt `\n> `; an answer's text never contains
/// an empty line followed by `> `, so an answer ends exactly at the first `\n> ` that starts the
/// stream or follows a newline. During a payload HAProxy writes `+ ` after each line it reads;
/// those prompts precede the answer and are counted, never mistaken for text. Nothing here depends
/// on how the bytes were split across reads.
public struct ResponseFramer: Sendable {
    private var buffer: ByteBuffer
    private var atStart = true
    private var prompts = 0
    /// Bytes of the current answer already searched for its end (relative to the reader index).
    private var scanned = 0

    public init() {
        buffer = ByteBufferAllocator().buffer(capacity: 4096)
    }

    /// Adds bytes read from the socket.
    public mutating func append(_ bytes: inout ByteBuffer) {
        if buffer.readableBytes == 0 { buffer.clear() }
        buffer.writeBuffer(&bytes)
    }

    /// True while part of an answer (or payload prompts) has arrived but not its end.
    public var hasPartialAnswer: Bool { buffer.readableBytes > 0 || prompts > 0 }

    /// Payload prompts received for the answer in progress.
    public var pendingPayloadPrompts: Int { prompts }

    /// The next complete answer, or nil until more bytes arrive.
    public mutating func next() -> RuntimeResponse? {
        if atStart {
            while buffer.readableBytes >= 2,
                buffer.getInteger(at: buffer.readerIndex, as: UInt8.self) == UInt8(ascii: "+"),
                buffer.getInteger(at: buffer.readerIndex + 1, as: UInt8.self) == UInt8(ascii: " ")
            {
                buffer.moveReaderIndex(forwardBy: 2)
                prompts += 1
            }
            let readable = buffer.readableBytes
            if readable == 0 { return nil }
            if readable == 1 && buffer.getInteger(at: buffer.readerIndex, as: UInt8.self) == UInt8(ascii: "+") {
                return nil
            }
            atStart = false
            scanned = 0
        }
        let (terminator, searched) = Self.findPrompt(in: buffer, from: scanned)
        scanned = searched
        guard let terminator else { return nil }
        // The answer's text ends before the newline that closes its last line.
        let bodyLength = max(terminator - 1, 0)
        let body = buffer.readSlice(length: bodyLength)!
        buffer.moveReaderIndex(forwardBy: terminator - bodyLength + 3)
        let response = RuntimeResponse(body: body, payloadPrompts: prompts)
        prompts = 0
        atStart = true
        scanned = 0
        if buffer.readerIndex > 65536 && buffer.readableBytes < buffer.readerIndex {
            buffer.discardReadBytes()
        }
        return response
    }

    /// Finds the newline that starts the closing `\n> ` prompt, searching from `start`; also returns
    /// how far the search may resume next time.
    static func findPrompt(in buffer: ByteBuffer, from start: Int) -> (Int?, Int) {
        buffer.withUnsafeReadableBytes { bytes -> (Int?, Int) in
            let count = bytes.count
            var index = start
            while index < count {
                guard bytes[index] == UInt8(ascii: "\n") else {
                    index += 1
                    continue
                }
                if index + 2 >= count {
                    // Not enough bytes yet to tell whether this newline starts the prompt.
                    return (nil, index)
                }
                if bytes[index + 1] == UInt8(ascii: ">") && bytes[index + 2] == UInt8(ascii: " ")
                    && (index == 0 || bytes[index - 1] == UInt8(ascii: "\n"))
                {
                    return (index, index)
                }
                index += 1
            }
            return (nil, count)
        }
    }
}
