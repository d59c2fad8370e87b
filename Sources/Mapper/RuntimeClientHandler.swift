import DequeModule
import NIOCore

/// A list of commands to send in order, and where to deliver their answers.
struct RuntimeJob: Sendable {
    var commands: [ByteBuffer]
    /// The most commands written and not yet answered.
    var window: Int
    /// Stop writing further commands of this job after the first non-empty answer.
    var stopAfterFailure: Bool
    var promise: EventLoopPromise<[RuntimeResponse]>
}

/// Drives one runtime-API session on its event loop: writes each job's commands while keeping at
/// most `window` of them unanswered, pairs every answer with its command by order, and fails
/// everything in flight when the connection ends or stops making progress.
///
/// Answers come back in command order on one session, so pairing by position is exact as long as
/// the framing is (``ResponseFramer``). An answer that arrives when no command is in flight means
/// the stream is out of step: the connection is closed rather than trusted.
final class RuntimeClientHandler: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = RuntimeJob
    typealias OutboundOut = ByteBuffer

    private struct ActiveJob {
        var job: RuntimeJob
        var written = 0
        var responses: [RuntimeResponse] = []
        var stopped = false

        var unanswered: Int { written - responses.count }
        var finished: Bool { unanswered == 0 && (written == job.commands.count || stopped) }
    }

    private var framer = ResponseFramer()
    private var jobs = Deque<ActiveJob>()
    private var failure: MapperError?
    private let progressTimeout: TimeAmount
    private var lastProgress = NIODeadline.now()
    private var timer: Scheduled<Void>?

    init(progressTimeout: TimeAmount) {
        self.progressTimeout = progressTimeout
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let job = unwrapOutboundIn(data)
        promise?.succeed(())
        if let failure {
            job.promise.fail(failure)
            return
        }
        if job.commands.isEmpty {
            job.promise.succeed([])
            return
        }
        jobs.append(ActiveJob(job: job))
        if jobs.count == 1 { lastProgress = .now() }
        pump(context: context)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var bytes = unwrapInboundIn(data)
        lastProgress = .now()
        framer.append(&bytes)
        while let response = framer.next() {
            guard !jobs.isEmpty, jobs[0].unanswered > 0 else {
                fail(context: context, MapperError(.protocolViolation, "HAProxy sent an answer with no command in flight: '\(response.text.prefix(200))'"))
                return
            }
            jobs[0].responses.append(response)
            if jobs[0].job.stopAfterFailure && !response.isEmpty { jobs[0].stopped = true }
            if jobs[0].finished {
                let done = jobs.removeFirst()
                done.job.promise.succeed(done.responses)
            }
        }
        pump(context: context)
    }

    func channelInactive(context: ChannelHandlerContext) {
        let detail: String
        if framer.pendingPayloadPrompts > 0 {
            detail =
                "HAProxy closed the connection after \(framer.pendingPayloadPrompts) payload prompts without answering (a command larger than tune.bufsize ends this way)"
        } else {
            detail = "HAProxy closed the connection"
        }
        fail(context: context, MapperError(.connectionClosed, detail))
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        let mapped = (error as? MapperError) ?? MapperError(.connectionClosed, "connection error: \(error)")
        fail(context: context, mapped)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        timer?.cancel()
        failAll(failure ?? MapperError(.connectionClosed, "connection handler removed"))
    }

    /// Writes as many commands of the oldest job as its window allows.
    private func pump(context: ChannelHandlerContext) {
        guard failure == nil, !jobs.isEmpty else { return }
        var wrote = false
        while !jobs[0].stopped, jobs[0].written < jobs[0].job.commands.count, jobs[0].unanswered < jobs[0].job.window {
            let command = jobs[0].job.commands[jobs[0].written]
            jobs[0].written += 1
            context.write(wrapOutboundOut(command), promise: nil)
            wrote = true
        }
        if wrote {
            context.flush()
            armTimer(context: context)
        }
    }

    private func armTimer(context: ChannelHandlerContext) {
        guard timer == nil else { return }
        let deadline = lastProgress + progressTimeout
        timer = context.eventLoop.assumeIsolated().scheduleTask(deadline: deadline) { [self] in
            self.timer = nil
            guard !self.jobs.isEmpty, self.jobs[0].unanswered > 0 else { return }
            if NIODeadline.now() >= self.lastProgress + self.progressTimeout {
                let seconds = Double(self.progressTimeout.nanoseconds) / 1e9
                self.fail(context: context, MapperError(.timeout, "HAProxy sent nothing for \(seconds) s with \(self.jobs[0].unanswered) commands unanswered"))
            } else {
                self.armTimer(context: context)
            }
        }
    }

    private func fail(context: ChannelHandlerContext, _ error: MapperError) {
        if failure == nil { failure = error }
        timer?.cancel()
        timer = nil
        failAll(error)
        context.close(promise: nil)
    }

    private func failAll(_ error: MapperError) {
        while let job = jobs.popFirst() {
            job.job.promise.fail(RuntimeJobFailure(error: error, answered: job.responses))
        }
    }
}

/// A job that could not finish: the error, and the answers received before it (the commands
/// after them have an unknown outcome).
public struct RuntimeJobFailure: Error, Sendable, CustomStringConvertible {
    public var error: MapperError
    public var answered: [RuntimeResponse]

    public var description: String { "\(error) (\(answered.count) commands answered before)" }
}
