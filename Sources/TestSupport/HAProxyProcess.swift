import Foundation

/// A map a test HAProxy loads: its file and how HAProxy matches and types it.
/// A map (or ACL file: ``acl(_:match:initialLines:)``) a test HAProxy loads.
public struct TestMap: Sendable {
    public var name: String
    public var match: String
    public var valueType: String
    public var initialLines: [String]
    /// An ACL pattern file (`acl <name> <fetch> -m <match> -f <file>`), not a map.
    public var isACL = false

    public init(_ name: String, match: String = "str", valueType: String = "str", initialLines: [String] = []) {
        self.name = name
        self.match = match
        self.valueType = valueType
        self.initialLines = initialLines
    }

    /// An ACL file `<name>.acl`, matched on the client address (`ip`), a count of Host headers
    /// (`int`) or the Host header (any other match); a request it matches gets `txn.<name>` = yes.
    public static func acl(_ name: String, match: String = "str", initialLines: [String] = []) -> TestMap {
        var map = TestMap(name, match: match, initialLines: initialLines)
        map.isACL = true
        return map
    }

    var fileExtension: String { isACL ? "acl" : "map" }
}

/// A real HAProxy process on loopback, with its own configuration, runtime socket and map files in
/// a temporary directory. Started in master-worker mode so a test can reload it like an operator
/// (SIGUSR2), and stopped, killed, frozen or restarted at will. Everything is removed by `destroy()`.
public final class HAProxyProcess: @unchecked Sendable {
    public let directory: TemporaryDirectory
    public let socketPath: String
    public let httpPort: Int?
    public let maps: [TestMap]
    public let configPath: String
    /// Environment given to HAProxy (for `${VAR}` in its configuration).
    public let environment: [String: String]
    private let lock = NSLock()
    private var process: Process?
    private var logFile: FileHandle?
    /// Set when the test stops or kills the running process: any other exit is HAProxy's own,
    /// and ``destroy()`` reports it with HAProxy's log (a crash would otherwise show only as a
    /// test timing out while the socket refuses connections).
    private var exitRequested = false

    /// The HAProxy the tests run: `MAPBRIDGE_TEST_HAPROXY` (a path to any build, for testing
    /// another version), else Debian's.
    public static let executable =
        ProcessInfo.processInfo.environment["MAPBRIDGE_TEST_HAPROXY"].flatMap { $0.isEmpty ? nil : $0 }
        ?? ["/usr/sbin/haproxy", "/usr/local/sbin/haproxy", "/usr/bin/haproxy"].first {
            FileManager.default.isExecutableFile(atPath: $0)
        } ?? "haproxy"

    /// Writes the configuration and map files; `start()` launches the process.
    ///
    /// - Parameters:
    ///   - httpPort: a TCP port for a frontend that answers with each map's lookup of the Host
    ///     header (for routing checks); nil to serve only on a unix socket.
    ///   - bufsize: HAProxy's `tune.bufsize`.
    /// The runtime API's TCP port, when it listens on TCP as well.
    public let tcpPort: Int?

    ///   - mapsDirectory: where the map files go (a folder inside the process's directory, created,
    ///     for long map paths); the process's directory by default.
    public init(maps: [TestMap], httpPort: Int? = nil, bufsize: Int? = nil, tcpPort: Int? = nil, mapsDirectory: String? = nil) throws {
        self.tcpPort = tcpPort
        let directory = try TemporaryDirectory(prefix: "mapbridge-haproxy")
        self.directory = directory
        mapsFolder = mapsDirectory.map { directory.file($0) } ?? directory.path
        try FileManager.default.createDirectory(atPath: mapsFolder, withIntermediateDirectories: true)
        socketPath = directory.file("admin.sock")
        self.httpPort = httpPort
        self.maps = maps
        configPath = directory.file("haproxy.cfg")
        environment = [:]
        for map in maps {
            let contents = map.initialLines.map { $0 + "\n" }.joined()
            try contents.write(toFile: "\(mapsFolder)/\(map.name).\(map.fileExtension)", atomically: true, encoding: .utf8)
        }
        var lines = [
            "global",
            "  master-worker",
            "  stats socket \(socketPath) mode 600 level admin",
        ]
        if let tcpPort { lines.append("  stats socket ipv4@127.0.0.1:\(tcpPort) level admin") }
        lines += [
            "  stats timeout 10m",
            "  log stderr format short local0 notice",
        ]
        if let bufsize { lines.append("  tune.bufsize \(bufsize)") }
        lines += [
            "defaults",
            "  mode http",
            "  timeout connect 2s",
            "  timeout client 10s",
            "  timeout server 10s",
            "frontend lookups",
            httpPort.map { "  bind 127.0.0.1:\($0)" } ?? "  bind unix@\(directory.file("lookups.sock"))",
        ]
        for map in maps {
            let converter = "map_\(map.match)" + (map.valueType == "str" ? "" : "_\(map.valueType)")
            let sample: String
            switch map.match {
            case "ip": sample = "src"
            case "int": sample = "req.hdr_cnt(host)"
            default: sample = "req.hdr(host)"
            }
            if map.isACL {
                lines.append("  acl \(map.name) \(sample) -m \(map.match) -f \(mapsFolder)/\(map.name).acl")
                lines.append("  http-request set-var(txn.\(map.name)) str(yes) if \(map.name)")
            } else {
                lines.append("  http-request set-var(txn.\(map.name)) \(sample),\(converter)(\(mapPath(map.name)))")
            }
        }
        let answer = maps.first.map { "%[var(txn.\($0.name))]" } ?? "none"
        lines.append("  http-request return status 200 content-type text/plain lf-string \"\(answer)\\n\"")
        try (lines.joined(separator: "\n") + "\n").write(toFile: configPath, atomically: true, encoding: .utf8)
    }

    /// Runs an existing configuration file (such as config/haproxy.cfg) with `environment`, its
    /// runtime socket at `socketPath`, and map files copied from `mapsFrom` into `mapsDirectory`.
    public init(configFile: String, socketPath: String, environment: [String: String], directory: TemporaryDirectory, maps: [TestMap] = []) {
        self.tcpPort = nil
        self.directory = directory
        self.mapsFolder = directory.path
        self.socketPath = socketPath
        self.httpPort = nil
        self.maps = maps
        self.configPath = configFile
        self.environment = environment
    }

    /// The file of map (or ACL) `name`: `<name>.map`, or `<name>.acl` for an ACL.
    public func mapPath(_ name: String) -> String {
        "\(mapsFolder)/\(name).\(maps.first { $0.name == name }?.fileExtension ?? "map")"
    }
    /// Where the map files are.
    public let mapsFolder: String

    public var oracle: RuntimeOracle { RuntimeOracle(socketPath: socketPath) }

    public var endpoint: String { "unix://\(socketPath)" }

    /// The master process's pid while running.
    public var pid: Int32? { lock.withLock { process?.isRunning == true ? process?.processIdentifier : nil } }

    /// Launches HAProxy in the foreground (`-db`) and waits until its runtime socket answers.
    public func start(timeout: Double = 20) async throws {
        try? FileManager.default.removeItem(atPath: socketPath)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Self.executable)
        process.arguments = ["-db", "-f", configPath]
        if !environment.isEmpty {
            process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        }
        _ = FileManager.default.createFile(atPath: directory.file("haproxy.log"), contents: nil)
        let log = try FileHandle(forWritingTo: URL(fileURLWithPath: directory.file("haproxy.log")))
        log.seekToEndOfFile()
        process.standardOutput = log
        process.standardError = log
        try process.run()
        lock.withLock {
            self.process = process
            self.logFile = log
            exitRequested = false
        }
        let oracle = self.oracle
        do {
            try await waitUntil("HAProxy's runtime socket at \(socketPath)", timeout: timeout) {
                guard process.isRunning else { throw HAProxyProcessError.exited(self.log()) }
                return (try? oracle.run("show info", timeoutSeconds: 2).contains("Pid:")) ?? false
            }
        } catch {
            kill()
            throw error
        }
    }

    /// Stops HAProxy (SIGTERM to the master, waiting for it to exit).
    public func stop() async {
        await signalAndWait(SIGTERM)
    }

    /// Kills HAProxy at once (SIGKILL to the master and its workers).
    public func kill() {
        let process = lock.withLock {
            exitRequested = true
            return self.process
        }
        guard let process, process.isRunning else { return }
        let workers = workerPids()
        Foundation.kill(process.processIdentifier, SIGKILL)
        for pid in workers { Foundation.kill(pid, SIGKILL) }
        process.waitUntilExit()
    }

    /// Freezes (SIGSTOP) or thaws (SIGCONT) every HAProxy process.
    public func freeze() { signalAll(SIGSTOP) }
    public func thaw() { signalAll(SIGCONT) }

    /// Reloads like an operator: SIGUSR2 to the master starts a new worker with the map files as
    /// they are on disk; the old worker drains.
    public func reload() {
        if let pid { Foundation.kill(pid, SIGUSR2) }
    }

    /// Stops and starts again: every runtime change is lost, the map files are loaded anew.
    public func restart() async throws {
        await stop()
        try await start()
    }

    /// Whatever HAProxy wrote to stderr.
    public func log() -> String {
        (try? String(contentsOfFile: directory.file("haproxy.log"), encoding: .utf8)) ?? ""
    }

    /// True when the process exited although the test neither stopped nor killed it (a crash).
    public var exitedOnItsOwn: Bool { lock.withLock { !exitRequested && process.map { !$0.isRunning } == true } }

    /// Stops the process and removes the directory; reports an exit HAProxy made on its own.
    public func destroy() async {
        if exitedOnItsOwn {
            FileHandle.standardError.write(Data("HAProxy (\(Self.executable)) exited on its own during the test; its log:\n\(log())\n".utf8))
        }
        await stop()
        directory.remove()
    }

    private func signalAll(_ signal: Int32) {
        guard let pid else { return }
        Foundation.kill(pid, signal)
        for worker in workerPids() { Foundation.kill(worker, signal) }
    }

    private func signalAndWait(_ signal: Int32) async {
        let process = lock.withLock {
            exitRequested = true
            return self.process
        }
        guard let process, process.isRunning else { return }
        signalAll(SIGCONT)
        Foundation.kill(process.processIdentifier, signal)
        let deadline = Date().addingTimeInterval(10)
        while process.isRunning && Date() < deadline {
            try? await Task.sleep(for: .milliseconds(10))
        }
        if process.isRunning { kill() }
    }

    /// The pids of the master's children (the workers).
    public func workerPids() -> [Int32] {
        guard let master = pid else { return [] }
        let text = (try? String(contentsOfFile: "/proc/\(master)/task/\(master)/children", encoding: .utf8)) ?? ""
        return text.split(separator: " ").compactMap { Int32($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
    }
}

public enum HAProxyProcessError: Error, CustomStringConvertible {
    case exited(String)

    public var description: String {
        switch self {
        case .exited(let log): return "HAProxy exited during start-up: \(log)"
        }
    }
}

/// Runs `body` with a started HAProxy, and stops it and removes its files afterwards, whether
/// `body` returns or throws.
public func withHAProxy<T>(
    _ maps: [TestMap], httpPort: Int? = nil, bufsize: Int? = nil, tcpPort: Int? = nil, mapsDirectory: String? = nil,
    _ body: (HAProxyProcess) async throws -> T
) async throws -> T {
    let haproxy = try HAProxyProcess(maps: maps, httpPort: httpPort, bufsize: bufsize, tcpPort: tcpPort, mapsDirectory: mapsDirectory)
    do {
        try await haproxy.start()
        let result = try await body(haproxy)
        await haproxy.destroy()
        return result
    } catch {
        await haproxy.destroy()
        throw error
    }
}
