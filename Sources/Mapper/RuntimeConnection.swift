import Core
import Logging
import NIOCore
import NIOPosix

/// Settings of one runtime-API session.
public struct RuntimeConnectionOptions: Sendable, Equatable {
    /// How long to wait for the socket to accept.
    public var connectTimeout: TimeAmount = .seconds(5)
    /// How long HAProxy may stay silent while commands are unanswered before the session is
    /// declared dead (their outcome is then unknown).
    public var responseTimeout: TimeAmount = .seconds(15)
    /// `set timeout cli` for the session, so HAProxy keeps it open while idle.
    public var cliTimeoutSeconds: Int = 3600
    /// The most single-line commands in flight at once.
    public var window: Int = 128

    public init() {}
}

/// One persistent, interactive session with HAProxy's runtime API.
///
/// The session is switched to interactive mode (`prompt`) so every answer is framed, given a long
/// `set timeout cli`, and then carries pipelined commands: at most ``RuntimeConnectionOptions/window``
/// in flight, answers paired with commands by order. When the connection breaks, every command in
/// flight fails with ``RuntimeJobFailure`` carrying the answers received before the break.
public final class RuntimeConnection: Sendable {
    public let endpoint: RuntimeEndpoint
    public let options: RuntimeConnectionOptions
    private let channel: any Channel

    private init(endpoint: RuntimeEndpoint, options: RuntimeConnectionOptions, channel: any Channel) {
        self.endpoint = endpoint
        self.options = options
        self.channel = channel
    }

    /// Connects, enters interactive mode and sets the CLI timeout.
    public static func connect(
        to endpoint: RuntimeEndpoint,
        options: RuntimeConnectionOptions = .init(),
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) async throws -> RuntimeConnection {
        let timeout = options.responseTimeout
        let bootstrap = ClientBootstrap(group: group)
            .connectTimeout(options.connectTimeout)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(RuntimeClientHandler(progressTimeout: timeout))
                }
            }
        let channel: any Channel
        do {
            switch endpoint {
            case .unix(let path):
                channel = try await bootstrap.connect(unixDomainSocketPath: path).get()
            case .tcp(let host, let port):
                channel = try await bootstrap.connect(host: host, port: port).get()
            }
        } catch {
            throw MapperError(.unreachable, "cannot connect to \(endpoint): \(error)")
        }
        let connection = RuntimeConnection(endpoint: endpoint, options: options, channel: channel)
        do {
            let answers = try await connection.execute([RuntimeCommand.prompt(), RuntimeCommand.setTimeout(seconds: options.cliTimeoutSeconds)])
            if let bad = answers.first(where: { !$0.isEmpty }) {
                throw MapperError(.protocolViolation, "unexpected answer while opening the session: '\(bad.text.prefix(200))'")
            }
        } catch {
            await connection.close()
            throw Self.unwrap(error)
        }
        return connection
    }

    /// Sends the commands in order, at most `window` unanswered at once, and returns one answer per
    /// command. With `stopAfterFailure`, commands after the first non-empty answer are not sent and
    /// the result is shorter than `commands`.
    ///
    /// Throws ``RuntimeJobFailure`` when the session ends first.
    public func execute(_ commands: [ByteBuffer], window: Int? = nil, stopAfterFailure: Bool = false) async throws -> [RuntimeResponse] {
        let promise = channel.eventLoop.makePromise(of: [RuntimeResponse].self)
        let job = RuntimeJob(commands: commands, window: max(1, window ?? options.window), stopAfterFailure: stopAfterFailure, promise: promise)
        // The handler takes the job (and completes this write) unless the channel is already gone,
        // in which case nothing else would ever complete the job's promise.
        let written = channel.eventLoop.makePromise(of: Void.self)
        written.futureResult.whenFailure { error in
            promise.fail(RuntimeJobFailure(error: MapperError(.connectionClosed, "the session with HAProxy is closed (\(error))"), answered: []))
        }
        channel.writeAndFlush(job, promise: written)
        return try await promise.futureResult.get()
    }

    /// Sends one command and returns its answer.
    public func execute(_ command: ByteBuffer) async throws -> RuntimeResponse {
        try await execute([command], window: 1)[0]
    }

    public var isActive: Bool { channel.isActive }

    /// Calls `body` once the session has ended, whoever ended it (HAProxy stopping, a reload's
    /// old worker leaving, a close here).
    public func whenClosed(_ body: @escaping @Sendable () -> Void) {
        channel.closeFuture.whenComplete { _ in body() }
    }

    /// Closes the session; commands in flight fail.
    public func close() async {
        try? await channel.close()
    }

    static func unwrap(_ error: any Error) -> MapperError {
        if let failure = error as? RuntimeJobFailure { return failure.error }
        if let error = error as? MapperError { return error }
        return MapperError(.connectionClosed, "\(error)")
    }
}

extension RuntimeConnection {
    /// The maps (or ACL files) HAProxy has loaded, as it names them (`show map` / `show acl`
    /// without an argument); ACLs written inline in its configuration, which have no file, are left out.
    public func loadedPaths(of kind: MapKind) async throws -> Set<String> {
        Set(LoadedMap.parseListing(try await execute(RuntimeCommand.listMaps(kind: kind)).text).map(\.path).filter { !$0.isEmpty })
    }
}
