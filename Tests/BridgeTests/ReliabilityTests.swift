import Bridge
import Consumer
import Core
import Foundation
import Kafka
import TestSupport
import Testing

/// Issue 3's reliability tests: the daemon runs as a child process (as a user runs it) between a
/// real HAProxy and the embedded Kafka cluster hosted by the test process, and is killed, stopped,
/// frozen and restarted while events stream. Each test prints a `reliability:` line with its figures.
@Suite("Reliability (the daemon as a child process)", .serialized)
struct ReliabilityTests {
    /// Produces keyed events for two maps (json to "changes", kv to "routes") and records them.
    final class Workload: @unchecked Sendable {
        let producer: KafkaProducer
        let log = EventLog()
        let keys: Int
        private let lock = NSLock()
        private var generator = SystemRandomNumberGenerator()
        private(set) var produced = 0

        init(cluster: EmbeddedKafkaCluster, keys: Int) throws {
            producer = try KafkaProducer(bootstrapServers: cluster.bootstrapServers, logger: testLogger("test.workload"))
            self.keys = keys
        }

        /// Queues `count` random changes (set or delete, json or kv).
        func produce(_ count: Int) throws {
            for _ in 0..<count {
                let (key, value, json) = lock.withLock {
                    let key = "k\(Int.random(in: 0..<keys, using: &generator)).example.com"
                    let value = Int.random(in: 0..<5, using: &generator) == 0 ? nil : "be_\(Int.random(in: 0..<1000, using: &generator))"
                    return (key, value, Bool.random(using: &generator))
                }
                try produce(key: key, value: value, json: json)
            }
        }

        /// Queues one change of `key` (a delete when `value` is nil), to "changes" as json or to
        /// "routes" as kv.
        func produce(key: String, value: String?, json: Bool) throws {
            lock.withLock { produced += 1 }
            let topic = json ? "changes" : "routes"
            let map = json ? "hosts" : "routes"
            let payload = json ? Array(EndToEndTests.jsonEvent("hosts", key, value).utf8) : value.map { Array($0.utf8) }
            let log = self.log
            try producer.produce(topic: topic, key: Array(key.utf8), value: payload) { result in
                switch result {
                case .success(let delivered):
                    log.record(.init(topic: topic, partition: delivered.partition, offset: delivered.offset, map: map, key: key, value: value))
                case .failure:
                    log.recordFailure()
                }
            }
        }

        /// Produces changes in slices at a steady rate (the workload's pace) until ``Stream/stop()``.
        func start(slice: Int = 100, pause: Duration = .milliseconds(50)) -> Stream {
            let stopped = Locked(false)
            let task = Task {
                while !stopped.value {
                    try produce(slice)
                    try await Task.sleep(for: pause)
                }
                try producer.flush()
            }
            return Stream(stopped: stopped, task: task)
        }

        struct Stream {
            let stopped: Locked<Bool>
            let task: Task<Void, any Error>

            /// Stops producing and waits until everything produced is delivered.
            func stop() async throws {
                stopped.withLock { $0 = true }
                try await task.value
            }
        }

        /// Produces `total` changes in slices, pausing between slices (the workload's rate), until done.
        func stream(total: Int, slice: Int = 500, pause: Duration = .milliseconds(20)) async throws {
            var sent = 0
            while sent < total {
                let now = min(slice, total - sent)
                try produce(now)
                sent += now
                try await Task.sleep(for: pause)
            }
            try producer.flush()
        }
    }

    /// A world: HAProxy with two maps, the embedded cluster, a state directory, a workload.
    struct World {
        let haproxy: HAProxyProcess
        let cluster: EmbeddedKafkaCluster
        let directory: TemporaryDirectory
        let workload: Workload
        let partitions: [TopicPartition]
        let bridges = Locked<[BridgeProcess]>([])
        /// Set when an expectation failed without ending the test: its files are kept too.
        let failed = Locked(false)

        /// A bridge process of this world (its log is printed when the test fails).
        func bridge(_ yaml: String, name: String = "bridge") throws -> BridgeProcess {
            let bridge = try BridgeProcess(yaml: yaml, directory: directory, name: name)
            bridges.withLock { $0.append(bridge) }
            return bridge
        }

        /// The bridge's configuration: the product's defaults (direct membership, librdkafka's own
        /// timeouts, HAProxy's timeouts, checks and reconnection, batches, commits, shutdown),
        /// with only where things are. `strategy` makes it a group member with that assignment
        /// strategy, for the tests about bridges sharing a group: those set a 6 s session timeout,
        /// because they are about handovers, which a dead member's 45 s default would only slow
        /// down. `checkIntervalMilliseconds` is for the test about noticing restarts without it.
        func yaml(
            group: String = "reliability", extra: String = "", backlog: String = "", strategy: String? = nil, kafkaProperties: [String] = [],
            checkIntervalMilliseconds: Int? = nil
        ) -> String {
            var properties = kafkaProperties
            if strategy != nil { properties += ["session.timeout.ms: \"6000\"", "heartbeat.interval.ms: \"500\""] }
            if let debug = ProcessInfo.processInfo.environment["RDKAFKA_DEBUG"] { properties.append("debug: \"\(debug)\"") }
            return """
                kafka:
                  brokers: "\(cluster.bootstrapServers)"
                  group_id: \(group)\(strategy.map { "\n  membership: group\n  assignment_strategy: \($0)" } ?? "")
                  properties: {\(properties.joined(separator: ", "))}
                haproxy:
                  socket: "\(haproxy.endpoint)"\(checkIntervalMilliseconds.map { "\n  check_interval_ms: \($0)" } ?? "")
                topics:
                  - name: changes
                    format: json
                  - name: routes
                    format: kv
                    map: routes
                maps:
                  hosts:
                    path: \(haproxy.mapPath("hosts"))
                  routes:
                    path: \(haproxy.mapPath("routes"))
                \(backlog)
                state: { directory: \(directory.file("state")) }
                http: { listen: "127.0.0.1:0" }
                log: { level: \(ProcessInfo.processInfo.environment["BRIDGE_LOG_LEVEL"] ?? "info") }
                \(extra)
                """
        }

        /// The committed offsets of the group, per `topic:partition` (one attempt).
        func committed(group: String = "reliability") throws -> [String: Int64] {
            let offsets = try KafkaGroupOffsets.committed(
                bootstrapServers: cluster.bootstrapServers, groupID: group, partitions: partitions, timeoutMilliseconds: 3000,
                logger: testLogger("test.offsets"))
            return Dictionary(uniqueKeysWithValues: offsets.map { ("\($0.key.topic):\($0.key.partition)", $0.value) })
        }

        /// The committed offsets, asked again while the coordinator cannot answer (broker faults).
        func committedEventually(group: String = "reliability") async throws -> [String: Int64] {
            var result: [String: Int64]?
            try await waitUntil("the group coordinator to answer", timeout: 60) {
                result = try? committed(group: group)
                return result != nil
            }
            return result!
        }

        /// The next offset after everything produced and delivered, per `topic:partition`.
        func producedEnds() -> [String: Int64] {
            let ends = Dictionary(uniqueKeysWithValues: partitions.map { ("\($0.topic):\($0.partition)", Int64(0)) })
            return ends.merging(workload.log.ends()) { max($0, $1) }
        }

        func live(_ map: String) throws -> (entries: [String: String], duplicates: [String]) {
            var entries: [String: String] = [:]
            var duplicates: [String] = []
            for (key, value) in try haproxy.oracle.entries(of: haproxy.mapPath(map)) {
                if entries[key] != nil { duplicates.append(key) } else { entries[key] = value }
            }
            return (entries, duplicates)
        }

        /// True when both maps hold exactly what the whole log says, without duplicates.
        func converged() -> Bool {
            guard let hosts = try? live("hosts"), let routes = try? live("routes") else { return false }
            return hosts.duplicates.isEmpty && routes.duplicates.isEmpty
                && hosts.entries == workload.log.state(of: "hosts") && routes.entries == workload.log.state(of: "routes")
        }

        /// What differs between HAProxy and the log, per map: counts and a few keys with the
        /// partition of their last event (for diagnosing a failure).
        func divergence() -> String {
            var lines: [String] = []
            for map in ["hosts", "routes"] {
                guard let live = try? live(map) else { continue }
                let expected = workload.log.state(of: map)
                let missing = expected.keys.filter { live.entries[$0] == nil }
                let extra = live.entries.keys.filter { expected[$0] == nil }
                let different = expected.keys.filter { live.entries[$0] != nil && live.entries[$0] != expected[$0] }
                let sample = (missing.prefix(3).map { "missing \($0)" } + extra.prefix(3).map { "extra \($0)" } + different.prefix(3).map { "different \($0)" })
                    .map { "\($0) (\(workload.log.lastPartition(of: String($0.split(separator: " ").last!), map: map)))" }
                lines.append(
                    "\(map): \(missing.count) missing, \(extra.count) extra, \(different.count) different, \(live.duplicates.count) duplicated; \(sample.joined(separator: ", "))"
                )
            }
            return lines.joined(separator: "\n")
        }

        /// True when every produced offset is committed.
        func committedEverything(group: String = "reliability") -> Bool {
            guard let committed = try? committed(group: group) else { return false }
            return producedEnds().allSatisfy { committed[$0.key] == $0.value }
        }

        /// Checks that HAProxy is not behind the committed offsets (it may be ahead).
        func expectNotBehind(group: String = "reliability", sourceLocation: SourceLocation = #_sourceLocation) async throws {
            let committed = try await committedEventually(group: group)
            for map in ["hosts", "routes"] {
                let (ok, detail) = workload.log.isNotBehind(try live(map).entries, map: map, committed: committed)
                #expect(ok, "\(map): committed ahead of HAProxy: \(detail)", sourceLocation: sourceLocation)
                if !ok { failed.withLock { $0 = true } }
            }
        }
    }

    func withWorld<T>(keys: Int = 2000, _ body: (World) async throws -> T) async throws -> T {
        try await withHAProxy([TestMap("hosts"), TestMap("routes")]) { haproxy in
            let directory = try TemporaryDirectory(prefix: "mapbridge-reliability")
            let cluster = try EmbeddedKafkaCluster(logger: testLogger("test.cluster"))
            try cluster.createTopic("changes", partitions: 4)
            try cluster.createTopic("routes", partitions: 4)
            let partitions = (0..<4).flatMap { [TopicPartition("changes", Int32($0)), TopicPartition("routes", Int32($0))] }
            let world = World(
                haproxy: haproxy, cluster: cluster, directory: directory, workload: try Workload(cluster: cluster, keys: keys), partitions: partitions)
            func keep() {
                for bridge in world.bridges.value {
                    print("---- \(bridge.logPath) (last 60 lines)\n" + bridge.log().split(separator: "\n").suffix(60).joined(separator: "\n"))
                    if bridge.isRunning { bridge.kill9() }
                }
                try? world.workload.log.dump().write(toFile: directory.file("events.tsv"), atomically: true, encoding: .utf8)
                for map in ["hosts", "routes"] {
                    let live = (try? haproxy.oracle.entries(of: haproxy.mapPath(map))) ?? []
                    try? live.map { "\($0.key)\t\($0.value)" }.joined(separator: "\n").write(
                        toFile: directory.file("live-\(map).tsv"), atomically: true, encoding: .utf8)
                }
                if let committed = try? world.committed() {
                    try? committed.sorted { $0.key < $1.key }.map { "\($0.key)\t\($0.value)" }.joined(separator: "\n").write(
                        toFile: directory.file("committed.tsv"), atomically: true, encoding: .utf8)
                }
                print("---- kept for inspection: \(directory.path)")
            }
            do {
                let result = try await body(world)
                if world.failed.value { keep() }
                for bridge in world.bridges.value where bridge.isRunning { bridge.kill9() }
                if !world.failed.value { directory.remove() }
                return result
            } catch {
                keep()
                throw error
            }
        }
    }

    @Test("kill -9 at random moments, 12 times, while events stream: the maps end exact, without duplicates")
    func killNine() async throws {
        try await withWorld { world in
            let bridge = try world.bridge(world.yaml())
            try bridge.start()
            let stream = world.workload.start()
            var kills = 0
            var generator = SystemRandomNumberGenerator()
            for _ in 0..<12 {
                // Let it make progress (a commit after the restart), then kill it at a random point.
                let before = try await world.committedEventually()
                try await waitUntil("the restarted bridge to commit", timeout: 90) {
                    let now = (try? world.committed()) ?? [:]
                    return now.contains { $0.value > before[$0.key] ?? -1 }
                }
                let target = world.workload.produced + Int.random(in: 0..<1500, using: &generator)
                try await waitUntil("the workload to move on", timeout: 60) { world.workload.produced >= target }
                bridge.kill9()
                kills += 1
                try await world.expectNotBehind()
                try bridge.start()
            }
            try await stream.stop()
            try await waitUntil("the maps to converge", timeout: 120) { world.converged() }
            try await waitUntil("every offset committed", timeout: 60) { world.committedEverything() }
            #expect(world.converged())
            let status = try await bridge.terminate()
            #expect(status == 0)
            print("reliability: kill -9 test: \(world.workload.log.count) events, \(kills) kills, \(bridge.starts) starts, lost changes: 0, duplicates: 0")
        }
    }

    @Test("crash loop with the product's defaults: 10 kill -9 in quick succession, then a restart applies new changes within seconds")
    func crashLoop() async throws {
        try await withWorld { world in
            let bridge = try world.bridge(world.yaml())
            try bridge.start()
            let stream = world.workload.start()
            try await waitForProgress(world)
            // A crash loop: each start is killed before or just after it reaches the broker.
            for round in 0..<10 {
                bridge.kill9()
                try bridge.start()
                let alive = ContinuousClock.now + .milliseconds(100 * (round % 5))
                try await waitUntil("the bridge to run a moment", timeout: 5) { ContinuousClock.now >= alive }
            }
            bridge.kill9()
            try await stream.stop()
            // The loop stops: a change produced now must reach HAProxy soon after the next start.
            let marker = "crash-loop-marker.example.com"
            try world.workload.produce(key: marker, value: "be_marker", json: true)
            try world.workload.producer.flush()
            let started = ContinuousClock.now
            try bridge.start()
            // The promise is 5 s; the bound allows twice that for a loaded 2-core CI machine. A group
            // member would wait for the dead members' session timeout (45 s by default) first.
            try await waitUntil("the restarted bridge to apply a new change", timeout: 10) {
                (try? world.live("hosts").entries[marker]) == "be_marker"
            }
            let recovery = ContinuousClock.now - started
            try await waitUntil("the maps to converge", timeout: 60) { world.converged() }
            try await waitUntil("every offset committed", timeout: 60) { world.committedEverything() }
            #expect(try await bridge.terminate() == 0)
            print(
                "reliability: crash-loop test: \(world.workload.log.count) events, 11 kill -9 in quick succession, a new change applied \(recovery.formatted(.units(allowed: [.milliseconds]))) after the next start, lost changes: 0"
            )
        }
    }

    /// Waits until the bridge has committed beyond what it had.
    func waitForProgress(_ world: World, group: String = "reliability", timeout: Double = 90) async throws {
        let before = try await world.committedEventually(group: group)
        try await waitUntil("the bridge to commit more", timeout: timeout) {
            let now = (try? world.committed(group: group)) ?? [:]
            return now.contains { $0.value > before[$0.key] ?? -1 }
        }
    }

    @Test("HAProxy restarted and reloaded mid-stream: the maps converge, and the bridge logs the resync")
    func haproxyRestarts() async throws {
        try await withWorld { world in
            let bridge = try world.bridge(world.yaml())
            try bridge.start()
            let stream = world.workload.start()
            // Each process change is noticed and both maps compared before the next one: a
            // change that comes during a comparison interrupts it (the next process is compared).
            func noticed(_ count: Int, _ what: String) async throws {
                try await waitUntil("the bridge to notice \(what) and compare both maps", timeout: 30) {
                    bridge.logLines(containing: "HAProxy restarted or reloaded").count >= count
                        && bridge.logLines(containing: "compared with HAProxy after a restart or reload").count >= 2 * count
                }
            }
            try await waitForProgress(world)
            try await world.haproxy.restart()
            try await noticed(1, "the first restart")
            try await waitForProgress(world)
            // A reload: a new worker loads the map files; the bridge's session stays on the old,
            // stopping one until the bridge's check sees `Stopping: 1`.
            let oldWorkers = world.haproxy.workerPids()
            world.haproxy.reload()
            try await waitUntil("a new worker", timeout: 30) { !world.haproxy.workerPids().isEmpty && world.haproxy.workerPids() != oldWorkers }
            try await noticed(2, "the reload")
            try await waitForProgress(world)
            try await world.haproxy.restart()
            try await noticed(3, "the second restart")
            try await waitForProgress(world)
            try await stream.stop()
            try await waitUntil("the maps to converge", timeout: 120) { world.converged() }
            try await waitUntil("every offset committed", timeout: 60) { world.committedEverything() }
            let restarts = bridge.logLines(containing: "HAProxy restarted or reloaded").count
            let comparisons = bridge.logLines(containing: "compared with HAProxy after a restart or reload").count
            let repairs = bridge.logLines(containing: "resynchronised a map with HAProxy").count
            #expect(restarts >= 3, "the bridge noticed every restart and the reload")
            #expect(
                comparisons >= 6,
                "both maps compared after each of the three process changes:\n\(bridge.logLines(containing: "HAProxy").joined(separator: "\n"))")
            #expect(try await bridge.terminate() == 0)
            print(
                "reliability: HAProxy restart test: \(world.workload.log.count) events, 2 restarts + 1 reload, \(restarts) noticed, \(comparisons) map comparisons, \(repairs) repaired, lost changes: 0"
            )
        }
    }

    @Test(
        "HAProxy restarted while no event comes: the bridge notices the ended session at once, not at its next periodic check, and restores what HAProxy's file lacked"
    )
    func restartNoticedAtOnce() async throws {
        try await withWorld { world in
            // The periodic check is pushed beyond the test's end: only the ended session can make
            // the bridge look at HAProxy again.
            let bridge = try world.bridge(world.yaml(checkIntervalMilliseconds: 3_600_000))
            try bridge.start()
            for n in 0..<200 { try world.workload.produce(key: "restart-\(n).example.com", value: "be_\(n)", json: n % 2 == 0) }
            try world.workload.producer.flush()
            try await waitUntil("the maps to converge", timeout: 60) { world.converged() }
            // Stored and committed: no store rewrites the map files from here on.
            try await waitUntil("every offset committed", timeout: 60) { world.committedEverything() }
            await world.haproxy.stop()
            // HAProxy comes back from a map file without the bridge's entries (an old backup).
            try "".write(toFile: world.haproxy.mapPath("hosts"), atomically: true, encoding: .utf8)
            try await world.haproxy.start()
            let answering = ContinuousClock.now
            try await waitUntil("the bridge to restore the map", timeout: 30) { world.converged() }
            let restored = ContinuousClock.now - answering
            #expect(bridge.logLines(containing: "HAProxy restarted or reloaded").count == 1)
            #expect(try await bridge.terminate() == 0)
            print(
                "reliability: restart noticed at once: HAProxy restarted from an emptied map file, restored \(restored.formatted(.units(allowed: [.milliseconds]))) after it answered (periodic check: 1 h)"
            )
        }
    }

    /// The offsets a map file says it reflects (its `# offsets ...` header line).
    func headerOffsets(_ path: String) throws -> [String: Int64] {
        let text = try String(contentsOfFile: path, encoding: .utf8)
        guard let line = text.split(separator: "\n").first(where: { $0.hasPrefix("# offsets ") }) else { return [:] }
        var offsets: [String: Int64] = [:]
        for item in line.dropFirst("# offsets ".count).split(separator: " ") {
            let parts = item.split(separator: "=")
            if parts.count == 2, let offset = Int64(parts[1]) { offsets[String(parts[0])] = offset }
        }
        return offsets
    }

    @Test("both killed at once: HAProxy restarted alone serves the last commit's state from its map file; the bridge then makes it exact")
    func bothKilled() async throws {
        try await withWorld { world in
            let bridge = try world.bridge(world.yaml())
            try bridge.start()
            let stream = world.workload.start()
            try await waitForProgress(world)
            try await waitForProgress(world)
            bridge.kill9()
            world.haproxy.kill()
            let committed = try await world.committedEventually()
            try await world.haproxy.start()
            for map in ["hosts", "routes"] {
                let path = world.haproxy.mapPath(map)
                let offsets = try headerOffsets(path)
                let served = try world.live(map)
                #expect(served.duplicates.isEmpty)
                #expect(served.entries == world.workload.log.state(of: map, below: offsets), "\(map): HAProxy serves its file's state, the log's at \(offsets)")
                for (partition, offset) in committed where offset >= 0 {
                    #expect((offsets[partition] ?? 0) >= offset, "\(map): the file reflects at least the last commit (\(partition))")
                }
                let (ok, detail) = world.workload.log.isNotBehind(served.entries, map: map, committed: committed)
                #expect(ok, "\(map): \(detail)")
            }
            try bridge.start()
            try await waitForProgress(world)
            try await stream.stop()
            try await waitUntil("the maps to converge", timeout: 120) { world.converged() }
            try await waitUntil("every offset committed", timeout: 60) { world.committedEverything() }
            #expect(try await bridge.terminate() == 0)
            print("reliability: both-killed test: \(world.workload.log.count) events, 1 simultaneous kill, HAProxy served the stored state, lost changes: 0")
        }
    }

    @Test("HAProxy frozen (SIGSTOP) for 10 s under load: the bridge's memory stays bounded, and it converges after SIGCONT")
    func frozenHAProxy() async throws {
        try await withWorld(keys: 2000) { world in
            let backlog = "backlog: { max_events: 20000, max_bytes: 4194304 }"
            // A smaller prefetch than the default, so that the memory bound below is tight: the test
            // is about the bound holding, whatever its size.
            let yaml = world.yaml(backlog: backlog, kafkaProperties: ["queued.max.messages.kbytes: \"4096\""])
            let bridge = try world.bridge(yaml)
            try bridge.start()
            // The baseline is taken once the bridge has run under the frozen phase's load (the
            // same bursts): its working memory at that load (fetch buffers, batches, allocator
            // arenas) is then in the baseline, and the growth is what the freeze holds back.
            try await world.workload.stream(total: 50_000, slice: 5000, pause: .milliseconds(5))
            try await waitUntil("the first events applied", timeout: 90) { world.converged() }
            let baseline = bridge.residentBytes() ?? 0
            world.haproxy.freeze()
            let frozenAt = ContinuousClock.now
            let stream = Task { try await world.workload.stream(total: 300_000, slice: 5000, pause: .milliseconds(5)) }
            var peak = baseline
            while ContinuousClock.now < frozenAt + .seconds(10) || world.workload.produced < 350_000 {
                peak = max(peak, bridge.residentBytes() ?? 0)
                try await Task.sleep(for: .milliseconds(50))  // sampling period of the memory probe
            }
            try await stream.value
            peak = max(peak, bridge.residentBytes() ?? 0)
            world.haproxy.thaw()
            let growth = peak - baseline
            // Bound: the backlog (4 MiB) + librdkafka's prefetch (4 MiB) + working memory. Without the
            // bound, 300,000 consumed events would take well over 50 MiB.
            #expect(growth < 24 << 20, "memory grew by \(growth >> 20) MiB while HAProxy was frozen")
            #expect(!bridge.logLines(containing: "backlog full: pausing").isEmpty)
            try await waitUntil("the maps to converge", timeout: 180) { world.converged() }
            try await waitUntil("every offset committed", timeout: 60) { world.committedEverything() }
            #expect(try await bridge.terminate() == 0)
            print(
                "reliability: frozen HAProxy test: \(world.workload.log.count) events, 10 s frozen, memory growth \(growth >> 20) MiB (bound 4 MiB backlog + 4 MiB prefetch), lost changes: 0"
            )
        }
    }

    @Test(
        "HAProxy frozen while 900,000 small kv events arrive, with the product's defaults: memory stays bounded (librdkafka's prefetch is bounded in messages, not only in bytes)"
    )
    func frozenWithSmallMessages() async throws {
        try await withHAProxy([TestMap("flags")]) { haproxy in
            let directory = try TemporaryDirectory(prefix: "mapbridge-small-messages")
            var passed = false
            defer { if passed { directory.remove() } }
            let cluster = try EmbeddedKafkaCluster(logger: testLogger("test.cluster"))
            // 32 partitions: the embedded broker keeps about 5 MB a partition, and every event must stay.
            try cluster.createTopic("flags", partitions: 32)
            let producer = try KafkaProducer(bootstrapServers: cluster.bootstrapServers, logger: testLogger("test.producer"))
            // Nothing but where things are: the backlog, the prefetch and every interval are the
            // product's defaults, which is what the bound is about.
            let bridge = try BridgeProcess(
                yaml: """
                    kafka:
                      brokers: "\(cluster.bootstrapServers)"
                      group_id: small-messages
                    haproxy:
                      socket: "\(haproxy.endpoint)"
                    topics:
                      - name: flags
                        format: kv
                        map: flags
                    maps:
                      flags:
                        path: \(haproxy.mapPath("flags"))
                    state: { directory: \(directory.file("state")) }
                    http: { listen: "127.0.0.1:0" }
                    """, directory: directory)
            try bridge.start()
            // Events of about 20 bytes: 1,000 flags, each set again and again.
            let flags = 1000
            func produce(_ numbers: Range<Int>) throws {
                for n in numbers { try producer.produce(topic: "flags", key: Array("flag-\(n % flags)".utf8), value: Array("\(n)".utf8)) }
                try producer.flush()
            }
            func applied(through last: Int) -> Bool {
                guard let entries = try? haproxy.oracle.entries(of: haproxy.mapPath("flags")), entries.count == flags else { return false }
                return entries.allSatisfy { Int($0.value).map { $0 > last - flags } ?? false }
            }
            // The baseline is taken once the bridge has worked at this pace (its working memory
            // is then in the baseline): the growth is what the freeze holds back.
            try produce(0..<100_000)
            try await waitUntil("the first events applied", timeout: 120) { applied(through: 100_000 - 1) }
            let baseline = bridge.residentBytes() ?? 0
            haproxy.freeze()
            let total = 1_000_000
            let finished = Locked(false)
            let production = Task.detached {
                defer { finished.withLock { $0 = true } }
                try produce(100_000..<total)
            }
            var peak = baseline
            let frozenAt = ContinuousClock.now
            // Sampled while the events arrive and for 10 s more, as the consumer fetches ahead.
            var producedAt: ContinuousClock.Instant?
            while producedAt.map({ ContinuousClock.now < $0 + .seconds(10) }) ?? true {
                peak = max(peak, bridge.residentBytes() ?? 0)
                if producedAt == nil, finished.withLock({ $0 }) { producedAt = .now }
                try await Task.sleep(for: .milliseconds(50))  // sampling period of the memory probe
                guard ContinuousClock.now < frozenAt + .seconds(300) else { break }
            }
            try await production.value
            peak = max(peak, bridge.residentBytes() ?? 0)
            haproxy.thaw()
            let growth = peak - baseline
            // The product's bounds: a 32 MiB backlog, librdkafka's 8 MiB of payload, at most 50,000
            // messages in its queue (about 300 bytes of its own each) and one 8 MiB fetch beyond
            // them: about 65 MiB. Bounded in bytes alone, librdkafka held 16 MiB of 20-byte
            // messages, about 800,000 of them and hundreds of MiB; at 300,000 messages, this grew
            // by 93 MiB.
            #expect(growth < 80 << 20, "memory grew by \(growth >> 20) MiB while HAProxy was frozen")
            try await waitUntil("every event applied", timeout: 180) { applied(through: total - 1) }
            #expect(try await bridge.terminate() == 0)
            print("reliability: frozen HAProxy, small messages: \(total - 100_000) events while frozen, memory growth \(growth >> 20) MiB")
            passed = true
        }
    }

    @Test("broker faults (down and up, failed OffsetCommit, Fetch, Heartbeat, JoinGroup): exact, never committed ahead of HAProxy")
    func brokerFaults() async throws {
        try await withWorld { world in
            let bridge = try world.bridge(world.yaml())
            try bridge.start()
            let stream = world.workload.start()
            try await waitForProgress(world)
            world.cluster.failRequests(
                .offsetCommit,
                with: [KafkaErrorCode.requestTimedOut, KafkaErrorCode.requestTimedOut, KafkaErrorCode.notCoordinator, KafkaErrorCode.coordinatorNotAvailable])
            try await waitForProgress(world)
            try await world.expectNotBehind()
            world.cluster.failRequests(.fetch, with: Array(repeating: KafkaErrorCode.notLeaderForPartition, count: 5))
            try await waitForProgress(world)
            try await world.expectNotBehind()
            try world.cluster.setBroker(1, up: false)
            let downFor = ContinuousClock.now + .seconds(3)
            try await waitUntil("the outage to last 3 s", timeout: 10) { ContinuousClock.now >= downFor }
            try world.cluster.setBroker(1, up: true)
            try await world.expectNotBehind()
            try await waitForProgress(world)
            world.cluster.failRequests(.heartbeat, with: Array(repeating: KafkaErrorCode.rebalanceInProgress, count: 3))
            world.cluster.failRequests(.joinGroup, with: Array(repeating: KafkaErrorCode.coordinatorNotAvailable, count: 3))
            try await waitForProgress(world)
            try await world.expectNotBehind()
            try await stream.stop()
            try await waitUntil("the maps to converge", timeout: 120) { world.converged() }
            try await waitUntil("every offset committed", timeout: 90) { world.committedEverything() }
            #expect(try await bridge.terminate() == 0)
            print("reliability: broker fault test: \(world.workload.log.count) events, commit/fetch/heartbeat/join errors and a 3 s outage, lost changes: 0")
        }
    }

    @Test("two bridge processes in one group on one HAProxy, one restarted 4 times (rebalances): exact", arguments: ["cooperative-sticky", "range"])
    func twoBridges(strategy: String) async throws {
        try await withWorld { world in
            let stable = try world.bridge(world.yaml(strategy: strategy), name: "stable")
            let restarted = try world.bridge(world.yaml(strategy: strategy), name: "restarted")
            try stable.start()
            try restarted.start()
            let stream = world.workload.start()
            for round in 0..<4 {
                try await waitForProgress(world)
                if round % 2 == 0 {
                    #expect(try await restarted.terminate() == 0)
                } else {
                    restarted.kill9()
                }
                // Only the end state is checked here (the issue's "exact"). During a handover between
                // two bridges HAProxy can briefly show a value older than the last commit. This is
                // common with cooperative-sticky on librdkafka 2.0.2: a member learns late that it
                // lost its assignment, and its successor replays from the stored offsets. It was
                // also seen once in about ten runs with range, whose cause is not yet pinned down.
                // The maps converge in every run; the single-bridge tests check "never behind the
                // commit" after every kill.
                try await waitForProgress(world)
                try restarted.start()
            }
            try await waitForProgress(world)
            try await stream.stop()
            do {
                try await waitUntil("the maps to converge", timeout: 150) { world.converged() }
            } catch {
                print("divergence:\n\(world.divergence())")
                throw error
            }
            try await waitUntil("every offset committed", timeout: 90) { world.committedEverything() }
            #expect(world.converged())
            #expect(try await restarted.terminate() == 0)
            #expect(try await stable.terminate() == 0)
            let shared = stable.logLines(containing: "sharing the maps with other bridges").count
            print(
                "reliability: two-bridge test (\(strategy)): \(world.workload.log.count) events, 4 restarts (2 SIGTERM, 2 kill -9), \(shared) switches to shared mode, lost changes: 0"
            )
        }
    }

    @Test("SIGTERM at any moment, start-up included, ends in a clean stop with exit status 0; the maps end exact")
    func sigtermAnyMoment() async throws {
        try await withWorld { world in
            let bridge = try world.bridge(world.yaml())
            let stream = world.workload.start()
            var generator = SystemRandomNumberGenerator()
            var moments: [Int] = []
            for round in 0..<12 {
                try bridge.start()
                // From the first instant the process handles SIGTERM (before it, any program dies of
                // it) through loading the configuration and state, HAProxy and the broker, to well
                // into consuming.
                try await waitUntil("the process to handle SIGTERM", timeout: 10, every: .milliseconds(1)) { bridge.handlesSIGTERM }
                let delay = round == 0 ? 0 : Int.random(in: 0..<1500, using: &generator)
                moments.append(delay)
                let until = ContinuousClock.now + .milliseconds(delay)
                try await waitUntil("the moment to signal", timeout: 5) { ContinuousClock.now >= until }
                bridge.signal(SIGTERM)
                let status = try await bridge.waitForExit(timeout: 30)
                #expect(status == 0, "SIGTERM \(delay) ms after start ended with status \(status)")
            }
            try await stream.stop()
            try bridge.start()
            try await waitUntil("the maps to converge", timeout: 120) { world.converged() }
            try await waitUntil("every offset committed", timeout: 60) { world.committedEverything() }
            #expect(try await bridge.terminate() == 0)
            print(
                "reliability: SIGTERM test: \(world.workload.log.count) events, 12 SIGTERMs at \(moments.sorted()) ms after start, all exit 0, lost changes: 0")
        }
    }

    @Test("the final commit at shutdown is bounded: with a broker that answers after 40 s, SIGTERM still ends in exit status 0 within seconds")
    func finalCommitBounded() async throws {
        try await withWorld { world in
            // No commit before shutdown (the test is about the final one): everything applied is
            // still to be committed when the signal comes. (This used to replace a commit line
            // the configuration no longer had, so periodic commits went on.)
            let bridge = try world.bridge(world.yaml(extra: "commit: { interval_ms: 600000 }"))
            try bridge.start()
            try await world.workload.stream(total: 2000)
            try await waitUntil("the events applied", timeout: 60) { world.converged() }
            // The broker still takes requests but answers each one 40 s late: the final commit's
            // answer would come long after a service manager's stop timeout.
            try world.cluster.setBrokerRTT(1, milliseconds: 40_000)
            let signalled = ContinuousClock.now
            bridge.signal(SIGTERM)
            // shutdown.timeout_ms (10 s by default) for the batch in flight, 5 s for the commit;
            // nothing is in flight here (HAProxy answers), so the commit's bound is what is timed.
            let status = try await bridge.waitForExit(timeout: 60)
            let took = ContinuousClock.now - signalled
            #expect(status == 0)
            #expect(took < .seconds(20), "stopped after \(took)")
            #expect(
                !bridge.logLines(containing: "could not commit at shutdown").isEmpty, "\(bridge.log().split(separator: "\n").suffix(8).joined(separator: "\n"))"
            )
            try world.cluster.setBrokerRTT(1, milliseconds: 0)
        }
    }

    @Test("SIGTERM waits for the batch in flight (bounded); a second SIGTERM exits at once")
    func secondSignal() async throws {
        try await withWorld { world in
            // The product's shutdown.timeout_ms (10 s): the first signal's wait outlasts the check
            // that the process is still running.
            let bridge = try world.bridge(world.yaml())
            try bridge.start()
            let stream = world.workload.start()
            try await waitForProgress(world)
            // HAProxy frozen: the batch in flight cannot be acknowledged, so a graceful stop must wait.
            world.haproxy.freeze()
            defer { world.haproxy.thaw() }
            // Frozen with a batch in flight, or between batches (a check or synchronisation waits).
            try await waitUntil("the bridge to wait for HAProxy", timeout: 30) {
                !bridge.logLines(containing: "HAProxy did not acknowledge the batch").isEmpty
                    || !bridge.logLines(containing: "cannot synchronise with HAProxy").isEmpty
            }
            bridge.signal(SIGTERM)
            try await waitUntil("the graceful shutdown to begin", timeout: 30) {
                !bridge.logLines(containing: "shutting down: finishing the batch in flight").isEmpty
            }
            #expect(bridge.isRunning, "the first signal waits for the batch in flight (up to shutdown.timeout_ms)")
            bridge.signal(SIGTERM)
            let status = try await bridge.waitForExit(timeout: 10)
            #expect(status == 128 + SIGTERM, "the second signal ends the process at once")
            #expect(!bridge.logLines(containing: "second signal, exiting at once").isEmpty)
            try await stream.stop()
        }
    }
}
