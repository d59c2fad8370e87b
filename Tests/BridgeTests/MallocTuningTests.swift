import Bridge
import Foundation
import TestSupport
import Testing

@Suite("glibc's allocator set up for the daemon")
struct MallocTuningTests {
    @Test("every setting is made unless the environment sets it, by variable or by tunable")
    func environmentWins() {
        let all = [MallocTuning.arenaMax, MallocTuning.mmapThreshold, MallocTuning.trimThreshold]
        #expect(MallocTuning.settings(environment: [:]) == all)
        #expect(MallocTuning.settings(environment: ["MALLOC_ARENA_MAX": "4"]) == [MallocTuning.mmapThreshold, MallocTuning.trimThreshold])
        #expect(
            MallocTuning.settings(environment: ["GLIBC_TUNABLES": "glibc.malloc.mmap_threshold=65536:glibc.malloc.trim_threshold=0"])
                == [MallocTuning.arenaMax])
        #expect(
            MallocTuning.settings(environment: ["MALLOC_TRIM_THRESHOLD_": "0", "GLIBC_TUNABLES": "glibc.malloc.arena_max=1"]) == [MallocTuning.mmapThreshold])
        // A tunable of another name does not count.
        #expect(MallocTuning.settings(environment: ["GLIBC_TUNABLES": "glibc.malloc.tcache_count=0"]) == all)
    }
}

@Suite("The daemon sets glibc's allocator up")
struct MallocTuningDaemonTests {
    /// The daemon as a user starts it (product defaults; a broker that is there, a HAProxy that is
    /// not: the allocator is set up before either is reached), then with an operator's setting.
    @Test("`mapbridge run` makes every setting, and leaves one the environment sets to it")
    func daemonSetsItUp() async throws {
        try await withBridgeHarness(topics: [("changes", 1)]) { harness in
            let directory = try TemporaryDirectory()
            defer { directory.remove() }
            let yaml = """
                kafka: { brokers: "\(harness.cluster.bootstrapServers)", group_id: malloc }
                haproxy: { socket: "unix://\(directory.file("absent.sock"))" }
                topics: [{ name: changes, format: json }]
                maps: { hosts: { path: \(directory.file("hosts.map")) } }
                state: { directory: \(directory.file("state")) }
                http: { listen: "off" }
                """
            // The HTTP endpoint is off (not its default 127.0.0.1:9464): other daemons in tests
            // running beside this one could hold that port, and this test is about start-up only.
            let bridge = try BridgeProcess(yaml: yaml, directory: directory)
            // The test process's own settings must not decide what the daemon does.
            let clean: [String: String?] = [
                "MALLOC_ARENA_MAX": nil, "MALLOC_MMAP_THRESHOLD_": nil, "MALLOC_TRIM_THRESHOLD_": nil,
                "GLIBC_TUNABLES": "glibc.malloc.tcache_count=7",
            ]
            try bridge.start(environment: clean)
            try await waitUntil("the allocator's line", timeout: 30) { !bridge.logLines(containing: "allocator set up").isEmpty }
            // Only its start-up is looked at (a clean stop would wait for the absent HAProxy).
            bridge.kill9()
            _ = try await bridge.waitForExit()
            let line = try #require(bridge.logLines(containing: "allocator set up").first)
            #expect(line.contains("glibc.malloc.arena_max=2,glibc.malloc.mmap_threshold=1048576,glibc.malloc.trim_threshold=1048576"), "\(line)")
            #expect(!line.contains("from_environment") && !line.contains("refused"), "\(line)")

            var arenas = clean
            arenas["MALLOC_ARENA_MAX"] = "3"
            try bridge.start(environment: arenas)
            try await waitUntil("the allocator's second line", timeout: 30) { bridge.logLines(containing: "allocator set up").count == 2 }
            bridge.kill9()
            _ = try await bridge.waitForExit()
            let second = try #require(bridge.logLines(containing: "allocator set up").last)
            #expect(second.contains("malloc.from_environment=MALLOC_ARENA_MAX"), "\(second)")
            #expect(second.contains("malloc.set=glibc.malloc.mmap_threshold=1048576,glibc.malloc.trim_threshold=1048576"), "\(second)")
        }
    }
}
