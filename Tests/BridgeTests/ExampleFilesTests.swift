import Bridge
import Foundation
import TestSupport
import Testing

/// The deployment examples in the repository are checked by the tools that consume them.
@Suite("Example deployment files")
struct ExampleFilesTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// Runs a tool; its exit status and what it printed on stderr.
    func run(_ tool: String, _ arguments: [String], environment: [String: String] = [:]) throws -> (status: Int32, errors: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = [tool] + arguments
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        let errors = Pipe()
        process.standardError = errors
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        let data = errors.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: data, as: UTF8.self))
    }

    @Test("config/haproxy.cfg is valid for HAProxy, with the example maps")
    func haproxyConfiguration() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        try FileManager.default.createDirectory(atPath: directory.file("maps"), withIntermediateDirectories: true)
        for map in ["hosts.map", "blocklist.map", "admin-allowlist.acl"] {
            try FileManager.default.copyItem(atPath: Self.root.appendingPathComponent("config/maps/\(map)").path, toPath: directory.file("maps/\(map)"))
        }
        let (status, errors) = try run(
            "haproxy", ["-c", "-f", Self.root.appendingPathComponent("config/haproxy.cfg").path],
            environment: ["HAPROXY_RUN_DIR": directory.path, "MAPS_DIR": directory.file("maps")])
        #expect(status == 0, "\(errors)")
    }

    @Test("docker-compose.yml is a valid compose file (docker-compose config)")
    func composeFile() throws {
        let (status, errors) = try run("docker-compose", ["-f", Self.root.appendingPathComponent("docker-compose.yml").path, "config", "-q"])
        #expect(status == 0, "\(errors)")
    }

    @Test("config/mapbridge.service passes systemd-analyze verify, pointing at the built binary")
    func systemdUnit() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let unit = try String(contentsOf: Self.root.appendingPathComponent("config/mapbridge.service"), encoding: .utf8)
        #expect(unit.contains("ExecStart=/usr/local/bin/mapbridge run --config /etc/mapbridge/mapbridge.yaml"))
        let path = directory.file("mapbridge.service")
        try unit.replacingOccurrences(of: "/usr/local/bin/mapbridge", with: BridgeProcess.executable).write(toFile: path, atomically: true, encoding: .utf8)
        let (status, errors) = try run("systemd-analyze", ["verify", path])
        #expect(status == 0 && errors.isEmpty, "\(errors)")
    }
}
