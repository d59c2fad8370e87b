import ArgumentParser
import Consumer
import Core
import Foundation
import Kafka
import Logging
import Mapper
import NIOCore
import Synchronization
import TestSupport

/// The benchmark of issue 5, in one run: HAProxy's own ceilings, the naive one-connection-per-
/// command client, and the `mapbridge` daemon (a child process, as users run it) on workloads
/// W1-W4, each with its peak RSS and its ratio to the ceiling it is bounded by.
@main
struct Bench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mapbridge-bench", abstract: "Measures HAProxy's ceilings, the naive client and mapbridge on workloads W1-W4, side by side.")

    @Option(help: "Events in W1, W2 and W3.") var events = 1_000_000
    @Option(help: "Keys in W1, and entries pre-filled in W3.") var keys = 100_000
    @Option(help: "Partitions of the benchmark topic (the embedded cluster keeps ~5 MB each).") var partitions: Int32 = 32
    @Option(help: "Events per second in W4.") var rate = 1000
    @Option(help: "Duration of W4 in seconds.") var seconds = 20
    @Option(help: "Entries in W4's map.") var steadyKeys = 10_000
    @Option(help: "Commands sent by the naive client.") var naiveCommands = 2000
    @Option(help: "Entries in W5's map.") var largeEntries = 5_000_000
    @Option(help: "Changes applied to W5's map.") var largeChanges = 100_000
    @Option(help: "Event formats of W1 and W2, comma-separated: json (the default format), kv.") var formats = "json,kv"
    @Option(help: "Measure only these, comma-separated: ceilings, naive, w1, w2, w3, w4, w5.") var only: String?
    @Option(help: "Record each bridge run with `perf record -g` into this directory (w1.perf.data, ...), with the bridge's log (w1.log).") var perf: String?

    @Option(help: "The HAProxy binary to measure (any build; Debian's by default). Same as MAPBRIDGE_TEST_HAPROXY.") var haproxy: String?

    func wanted(_ name: String) -> Bool { only.map { $0.split(separator: ",").contains(Substring(name)) } ?? true }

    func run() async throws {
        if let haproxy {
            // Read once, on first use, by the fixtures that start HAProxy: set before anything does.
            guard FileManager.default.isExecutableFile(atPath: haproxy) else { throw ValidationError("--haproxy: \(haproxy) is not an executable") }
            setenv("MAPBRIDGE_TEST_HAPROXY", haproxy, 1)
        }
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = .error
            return handler
        }
        guard FileManager.default.isExecutableFile(atPath: BridgeProcess.executable) else {
            throw ValidationError("build mapbridge first: \(BridgeProcess.executable) is missing")
        }
        var table = Table()
        print(
            "mapbridge-bench: HAProxy \(HAProxyProcess.versionString()), librdkafka \(librdkafkaVersion), \(ProcessInfo.processInfo.activeProcessorCount) cores"
        )
        print("workload sizes: \(events) events, \(keys) keys, \(partitions) partitions; W4 \(rate)/s for \(seconds) s on \(steadyKeys) entries\n")

        // HAProxy's ceilings and the naive client, on a map of the workload's size.
        var payloadCeiling: Double?
        var setCeiling: Double?
        if wanted("ceilings") {
            let interactive = try await Ceilings.payloadAdds(entries: events, sessionPerChunk: false)
            table.add("ceiling: payload add map (empty map), one interactive session", rate: interactive, unit: "entries/s")
            let perChunk = try await Ceilings.payloadAdds(entries: events, sessionPerChunk: true)
            table.add("ceiling: payload add map (empty map), a session per chunk (as the bridge)", rate: perChunk, unit: "entries/s")
            let payload = max(interactive, perChunk)
            let sets = try await Ceilings.pipelinedSets(mapSize: keys, commands: 20_000)
            table.add("ceiling: pipelined set map (\(keys)-entry map)", rate: sets, unit: "commands/s")
            let consume = try await Ceilings.consume(events: events, partitions: partitions)
            table.add("ceiling: librdkafka consuming from the embedded cluster", rate: consume, unit: "messages/s")
            (payloadCeiling, setCeiling) = (payload, sets)
        }
        if wanted("naive") {
            let naive = try await Ceilings.naive(commands: naiveCommands)
            table.add(
                "naive: a connection per add map (socat loop)", rate: naive, unit: "commands/s", ratio: payloadCeiling.map { naive / $0 }, ratioOf: "payload")
        }

        let workloads = Workloads(events: events, keys: keys, partitions: partitions, perfDirectory: perf)
        let formatList = try formats.split(separator: ",").map { name -> Workloads.Format in
            guard let format = Workloads.Format(rawValue: String(name)) else { throw ValidationError("--formats: \(name) is neither json nor kv") }
            return format
        }
        var bulk: [(Workloads.Kind, Workloads.Format, String, String, Double?, String)] = []
        for format in formatList {
            bulk.append((.w1, format, "w1", "W1 \(format.rawValue) \(events) events over \(keys) keys, empty map", payloadCeiling, "payload"))
        }
        for format in formatList {
            bulk.append((.w2, format, "w2", "W2 \(format.rawValue) \(events) distinct new keys", payloadCeiling, "payload"))
        }
        bulk.append((.w3, .kv, "w3", "W3 kv \(events) random set/del, \(keys) pre-filled", setCeiling, "set"))
        for (kind, format, id, name, ceiling, ceilingName) in bulk where wanted(id) {
            let outcome = try await workloads.run(kind, format: format)
            // CPU per event (the bridge's from its start; HAProxy's over the same time): on 2 cores
            // shared with HAProxy and the broker, what bounds the rate.
            let cpu = outcome.bridgeCPU.map { bridge in
                String(format: "CPU %.2f µs/event (HAProxy %.2f)", bridge * 1e6 / Double(events), (outcome.haproxyCPU ?? 0) * 1e6 / Double(events))
            }
            table.add(
                name, rate: outcome.rate, fromStart: outcome.rateFromStart, unit: "events/s", rss: outcome.peakRSS, haproxyRSS: outcome.haproxyRSS,
                entries: outcome.entries, ratio: ceiling.map { outcome.rate / $0 }, ratioOf: ceilingName, cpu: cpu)
        }
        if wanted("w4") {
            let w4 = try await Steady(rate: rate, seconds: seconds, keys: steadyKeys, logDirectory: perf).run()
            table.add(
                "W4 \(rate) events/s on \(steadyKeys) entries: p50 \(format(ms: w4.p50)) p99 \(format(ms: w4.p99)) max \(format(ms: w4.max))",
                rate: w4.applied, unit: "events/s", rss: w4.peakRSS, entries: steadyKeys)
        }
        if wanted("w5") {
            let w5 = try await Large(entries: largeEntries, changes: largeChanges, partitions: partitions, logDirectory: perf).run()
            let millions = String(format: "%.1fM", Double(largeEntries) / 1e6)
            table.add(
                "W5 \(millions)-entry map: HAProxy loads its file", seconds: w5.haproxyLoad, rss: w5.haproxyRSS, entries: largeEntries)
            table.add(
                "W5 first start, no stored state (read and adopt the live map)", seconds: w5.firstStart, versus: w5.haproxyLoad,
                rss: w5.firstPeakRSS, haproxyRSS: w5.haproxyRSS, entries: largeEntries)
            table.add(
                "W5 start with stored state and live map (load, read, compare, first change applied)", seconds: w5.startup, versus: w5.haproxyLoad,
                entries: largeEntries)
            table.add("W5 HAProxy restarted: it loads the map file again", seconds: w5.haproxyRestart, entries: largeEntries)
            table.add(
                "W5 resync after that restart (reconnect, read, compare)", seconds: w5.resync, versus: w5.haproxyLoad, entries: largeEntries
            )
            table.add(
                "W5 \(largeChanges) changes to existing keys", rate: w5.changesRate, unit: "events/s", rss: w5.peakRSS, haproxyRSS: w5.haproxyRSS,
                entries: largeEntries)
        }
        print(table.render())
    }
}

/// Copies the bridge's log into `directory` (`--perf`) as `name`.log, beside the profiles.
func keepLog(_ path: String, in directory: String?, as name: String) {
    guard let directory else { return }
    try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    try? FileManager.default.removeItem(atPath: "\(directory)/\(name).log")
    try? FileManager.default.copyItem(atPath: path, toPath: "\(directory)/\(name).log")
}

func format(ms: Double) -> String { String(format: "%.1f ms", ms) }

/// The result table, in Markdown (pasted into the README as it is).
struct Table {
    var rows: [[String]] = []

    /// - Parameters:
    ///   - rate: from the bridge's first fetch to the last event applied.
    ///   - fromStart: from starting the bridge's process to the last event applied (consumer join
    ///     and first sync included): what a user waits.
    ///   - rss, haproxyRSS: the bridge's peak RSS, and HAProxy's RSS holding the same map at the end.
    mutating func add(
        _ name: String, rate: Double, fromStart: Double? = nil, unit: String, rss: Int? = nil, haproxyRSS: Int? = nil, entries: Int? = nil,
        ratio: Double? = nil, ratioOf: String? = nil, cpu: String? = nil
    ) {
        append(
            name, figure: "\(Int(rate.rounded())) \(unit)", fromStart: fromStart.map { (Int($0.rounded()), unit) },
            ratio: ratio.map { String(format: "%.2f × %@", $0, ratioOf ?? "") }, rss: rss, rssLabel: "peak RSS", haproxyRSS: haproxyRSS, entries: entries,
            cpu: cpu)
    }

    /// A duration (W5), and its ratio to HAProxy's own time for the same map.
    mutating func add(_ name: String, seconds: Double, versus: Double? = nil, rss: Int? = nil, haproxyRSS: Int? = nil, entries: Int? = nil) {
        append(
            name, figure: String(format: "%.2f s", seconds), fromStart: nil,
            ratio: versus.flatMap { $0 > 0 ? String(format: "%.2f × HAProxy's load", seconds / $0) : nil }, rss: rss, rssLabel: "RSS",
            haproxyRSS: haproxyRSS, entries: entries)
    }

    /// One row, and its line on the console: memory in MiB and per entry, and the bridge's RSS
    /// as a ratio of HAProxy's after the row's own ratio.
    private mutating func append(
        _ name: String, figure: String, fromStart: (value: Int, unit: String)?, ratio: String?, rss: Int?, rssLabel: String, haproxyRSS: Int?,
        entries: Int?, cpu: String? = nil
    ) {
        func memory(_ bytes: Int?) -> String {
            guard let bytes else { return "" }
            return mebibytes(bytes) + (entries.flatMap { $0 > 0 ? " (\(bytes / $0) B/entry)" : nil } ?? "")
        }
        var ratios = ratio.map { [$0] } ?? []
        if let rss, let haproxyRSS, haproxyRSS > 0 { ratios.append(String(format: "RSS %.2f × HAProxy's", Double(rss) / Double(haproxyRSS))) }
        if let cpu { ratios.append(cpu) }
        rows.append([name, figure, fromStart.map { "\($0.value) \($0.unit)" } ?? "", memory(rss), memory(haproxyRSS), ratios.joined(separator: "; ")])
        let start = fromStart.map { ", \($0.value) from process start" } ?? ""
        print(
            "  \(name): \(figure)\(start)\(rss.map { ", \(rssLabel) \(memory($0))" } ?? "")\(haproxyRSS.map { ", HAProxy RSS \(memory($0))" } ?? "")\(cpu.map { ", \($0)" } ?? "")"
        )
    }

    func mebibytes(_ bytes: Int) -> String { String(format: "%.0f MiB", Double(bytes) / 1_048_576) }

    func render() -> String {
        var out =
            "\n| measurement | rate (from first fetch) | from process start | bridge peak RSS | HAProxy RSS, same map | ratios |\n|---|---|---|---|---|---|\n"
        for row in rows { out += "| " + row.joined(separator: " | ") + " |\n" }
        return out
    }
}

extension HAProxyProcess {
    /// The resident memory of HAProxy's processes (master and workers), in bytes.
    func residentBytes() -> Int? {
        guard let master = pid else { return nil }
        let pids = [master] + workerPids()
        let sizes = pids.compactMap { pid -> Int? in
            guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
                let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") })
            else { return nil }
            return line.split(separator: " ").compactMap { Int($0) }.first.map { $0 * 1024 }
        }
        return sizes.isEmpty ? nil : sizes.reduce(0, +)
    }

    /// The CPU time HAProxy's processes (master and workers) have used so far, in seconds.
    func cpuSeconds() -> Double? {
        guard let master = pid else { return nil }
        let times = ([master] + workerPids()).compactMap { processCPUSeconds(pid: $0) }
        return times.isEmpty ? nil : times.reduce(0, +)
    }

    static func versionString() -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = ["-v"]
        let pipe = Pipe()
        process.standardOutput = pipe
        try? process.run()
        process.waitUntilExit()
        let text = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        return text.split(separator: " ").dropFirst(2).first.map(String.init) ?? "?"
    }
}

/// What HAProxy alone can do, through one persistent runtime-API session (the bridge's own
/// client), and what the naive client does.
enum Ceilings {
    static func connection(_ haproxy: HAProxyProcess) async throws -> RuntimeConnection {
        try await RuntimeConnection.connect(to: RuntimeEndpoint(parsing: haproxy.endpoint))
    }

    static func payload(_ map: String, _ entries: some Sequence<(String, String)>) -> [ByteBuffer] {
        var chunker = PayloadChunker(map: map, budget: ApplierOptions().payloadBudget)
        for (key, value) in entries { chunker.append(key: key, value: value) }
        return chunker.finish().map(\.bytes)
    }

    /// Payload `add map` of `entries` new keys into an empty map: entries per second. Through
    /// the interactive session (one payload at a time), or each chunk over a non-interactive session of its
    /// own, one at a time, as the bridge sends them (HAProxy then writes no `+ ` per line).
    static func payloadAdds(entries: Int, sessionPerChunk: Bool) async throws -> Double {
        try await withHAProxy([TestMap("bench")]) { haproxy in
            let connection = try await connection(haproxy)
            let chunks = payload(haproxy.mapPath("bench"), (0..<entries).lazy.map { ("n\($0).example.com", "be_\($0 % 1000)") })
            let started = ContinuousClock.now
            let answers: [RuntimeResponse]
            if sessionPerChunk, case .unix(let path) = try RuntimeEndpoint(parsing: haproxy.endpoint) {
                answers = try await PayloadSessions.send(chunks, path: path, options: RuntimeConnectionOptions())
            } else {
                // One payload at a time, as the bridge sends them on a tcp:// socket: HAProxy 3.2.0
                // stalls (both processes at 100% CPU) when payload commands arrive back to back on
                // one interactive session (measured here; 2.4-3.0 and 3.3.0 take them pipelined).
                answers = try await connection.execute(chunks, window: 1)
            }
            let seconds = (ContinuousClock.now - started).seconds
            guard answers.allSatisfy(\.isEmpty) else { throw ValidationError("payload add refused: \(answers.first { !$0.isEmpty }!.text)") }
            await connection.close()
            return Double(entries) / seconds
        }
    }

    /// Pipelined `set map` of existing keys on a map of `mapSize` entries: commands per second.
    static func pipelinedSets(mapSize: Int, commands: Int) async throws -> Double {
        try await withHAProxy([TestMap("bench")]) { haproxy in
            let connection = try await connection(haproxy)
            let map = haproxy.mapPath("bench")
            _ = try await connection.execute(payload(map, (0..<mapSize).lazy.map { ("n\($0).example.com", "be_0") }), window: 1)
            var generator = SystemRandomNumberGenerator()
            let sets = (0..<commands).map { _ in
                RuntimeCommand.set(map, key: "n\(Int.random(in: 0..<mapSize, using: &generator)).example.com", value: "be_1")
            }
            let started = ContinuousClock.now
            let answers = try await connection.execute(sets)
            let seconds = (ContinuousClock.now - started).seconds
            guard answers.allSatisfy(\.isEmpty) else { throw ValidationError("set refused: \(answers.first { !$0.isEmpty }!.text)") }
            await connection.close()
            return Double(commands) / seconds
        }
    }

    /// librdkafka's consumer alone reading `events` small messages from the embedded cluster
    /// (what the bridge's own consumer can get at most): messages per second.
    static func consume(events: Int, partitions: Int32) async throws -> Double {
        final class Counter: KafkaConsumerDelegate, @unchecked Sendable {
            let count = Atomic<Int>(0)
            func consume(_ message: ConsumedMessage) { count.add(1, ordering: .relaxed) }
            func endOfBurst() -> FlowControl { .proceed }
            func assigned(_ partitions: [TopicPartition]) -> FlowControl { .proceed }
            func revoking(_ partitions: [TopicPartition], lost: Bool) -> [TopicPartition: Int64] { [:] }
            func committed(_ offsets: [TopicPartition: Int64], error: KafkaError?) {}
            func failed(_ error: KafkaError) {}
        }
        let cluster = try EmbeddedKafkaCluster(logger: Logger(label: "bench.cluster"))
        try cluster.createTopic("bench", partitions: partitions)
        let producer = try KafkaProducer(bootstrapServers: cluster.bootstrapServers, logger: Logger(label: "bench.producer"))
        for index in 0..<events {
            try producer.produce(topic: "bench", key: Array("k\(index % 100_000).example.com".utf8), value: Array("be_\(index % 997)".utf8))
        }
        try producer.flush(timeoutMilliseconds: 120_000)
        let counter = Counter()
        let consumer = try KafkaConsumer(
            configuration: .init(bootstrapServers: cluster.bootstrapServers, groupID: "bench-consume", topics: ["bench"]), delegate: counter,
            logger: Logger(label: "bench.consumer"))
        try consumer.start()
        var first: ContinuousClock.Instant?
        let deadline = ContinuousClock.now + .seconds(300)
        while counter.count.load(ordering: .relaxed) < events && ContinuousClock.now < deadline {
            if first == nil && counter.count.load(ordering: .relaxed) > 0 { first = .now }
            try await Task.sleep(for: .milliseconds(1))
        }
        let seconds = (ContinuousClock.now - (first ?? .now)).seconds
        await consumer.close()
        await producer.close()
        return Double(events) / seconds
    }

    /// One connection per command, as `echo "add map ..." | socat stdio SOCKET` does per line.
    static func naive(commands: Int) async throws -> Double {
        try await withHAProxy([TestMap("bench")]) { haproxy in
            let oracle = haproxy.oracle
            let map = haproxy.mapPath("bench")
            let started = ContinuousClock.now
            for index in 0..<commands { _ = try oracle.run("add map \(map) naive\(index).example.com be_\(index)") }
            return Double(commands) / (ContinuousClock.now - started).seconds
        }
    }
}

extension Duration {
    var seconds: Double {
        let (seconds, attoseconds) = components
        return Double(seconds) + Double(attoseconds) / 1e18
    }
}

/// One bridge process on one HAProxy map fed by one kv topic of the embedded cluster.
struct Setup {
    let haproxy: HAProxyProcess
    let cluster: EmbeddedKafkaCluster
    let directory: TemporaryDirectory
    let bridge: BridgeProcess
    let producer: KafkaProducer

    /// - Parameter lowLatency: the embedded cluster answers an empty fetch only after the consumer's
    ///   whole `fetch.wait.max.ms` (500 ms by default), even when messages arrive meanwhile (a real
    ///   broker answers as soon as they do); W4 lowers it to 5 ms, and the producer's linger to 0,
    ///   so that the figure measures the bridge, not the mock.
    static func make(haproxy: HAProxyProcess, partitions: Int32, format: Workloads.Format = .kv, lowLatency: Bool = false) throws -> Setup {
        let cluster = try EmbeddedKafkaCluster(logger: Logger(label: "bench.cluster"))
        try cluster.createTopic("bench", partitions: partitions)
        let directory = try TemporaryDirectory(prefix: "mapbridge-bench")
        let yaml = """
            kafka:
              brokers: "\(cluster.bootstrapServers)"
              group_id: bench
              properties: { \(lowLatency ? "fetch.wait.max.ms: \"5\"" : "") }
            haproxy:
              socket: "\(haproxy.endpoint)"
            topics:
              - name: bench
                format: \(format.rawValue)\(format == .kv ? "\n    map: bench" : "")
            maps:
              bench:
                path: \(haproxy.mapPath("bench"))
            state: { directory: \(directory.file("state")) }
            log: { level: debug }
            http: { listen: "off" }
            """
        let bridge = try BridgeProcess(yaml: yaml, directory: directory)
        let producer = try KafkaProducer(
            bootstrapServers: cluster.bootstrapServers, properties: KafkaSettings(lowLatency ? ["linger.ms": "0"] : [:]),
            logger: Logger(label: "bench.producer"))
        return Setup(haproxy: haproxy, cluster: cluster, directory: directory, bridge: bridge, producer: producer)
    }

    /// Follows the bridge's log: messages applied so far (from its `batch applied` lines), and
    /// when the first batch's first message arrived.
    final class Progress {
        let path: String
        var offset: UInt64 = 0
        var applied = 0
        var stores = 0
        var firstFetch: ContinuousClock.Instant?
        var partial = ""

        init(path: String) { self.path = path }

        func poll() {
            guard let handle = FileHandle(forReadingAtPath: path) else { return }
            defer { try? handle.close() }
            handle.seek(toFileOffset: offset)
            let data = handle.readDataToEndOfFile()
            offset += UInt64(data.count)
            let text = partial + String(decoding: data, as: UTF8.self)
            var lines = text.split(separator: "\n", omittingEmptySubsequences: false)
            partial = String(lines.removeLast())
            stores += lines.filter { $0.contains("state stored") }.count
            for line in lines where line.contains("batch applied") {
                guard let count = Self.field(line, "batch.messages") else { continue }
                if firstFetch == nil {
                    // The first batch's own duration is part of the run.
                    firstFetch = .now - .milliseconds(Self.field(line, "batch.ms") ?? 0)
                }
                applied += count
            }
        }

        static func field(_ line: Substring, _ name: String) -> Int? {
            guard let range = line.range(of: "\(name)=") else { return nil }
            return Int(line[range.upperBound...].prefix { $0.isNumber })
        }
    }

    func close() async {
        if bridge.isRunning { _ = try? await bridge.terminate(timeout: 60) }
        await producer.close()
        directory.remove()
    }
}

/// W1-W3: every event produced first, then the bridge started; timed from its first fetch to the
/// last event applied (HAProxy acknowledged it), then the map checked against the expected state.
struct Workloads {
    enum Kind { case w1, w2, w3 }
    enum Format: String { case json, kv }
    let events: Int
    let keys: Int
    let partitions: Int32
    let perfDirectory: String?

    struct Outcome {
        var rate: Double
        var rateFromStart: Double
        var peakRSS: Int?
        var haproxyRSS: Int?
        var entries: Int
        /// CPU seconds used over the run: the bridge's from its process start, HAProxy's from then.
        var bridgeCPU: Double?
        var haproxyCPU: Double?
    }

    /// One event as a producer of `format` writes it: json names the map in the value (a tombstone
    /// is a `del`); kv's key is the map key and a null value deletes.
    static func message(_ format: Format, key: String, value: String?) -> (key: [UInt8], value: [UInt8]?) {
        switch format {
        case .kv: return (Array(key.utf8), value.map { Array($0.utf8) })
        case .json:
            // Keys and values here need no JSON escaping.
            let event = value.map { #"{"map":"bench","op":"set","key":"\#(key)","value":"\#($0)"}"# } ?? #"{"map":"bench","op":"del","key":"\#(key)"}"#
            return (Array(key.utf8), Array(event.utf8))
        }
    }

    func run(_ kind: Kind, format: Format) async throws -> Outcome {
        let prefilled = kind == .w3 ? keys : 0
        let initial = (0..<prefilled).map { "k\($0).example.com be_0" }
        return try await withHAProxy([TestMap("bench", initialLines: initial)]) { haproxy in
            let setup = try Setup.make(haproxy: haproxy, partitions: partitions, format: format)
            var expected: [String: String] = [:]
            for index in 0..<prefilled { expected["k\(index).example.com"] = "be_0" }
            var generator = SystemRandomNumberGenerator()
            for index in 0..<events {
                let key: String
                var value: String? = "be_\(index % 997)"
                switch kind {
                case .w1: key = "k\(Int.random(in: 0..<keys, using: &generator)).example.com"
                case .w2: key = "n\(index).example.com"
                case .w3:
                    key = "k\(Int.random(in: 0..<keys, using: &generator)).example.com"
                    if Bool.random(using: &generator) { value = nil }
                }
                expected[key] = value
                let message = Self.message(format, key: key, value: value)
                try setup.producer.produce(topic: "bench", key: message.key, value: message.value)
            }
            try setup.producer.flush(timeoutMilliseconds: 120_000)
            let progress = Setup.Progress(path: setup.bridge.logPath)
            let processStart = ContinuousClock.now
            let haproxyCPUBefore = haproxy.cpuSeconds()
            try setup.bridge.start()
            let recorder = try perfDirectory.map { try PerfRecorder(output: "\($0)/\(kind).perf.data") }
            var finished: ContinuousClock.Instant?
            let deadline = ContinuousClock.now + .seconds(600)
            while finished == nil {
                progress.poll()
                if progress.applied >= events { finished = .now }
                guard ContinuousClock.now < deadline, setup.bridge.isRunning else {
                    throw ValidationError("\(kind): the bridge applied \(progress.applied) of \(events) events; log: \(setup.bridge.logPath)")
                }
                try await Task.sleep(for: .milliseconds(2))
            }
            let bridgeCPU = setup.bridge.cpuSeconds()
            let haproxyCPU = haproxy.cpuSeconds().flatMap { after in haproxyCPUBefore.map { after - $0 } }
            recorder?.stop()
            // The bridge's debug log beside the profile: each batch's size, strategy and time.
            keepLog(setup.bridge.logPath, in: perfDirectory, as: "\(kind)")
            let peak = setup.bridge.peakResidentBytes()
            let haproxyRSS = haproxy.residentBytes()
            let seconds = (finished! - progress.firstFetch!).seconds
            let secondsFromStart = (finished! - processStart).seconds
            // The map must be exact, or the figure means nothing.
            let (live, duplicates) = try haproxy.oracle.snapshot(of: haproxy.mapPath("bench"))
            let wanted = expected.compactMapValues { $0 }
            let exact = duplicates.isEmpty && live.count == wanted.count && wanted.allSatisfy { live[Array($0.key.utf8)] == $0.value }
            guard exact else { throw ValidationError("\(kind): HAProxy's map is not what the events say") }
            await setup.close()
            return Outcome(
                rate: Double(events) / seconds, rateFromStart: Double(events) / secondsFromStart, peakRSS: peak, haproxyRSS: haproxyRSS,
                entries: wanted.count, bridgeCPU: bridgeCPU, haproxyCPU: haproxyCPU)
        }
    }
}

/// W4: a steady rate of changes to existing keys; each change's latency from produce to visible
/// in HAProxy (`get map` polled over one session).
struct Steady {
    let rate: Int
    let seconds: Int
    let keys: Int
    /// Where the bridge's log goes (`--perf`), as w4.log.
    let logDirectory: String?

    struct Outcome {
        var p50: Double
        var p99: Double
        var max: Double
        var applied: Double
        var peakRSS: Int?
    }

    func run() async throws -> Outcome {
        let initial = (0..<keys).map { "k\($0).example.com be_0" }
        return try await withHAProxy([TestMap("bench", initialLines: initial)]) { haproxy in
            let setup = try Setup.make(haproxy: haproxy, partitions: 4, lowLatency: true)
            try setup.bridge.start()
            let map = haproxy.mapPath("bench")
            let session = try await Ceilings.connection(haproxy)
            // Ready when a first change is visible.
            try setup.producer.produce(topic: "bench", key: Array("k0.example.com".utf8), value: Array("ready".utf8))
            let ready = ContinuousClock.now + .seconds(60)
            while try await session.execute(RuntimeCommand.get(map, key: "k0.example.com")).text.contains("ready") == false {
                guard ContinuousClock.now < ready else { throw ValidationError("W4: the bridge did not start") }
                try await Task.sleep(for: .milliseconds(20))
            }
            var pending: [(key: String, value: String, sent: ContinuousClock.Instant)] = []
            var latencies: [Double] = []
            let total = rate * seconds
            let interval = Duration.seconds(1) / rate
            let started = ContinuousClock.now
            var sent = 0
            var generator = SystemRandomNumberGenerator()
            var keysInFlight = Set<String>()
            while sent < total || !pending.isEmpty {
                let now = ContinuousClock.now
                while sent < total && started + interval * sent <= now {
                    // A key not already waiting, so that each value is seen once.
                    var key: String
                    repeat { key = "k\(Int.random(in: 1..<keys, using: &generator)).example.com" } while keysInFlight.contains(key)
                    let value = "v\(sent)"
                    try setup.producer.produce(topic: "bench", key: Array(key.utf8), value: Array(value.utf8))
                    pending.append((key, value, .now))
                    keysInFlight.insert(key)
                    sent += 1
                }
                if !pending.isEmpty {
                    let answers = try await session.execute(pending.map { RuntimeCommand.get(map, key: $0.key) })
                    let seen = ContinuousClock.now
                    var still: [(key: String, value: String, sent: ContinuousClock.Instant)] = []
                    for (item, answer) in zip(pending, answers) {
                        if answer.text.contains("value=\"\(item.value)\"") {
                            latencies.append((seen - item.sent).seconds * 1000)
                            keysInFlight.remove(item.key)
                        } else {
                            still.append(item)
                        }
                    }
                    pending = still
                }
                guard ContinuousClock.now < started + .seconds(seconds + 60) else { throw ValidationError("W4: changes did not become visible") }
                try await Task.sleep(for: .microseconds(500))
            }
            let elapsed = (ContinuousClock.now - started).seconds
            let peak = setup.bridge.peakResidentBytes()
            keepLog(setup.bridge.logPath, in: logDirectory, as: "w4")
            await session.close()
            await setup.close()
            latencies.sort()
            func percentile(_ p: Double) -> Double { latencies[min(latencies.count - 1, Int(Double(latencies.count) * p))] }
            return Outcome(
                p50: percentile(0.5), p99: percentile(0.99), max: latencies.last ?? 0, applied: Double(latencies.count) / elapsed, peakRSS: peak)
        }
    }
}

/// W5: a map of millions of entries. HAProxy loads it from its file (timed, with its RSS); the
/// bridge starts once without stored state (it reads and adopts the live map, then stores it),
/// then again with that stored state (load, read the live map, compare) until a first change is
/// applied; HAProxy is restarted and the bridge's resync timed; then `changes` changes to existing
/// keys are timed from the first fetch. The whole map is checked at the end.
struct Large {
    let entries: Int
    let changes: Int
    let partitions: Int32
    /// Where the bridge's log goes (`--perf`), as w5.log.
    let logDirectory: String?

    struct Outcome {
        var haproxyLoad: Double
        var haproxyRSS: Int?
        var firstStart: Double
        var firstPeakRSS: Int?
        var startup: Double
        var haproxyRestart: Double
        var resync: Double
        var changesRate: Double
        var peakRSS: Int?
    }

    static func key(_ index: Int) -> String { "w5k\(index).example.com" }

    func run() async throws -> Outcome {
        let haproxy = try HAProxyProcess(maps: [TestMap("bench")])
        do {
            let outcome = try await run(haproxy)
            await haproxy.destroy()
            return outcome
        } catch {
            await haproxy.destroy()
            throw error
        }
    }

    private func run(_ haproxy: HAProxyProcess) async throws -> Outcome {
        let mapPath = haproxy.mapPath("bench")
        var values = (0..<entries).map { "be_\($0 % 997)" }
        do {
            guard let file = FileHandle(forWritingAtPath: mapPath) else { throw ValidationError("W5: cannot write \(mapPath)") }
            var chunk = ""
            for index in 0..<entries {
                chunk += "\(Self.key(index)) \(values[index])\n"
                if chunk.utf8.count > 1 << 20 {
                    file.write(Data(chunk.utf8))
                    chunk = ""
                }
            }
            file.write(Data(chunk.utf8))
            try file.close()
        }
        var started = ContinuousClock.now
        try await haproxy.start(timeout: 600)
        let haproxyLoad = (ContinuousClock.now - started).seconds
        let haproxyRSS = haproxy.residentBytes()
        print("  W5: HAProxy loaded \(entries) entries in \(String(format: "%.2f", haproxyLoad)) s")

        let setup = try Setup.make(haproxy: haproxy, partitions: partitions)
        var next = 0
        /// A change to an existing key, produced now; returns nothing, remembers the value.
        func change(_ index: Int) throws {
            next += 1
            values[index] = "w5v\(next)"
            try setup.producer.produce(topic: "bench", key: Array(Self.key(index).utf8), value: Array(values[index].utf8))
        }
        func waitApplied(_ progress: Setup.Progress, _ count: Int, _ what: String) async throws {
            let deadline = ContinuousClock.now + .seconds(1200)
            while progress.applied < count {
                guard ContinuousClock.now < deadline, setup.bridge.isRunning else {
                    throw ValidationError("W5: \(what): the bridge applied \(progress.applied) of \(count); log: \(setup.bridge.logPath)")
                }
                try await Task.sleep(for: .milliseconds(5))
                progress.poll()
            }
        }
        func progressFromHere() -> Setup.Progress {
            let progress = Setup.Progress(path: setup.bridge.logPath)
            progress.offset = (try? FileManager.default.attributesOfItem(atPath: setup.bridge.logPath)[.size] as? UInt64) ?? 0
            return progress
        }

        // First start: no stored state; the live map is read and adopted, a change applied, and
        // the state stored at shutdown.
        try change(0)
        try setup.producer.flush()
        var progress = progressFromHere()
        started = .now
        try setup.bridge.start()
        try await waitApplied(progress, 1, "first start")
        let firstStart = (ContinuousClock.now - started).seconds
        let firstPeakRSS = setup.bridge.peakResidentBytes()
        guard try await setup.bridge.terminate(timeout: 600) == 0 else { throw ValidationError("W5: the bridge did not stop cleanly") }

        // Start with stored state and HAProxy's live map.
        try change(1)
        try setup.producer.flush()
        progress = progressFromHere()
        started = .now
        try setup.bridge.start()
        try await waitApplied(progress, 1, "start with stored state")
        let startup = (ContinuousClock.now - started).seconds
        // HAProxy restarts once that change is in its map file: the resync then only compares
        // (restarting earlier, HAProxy would load the file without it and the bridge repair it).
        let stored = progressFromHere()
        try await waitUntil("the state stored", timeout: 600) {
            stored.poll()
            return stored.stores > 0
        }

        // HAProxy restarts from its map file; the bridge compares.
        let compared = progressFromHere()
        started = .now
        await haproxy.stop()
        try await haproxy.start(timeout: 600)
        let haproxyRestart = (ContinuousClock.now - started).seconds
        started = .now
        let deadline = ContinuousClock.now + .seconds(1200)
        while true {
            compared.poll()
            if setup.bridge.logLines(containing: "map compared with HAProxy after a restart or reload").count >= 1 { break }
            guard ContinuousClock.now < deadline, setup.bridge.isRunning else { throw ValidationError("W5: no resync after HAProxy's restart") }
            try await Task.sleep(for: .milliseconds(5))
        }
        let resync = (ContinuousClock.now - started).seconds

        // Changes to existing keys, timed from the first fetch (the bridge may apply the first
        // ones while the rest are being produced: the log is followed from before).
        progress = progressFromHere()
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<changes { try change(Int.random(in: 0..<entries, using: &generator)) }
        try setup.producer.flush(timeoutMilliseconds: 120_000)
        try await waitApplied(progress, changes, "changes")
        let changesRate = Double(changes) / (ContinuousClock.now - progress.firstFetch!).seconds
        let peakRSS = setup.bridge.peakResidentBytes()

        let (live, duplicates) = try haproxy.oracle.snapshot(of: mapPath)
        let exact =
            duplicates.isEmpty && live.count == entries && (0..<entries).allSatisfy { live[Array(Self.key($0).utf8)] == values[$0] }
        keepLog(setup.bridge.logPath, in: logDirectory, as: "w5")
        guard exact else { throw ValidationError("W5: HAProxy's map is not what the events say") }
        await setup.close()
        return Outcome(
            haproxyLoad: haproxyLoad, haproxyRSS: haproxyRSS, firstStart: firstStart, firstPeakRSS: firstPeakRSS, startup: startup,
            haproxyRestart: haproxyRestart, resync: resync, changesRate: changesRate, peakRSS: peakRSS)
    }
}

/// `perf record -g` for one workload (`--perf`), system-wide (attaching to one process with `-p`
/// misbehaves with this perf and kernel); read the bridge's share of it with
/// `perf report -i DIR/w1.perf.data --comm mapbridge --no-children`.
final class PerfRecorder {
    let pid: pid_t

    init(output: String) throws {
        try FileManager.default.createDirectory(atPath: (output as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        // Spawned with an empty signal mask: Foundation's Process passes on this process's
        // blocked signals, and perf would then never see the SIGINT that stops it.
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var mask = sigset_t()
        sigemptyset(&mask)
        posix_spawnattr_setsigmask(&attributes, &mask)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK))
        let arguments = ["perf", "record", "-q", "-g", "-F", "499", "-a", "-o", output]
        var argv: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var pid: pid_t = 0
        let status = posix_spawn(&pid, "/usr/bin/perf", nil, &attributes, argv, environ)
        guard status == 0 else { throw ValidationError("cannot start perf: \(String(cString: strerror(status)))") }
        self.pid = pid
    }

    func stop() {
        kill(pid, SIGINT)
        var status: Int32 = 0
        waitpid(pid, &status, 0)
    }
}
