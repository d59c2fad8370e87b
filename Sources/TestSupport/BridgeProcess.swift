import Foundation

/// The `mapbridge` executable run as a child process, as a user runs it: a configuration file, a
/// log file, and signals (SIGTERM, SIGKILL, SIGSTOP...).
public final class BridgeProcess: @unchecked Sendable {
    public let configPath: String
    public let logPath: String
    private let lock = NSLock()
    private var process: Process?
    public private(set) var starts = 0

    /// The `mapbridge` binary built next to the running test binary.
    public static let executable: String = {
        let me = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        var directory = URL(fileURLWithPath: me).deletingLastPathComponent()
        // Inside an .xctest bundle on some platforms the binary sits deeper.
        while directory.path != "/" && !FileManager.default.isExecutableFile(atPath: directory.appendingPathComponent("mapbridge").path) {
            directory = directory.deletingLastPathComponent()
        }
        return directory.appendingPathComponent("mapbridge").path
    }()

    public init(yaml: String, directory: TemporaryDirectory, name: String = "bridge") throws {
        configPath = directory.file("\(name).yaml")
        logPath = directory.file("\(name).log")
        try yaml.write(toFile: configPath, atomically: true, encoding: .utf8)
        _ = FileManager.default.createFile(atPath: logPath, contents: nil)
    }

    /// Starts the daemon (appending to its log), in this process's environment with `environment`
    /// set over it (a nil value removes the variable).
    public func start(arguments: [String] = [], environment extra: [String: String?] = [:]) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Self.executable)
        process.arguments = ["run", "--config", configPath] + arguments
        var environment = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("MAPBRIDGE_") }
        environment["TEST_LOG_LEVEL"] = nil
        for (name, value) in extra { environment[name] = value }
        process.environment = environment
        let log = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
        log.seekToEndOfFile()
        process.standardOutput = log
        process.standardError = log
        try process.run()
        lock.withLock {
            self.process = process
            starts += 1
        }
    }

    /// Whether the process has taken over SIGTERM (caught or ignored, in /proc/PID/status):
    /// before that, as for any program, the signal's default action ends it.
    public var handlesSIGTERM: Bool {
        guard let pid, let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return false }
        let bit = UInt64(1) << UInt64(SIGTERM - 1)
        return status.split(separator: "\n").contains { line in
            guard line.hasPrefix("SigCgt:") || line.hasPrefix("SigIgn:") else { return false }
            let hex = line.split(separator: "\t").last.map { $0.trimmingCharacters(in: .whitespaces) } ?? ""
            return (UInt64(hex, radix: 16) ?? 0) & bit != 0
        }
    }

    public var pid: Int32? { lock.withLock { process?.isRunning == true ? process?.processIdentifier : nil } }
    public var isRunning: Bool { pid != nil }

    public func signal(_ number: Int32) {
        if let pid { kill(pid, number) }
    }

    /// SIGKILL, and waits for the process to be gone.
    public func kill9() {
        guard let process = lock.withLock({ self.process }), process.isRunning else { return }
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }

    /// Waits for the process to exit and returns its status.
    public func waitForExit(timeout: Double = 30) async throws -> Int32 {
        guard let process = lock.withLock({ self.process }) else { return -1 }
        try await waitUntil("mapbridge to exit", timeout: timeout) { !process.isRunning }
        return process.terminationStatus
    }

    /// SIGTERM, then waits for the exit status.
    public func terminate(timeout: Double = 30) async throws -> Int32 {
        signal(SIGTERM)
        return try await waitForExit(timeout: timeout)
    }

    /// The resident memory of the process, in bytes.
    public func residentBytes() -> Int? {
        guard let pid, let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return nil }
        guard let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }) else { return nil }
        return line.split(separator: " ").compactMap { Int($0) }.first.map { $0 * 1024 }
    }

    /// The peak resident memory of the process so far (VmHWM), in bytes.
    public func peakResidentBytes() -> Int? {
        guard let pid, let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return nil }
        guard let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") }) else { return nil }
        return line.split(separator: " ").compactMap { Int($0) }.first.map { $0 * 1024 }
    }

    /// The CPU time the process has used so far (user and system, every thread), in seconds.
    public func cpuSeconds() -> Double? {
        guard let pid else { return nil }
        return processCPUSeconds(pid: pid)
    }

    public func log() -> String {
        (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? ""
    }

    public func logLines(containing text: String) -> [Substring] {
        log().split(separator: "\n").filter { $0.contains(text) }
    }
}

/// What was produced, to compute the state a prefix of the log describes.
public final class EventLog: @unchecked Sendable {
    /// One produced change: the partition and offset Kafka gave it, the key and the value (nil: delete).
    public struct Event: Sendable {
        public var topic: String
        public var partition: Int32
        public var offset: Int64
        public var map: String
        public var key: String
        public var value: String?

        public init(topic: String, partition: Int32, offset: Int64, map: String, key: String, value: String?) {
            self.topic = topic
            self.partition = partition
            self.offset = offset
            self.map = map
            self.key = key
            self.value = value
        }
    }

    private let lock = NSLock()
    private var events: [Event] = []
    private var failures = 0

    public init() {}

    public func record(_ event: Event) { lock.withLock { events.append(event) } }
    public func recordFailure() { lock.withLock { failures += 1 } }

    public var count: Int { lock.withLock { events.count } }

    /// Every event as `topic\tpartition\toffset\tmap\tkey\tvalue` lines (`-` for a delete), for
    /// inspecting a failed test offline.
    public func dump() -> String {
        lock.withLock { events }.map { "\($0.topic)\t\($0.partition)\t\($0.offset)\t\($0.map)\t\($0.key)\t\($0.value ?? "-")" }.joined(separator: "\n") + "\n"
    }

    /// Where the key's last event went (`topic:partition@offset`).
    public func lastPartition(of key: String, map: String) -> String {
        let last = lock.withLock { events }.filter { $0.map == map && $0.key == key }.max { ($0.partition, $0.offset) < ($1.partition, $1.offset) }
        return last.map { "\($0.topic):\($0.partition)@\($0.offset)" } ?? "no event"
    }

    /// The next offset after every recorded event, per `topic:partition`.
    public func ends() -> [String: Int64] {
        var ends: [String: Int64] = [:]
        for event in lock.withLock({ events }) {
            let name = "\(event.topic):\(event.partition)"
            ends[name] = max(ends[name] ?? 0, event.offset + 1)
        }
        return ends
    }
    public var deliveryFailures: Int { lock.withLock { failures } }

    /// The state of `map` after every event (in each partition's offset order).
    public func state(of map: String) -> [String: String] {
        state(of: map, below: nil)
    }

    /// The state of `map` after the events below `offsets` (next offset per `topic:partition`);
    /// nil: after every event.
    public func state(of map: String, below offsets: [String: Int64]?) -> [String: String] {
        let sorted = lock.withLock { events }.filter { $0.map == map }.sorted { ($0.topic, $0.partition, $0.offset) < ($1.topic, $1.partition, $1.offset) }
        var state: [String: String] = [:]
        for event in sorted {
            if let offsets, event.offset >= offsets["\(event.topic):\(event.partition)"] ?? 0 { continue }
            state[event.key] = event.value
        }
        return state
    }

    /// Whether `live` holds, for every key, the value of the key's last event below `committed`
    /// or of a later event of the key: HAProxy is never behind what was committed.
    public func isNotBehind(_ live: [String: String], map: String, committed: [String: Int64]) -> (Bool, String) {
        let sorted = lock.withLock { events }.filter { $0.map == map }.sorted { ($0.topic, $0.partition, $0.offset) < ($1.topic, $1.partition, $1.offset) }
        var history: [String: [(committed: Bool, value: String?)]] = [:]
        for event in sorted {
            let isCommitted = event.offset < committed["\(event.topic):\(event.partition)"] ?? 0
            history[event.key, default: []].append((isCommitted, event.value))
        }
        for (key, values) in history {
            guard let lastCommitted = values.lastIndex(where: \.committed) else { continue }
            let allowed = values[lastCommitted...].map(\.value)
            if !allowed.contains(where: { $0 == live[key] }) {
                return (false, "key \(key): HAProxy holds \(live[key] ?? "nothing"), committed events say \(String(describing: values[lastCommitted].value))")
            }
        }
        return (true, "")
    }
}

/// The CPU time process `pid` has used so far (user and system, every thread: `utime` and `stime`
/// of `/proc/PID/stat`), in seconds; nil once it is gone.
public func processCPUSeconds(pid: Int32) -> Double? {
    guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8), let close = stat.lastIndex(of: ")") else { return nil }
    // After the command name (which may hold spaces): state is field 3, utime 14, stime 15.
    let fields = stat[stat.index(after: close)...].split(separator: " ")
    guard fields.count > 12, let user = Double(fields[11]), let system = Double(fields[12]) else { return nil }
    return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
}
