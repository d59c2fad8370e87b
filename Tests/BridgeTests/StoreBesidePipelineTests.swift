import Core
import Foundation
import Synchronization
import TestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The state is stored beside the pipeline: a slow store (a busy disk, or here a lock someone
/// else holds on the state directory) does not hold back the changes that follow, and nothing it
/// does not cover is committed.
@Suite("Store beside the pipeline", .serialized)
struct StoreBesidePipelineTests {
    /// A running bridge (the executable, product defaults) on one map, after a first change was
    /// applied and committed; the state directory is `<state>/test-group`.
    struct Running {
        let bridge: BridgeProcess
        let harness: BridgeHarness
        let groupState: String
        let committedBefore: [TopicPartition: Int64]
        let live: () -> [String: String]

        func change(_ key: String, _ value: String) throws {
            try harness.produce(topic: "changes", key: key, value: #"{"map":"hosts","op":"set","key":"\#(key)","value":"\#(value)"}"#)
            try harness.flush()
        }

        var statePath: String { "\(groupState)/hosts.state" }

        /// Holds the state directory's lock, as another process would, and changes `b`: the store
        /// that follows waits for the lock. Returns the lock once that store waits.
        func storeWaitingOnLock() async throws -> FileLock {
            let lock = try FileLock(path: "\(groupState)/.lock")
            try change("b", "2")
            try await waitUntil("a store waiting for the lock", timeout: 60) { lock.hasWaiter() }
            return lock
        }

        /// Puts a directory where the state file goes: it cannot be replaced until ``unblockStateFile()``.
        func blockStateFile() throws {
            try FileManager.default.removeItem(atPath: statePath)
            try FileManager.default.createDirectory(atPath: "\(statePath)/blocker", withIntermediateDirectories: true)
        }

        func unblockStateFile() throws {
            try FileManager.default.removeItem(atPath: statePath)
        }

        func expectStored(_ entries: [(String, String)]) throws {
            let stored = try String(contentsOfFile: statePath, encoding: .utf8)
            for (key, value) in entries {
                #expect(stored.contains("\t\(key)\t\(value)\n"), "\(key) in \(stored)")
            }
        }
    }

    func withRunningBridge(_ body: (Running) async throws -> Void) async throws {
        try await withHAProxy([TestMap("hosts")]) { haproxy in
            try await withBridgeHarness(topics: [("changes", 1)]) { harness in
                let directory = try TemporaryDirectory(prefix: "mapbridge-store")
                defer { directory.remove() }
                let state = directory.file("state")
                // No HTTP endpoint: tests run side by side, and the default port would be shared.
                let yaml = """
                    kafka: { brokers: "\(harness.cluster.bootstrapServers)", group_id: test-group }
                    haproxy: { socket: "\(haproxy.endpoint)" }
                    topics: [{ name: changes }]
                    maps: { hosts: { path: \(haproxy.mapPath("hosts")) } }
                    state: { directory: \(state) }
                    http: { listen: "off" }
                    """
                let bridge = try BridgeProcess(yaml: yaml, directory: directory)
                try bridge.start()
                defer { if bridge.isRunning { bridge.kill9() } }
                let live = { () -> [String: String] in
                    Dictionary((try? haproxy.oracle.entries(of: haproxy.mapPath("hosts")))?.map { ($0.key, $0.value) } ?? [], uniquingKeysWith: { a, _ in a })
                }
                var running = Running(bridge: bridge, harness: harness, groupState: "\(state)/test-group", committedBefore: [:], live: live)
                try running.change("a", "1")
                try await waitUntil("the first change applied and committed", timeout: 60) { live()["a"] == "1" && harness.committedEverything() }
                running = Running(
                    bridge: bridge, harness: harness, groupState: running.groupState, committedBefore: try harness.committedOffsets(), live: live)
                try await body(running)
            }
        }
    }

    @Test("changes keep reaching HAProxy while a store waits; their offsets are committed only once it is stored")
    func changesFlowWhileStoring() async throws {
        try await withRunningBridge { running in
            // Someone else holds the state directory's lock: the next store waits for it.
            let lock = try await running.storeWaitingOnLock()
            // While that store waits, later changes still reach HAProxy.
            try running.change("c", "3")
            try await waitUntil("a change applied while the store waits", timeout: 30) { running.live()["c"] == "3" }
            #expect(lock.hasWaiter(), "the store still waits")
            #expect(try running.harness.committedOffsets() == running.committedBefore, "nothing is committed before it is stored")

            lock.release()
            try await waitUntil("everything committed once stored", timeout: 60) { running.harness.committedEverything() }
            #expect(try await running.bridge.terminate() == 0)
            try running.expectStored([("a", "1"), ("b", "2"), ("c", "3")])
        }
    }

    @Test("at shutdown, a store in flight that fails is tried once more before the bridge gives up committing")
    func failedStoreAtShutdownIsRetried() async throws {
        try await withRunningBridge { running in
            let lock = try await running.storeWaitingOnLock()
            // When it gets the lock, its state file cannot be replaced: a directory stands there.
            try running.blockStateFile()
            running.bridge.signal(SIGTERM)
            try await waitUntil("the shutdown begun", timeout: 30) { running.bridge.log().contains("shutting down") }
            lock.release()
            _ = try await running.bridge.waitForExit(timeout: 60)
            let failures = running.bridge.logLines(containing: "cannot store the maps' state").count
            #expect(failures == 2, "the store in flight, then the final store: \(failures)")
            #expect(try running.harness.committedOffsets() == running.committedBefore, "nothing is committed that is not stored")
        }
    }

    @Test("a store that fails leaves its maps for the next one, and commits nothing it covers")
    func failedStoreIsRetried() async throws {
        try await withRunningBridge { running in
            // The state file cannot be replaced while a directory stands in its place.
            try running.blockStateFile()
            try running.change("b", "2")
            try await waitUntil("the change applied", timeout: 30) { running.live()["b"] == "2" }
            try await waitUntil("a store refused", timeout: 60) { running.bridge.log().contains("cannot store the maps' state") }
            #expect(try running.harness.committedOffsets() == running.committedBefore, "nothing is committed that is not stored")

            // Once the file can be written again, the next store writes the map it could not.
            try running.unblockStateFile()
            try await waitUntil("everything committed once stored", timeout: 60) { running.harness.committedEverything() }
            try running.expectStored([("a", "1"), ("b", "2")])
            #expect(try await running.bridge.terminate() == 0)
        }
    }
}

/// An exclusive `flock` on a file, held until released, as another process would hold it.
final class FileLock: Sendable {
    private let inode: UInt
    private let descriptor: Mutex<Int32?>

    init(path: String) throws {
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        var info = stat()
        guard fd >= 0, flock(fd, LOCK_EX) == 0, fstat(fd, &info) == 0 else { throw POSIXError(.EIO) }
        inode = UInt(info.st_ino)
        descriptor = Mutex(fd)
    }

    deinit { release() }

    /// Whether a process waits for this lock (a blocked entry, `->`, in /proc/locks on its inode).
    func hasWaiter() -> Bool {
        guard let locks = try? String(contentsOfFile: "/proc/locks", encoding: .utf8) else { return false }
        return locks.split(separator: "\n").contains { $0.contains("->") && $0.contains("FLOCK") && $0.contains(":\(inode) ") }
    }

    func release() {
        descriptor.withLock { fd in
            guard let open = fd else { return }
            flock(open, LOCK_UN)
            close(open)
            fd = nil
        }
    }
}
