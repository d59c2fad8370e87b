import Bridge
import Foundation
import TestSupport
import Testing

/// `mapbridge check`, `diff` and `publish`, run as a user runs them, against real HAProxy and the
/// embedded Kafka cluster.
@Suite("Command line: check, diff and publish", .serialized)
struct CommandLineTests {
    /// Runs the built `mapbridge` with these arguments; its exit status and standard output.
    func mapbridge(_ arguments: [String], input: String? = nil, errors: Locked<String>? = nil) throws -> (status: Int32, output: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: BridgeProcess.executable)
        process.arguments = arguments
        process.environment = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("MAPBRIDGE_") }
        let output = Pipe()
        process.standardOutput = output
        let errorPipe = Pipe()
        process.standardError = errors == nil ? FileHandle.nullDevice : errorPipe
        let inputPipe = Pipe()
        process.standardInput = input == nil ? FileHandle.nullDevice : inputPipe
        try process.run()
        if let input {
            inputPipe.fileHandleForWriting.write(Data(input.utf8))
            try inputPipe.fileHandleForWriting.close()
        }
        let data = output.fileHandleForReading.readDataToEndOfFile()
        if let errors {
            let text = String(decoding: errorPipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            errors.withLock { $0 = text }
        }
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: data, as: UTF8.self))
    }

    func yaml(_ harness: BridgeHarness, _ haproxy: HAProxyProcess, extraMap: String = "", deadLetter: String = "") -> String {
        """
        kafka: { brokers: "\(harness.cluster.bootstrapServers)", group_id: test-group }
        haproxy: { socket: "\(haproxy.endpoint)" }
        topics:
          - { name: changes, format: json }
        maps:
          hosts: { path: \(haproxy.mapPath("hosts")) }\(extraMap)
        state: { directory: \(harness.stateDirectory.path) }
        \(deadLetter)
        """
    }

    func write(_ text: String, _ directory: TemporaryDirectory) throws -> String {
        let path = directory.file("mapbridge-\(UUID().uuidString).yaml")
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    @Test("check reports HAProxy, every map, Kafka and every topic; exit 1 names what is wrong")
    func check() async throws {
        try await withHAProxy([TestMap("hosts")]) { haproxy in
            try await withBridgeHarness(topics: [("changes", 2)]) { harness in
                let directory = try TemporaryDirectory()
                defer { directory.remove() }
                let good = try mapbridge(["check", "--config", try write(yaml(harness, haproxy), directory)])
                #expect(good.status == 0, "\(good.output)")
                for line in ["ok   haproxy: ", "ok   map hosts: ", "ok   kafka: ", "ok   topic changes: 2 partitions", "ok   state: "] {
                    #expect(good.output.contains(line), "missing '\(line)' in:\n\(good.output)")
                }
                // What the bridge does differently on the HAProxy it reached (whichever version runs the tests).
                let haproxyLine = good.output.split(separator: "\n").first { $0.hasPrefix("ok   haproxy: ") } ?? ""
                #expect(
                    haproxyLine.contains("HAProxy ") && (haproxyLine.contains("set/del scan the whole map") || haproxyLine.contains("set/del use a tree")),
                    "\(haproxyLine)")
                let bad = try mapbridge([
                    "check", "--config",
                    try write(
                        yaml(harness, haproxy, extraMap: "\n  ghost: { path: /nowhere/ghost.map }", deadLetter: "dead_letter: { topic: missing.dlq }"),
                        directory),
                ])
                #expect(bad.status == 1, "\(bad.output)")
                #expect(bad.output.contains("FAIL map ghost: HAProxy has not loaded /nowhere/ghost.map"), "\(bad.output)")
                #expect(bad.output.contains("FAIL topic missing.dlq"), "\(bad.output)")
                #expect(bad.output.contains("ok   map hosts"))
                let unreachable = try mapbridge([
                    "check", "--config",
                    try write(yaml(harness, haproxy).replacingOccurrences(of: haproxy.endpoint, with: "unix:///nowhere/admin.sock"), directory),
                ])
                #expect(unreachable.status == 1 && unreachable.output.contains("FAIL haproxy"), "\(unreachable.output)")
                let invalid = try mapbridge(["check", "--config", try write("kafka: { brokers: 1 }\nbogus: true\n", directory)])
                #expect(invalid.status == 2)
            }
        }
    }

    @Test("diff: exact after the bridge applied the events; extra, different and missing keys when HAProxy was changed behind its back")
    func diff() async throws {
        try await withHAProxy([TestMap("hosts")]) { haproxy in
            try await withBridgeHarness(topics: [("changes", 2)]) { harness in
                let directory = try TemporaryDirectory()
                defer { directory.remove() }
                let config = try write(yaml(harness, haproxy), directory)
                let before = try mapbridge(["diff", "--config", config])
                #expect(before.status == 0 && before.output.contains("hosts: no stored state yet"), "\(before.output)")

                harness.start(
                    harness.configuration(
                        socket: haproxy.endpoint, maps: [("hosts", haproxy.mapPath("hosts"))], topics: [.init(name: "changes", format: .json)]))
                for n in 0..<50 { try harness.produce(topic: "changes", key: "k\(n)", value: EndToEndTests.jsonEvent("hosts", "k\(n).example.com", "be_\(n)")) }
                try harness.flush()
                try await waitUntil("the events applied and committed", timeout: 60) { harness.committedEverything() }
                try await harness.stop()

                let exact = try mapbridge(["diff", "--config", config])
                #expect(exact.status == 0 && exact.output.contains("hosts: exact (50 entries)"), "\(exact.output)")

                let map = haproxy.mapPath("hosts")
                _ = try haproxy.oracle.run("add map \(map) intruder.example.com be_x")
                _ = try haproxy.oracle.run("set map \(map) k1.example.com be_changed")
                _ = try haproxy.oracle.run("del map \(map) k2.example.com")
                _ = try haproxy.oracle.run("add map \(map) k3.example.com be_dup")
                let differs = try mapbridge(["diff", "--config", config])
                #expect(differs.status == 1, "\(differs.output)")
                for line in [
                    "missing 1, extra 1, different 1, duplicated 1", "  extra intruder.example.com", "  different k1.example.com", "  missing k2.example.com",
                    "  duplicated k3.example.com",
                ] {
                    #expect(differs.output.contains(line), "missing '\(line)' in:\n\(differs.output)")
                }
            }
        }
    }

    @Test("publish: valid lines and JSON events reach HAProxy through the bridge; invalid lines are named and not published")
    func publish() async throws {
        try await withHAProxy([TestMap("hosts")]) { haproxy in
            try await withBridgeHarness(topics: [("changes", 2)]) { harness in
                let directory = try TemporaryDirectory()
                defer { directory.remove() }
                let config = try write(yaml(harness, haproxy), directory)
                harness.start(
                    harness.configuration(
                        socket: haproxy.endpoint, maps: [("hosts", haproxy.mapPath("hosts"))], topics: [.init(name: "changes", format: .json)]))
                let seed = try mapbridge(["publish", "--config", config, "--map", "hosts"], input: "gone.example.com be_x\n")
                #expect(seed.status == 0)
                let input = """
                    # routes for the demo
                    a.example.com be_a
                    b.example.com be b; with spaces

                    -gone.example.com
                    {"map":"hosts","op":"set","key":"json.example.com","value":"be_json"}
                    bad\u{07}key be_bad
                    -
                    """
                let errors = Locked("")
                let result = try mapbridge(["publish", "--config", config, "--map", "hosts"], input: input, errors: errors)
                #expect(result.status == 1, "invalid lines make the exit status 1")
                #expect(errors.value.contains("line 7") && errors.value.contains("line 8"), "\(errors.value)")
                let expected = ["a.example.com": "be_a", "b.example.com": "be b; with spaces", "json.example.com": "be_json"]
                try await waitUntil("the published changes in HAProxy", timeout: 60) { EndToEndTests().mapMatches(haproxy, "hosts", expected) }
                try EndToEndTests().expectExact(haproxy, "hosts", expected)
                try await harness.stop()
            }
        }
    }
}
