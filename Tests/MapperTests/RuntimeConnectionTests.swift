import Core
import NIOCore
import TestSupport
import Testing

@testable import Mapper

@Suite("Runtime connection against a scripted peer")
struct RuntimeConnectionTests {
    /// Answers like HAProxy: silent success for set/add, `entry not found.` for keys named "missing".
    static func haproxyLike(_ command: String) -> FakeRuntimePeer.Action {
        if command.hasPrefix("set map") && command.contains(" missing ") { return .answer("entry not found.") }
        if command.hasPrefix("del map") && command.hasSuffix(" missing") { return .answer("Key not found.") }
        if command.hasPrefix("show info") { return .answer("Name: HAProxy\nVersion: 2.6.12\nPid: 42\nStart_time_sec: 1\n") }
        return .answer("")
    }

    func connect(_ peer: FakeRuntimePeer, timeout: TimeAmount = .seconds(5), window: Int = 128) async throws -> RuntimeConnection {
        var options = RuntimeConnectionOptions()
        options.responseTimeout = timeout
        options.window = window
        return try await RuntimeConnection.connect(to: try RuntimeEndpoint(parsing: peer.endpoint), options: options)
    }

    @Test("the session is made interactive with a long CLI timeout before anything else")
    func handshake() async throws {
        let peer = try FakeRuntimePeer(script: Self.haproxyLike)
        defer { peer.shutdown() }
        let connection = try await connect(peer)
        await connection.close()
        #expect(peer.commands == ["prompt", "set timeout cli 3600"])
    }

    @Test("pipelined answers pair with their commands even when written a byte at a time", arguments: [1, 3, 1 << 20])
    func pipelining(writeSize: Int) async throws {
        let peer = try FakeRuntimePeer(writeSize: writeSize, script: Self.haproxyLike)
        defer { peer.shutdown() }
        let connection = try await connect(peer, window: 7)
        var commands: [ByteBuffer] = []
        for index in 0..<300 {
            commands.append(RuntimeCommand.set("/m.map", key: index % 3 == 0 ? "missing" : "k\(index)", value: "v"))
        }
        var chunker = PayloadChunker(map: "/m.map", budget: 200)
        for index in 0..<40 { chunker.append(key: "p\(index)", value: "v") }
        commands += chunker.finish().map(\.bytes)
        let answers = try await connection.execute(commands)
        #expect(answers.count == commands.count)
        for index in 0..<300 {
            #expect(answers[index].text == (index % 3 == 0 ? "entry not found." : ""))
        }
        #expect(answers[300...].allSatisfy { $0.isEmpty && $0.payloadPrompts > 0 })
        let info = try HAProxyInfo(parsing: try await connection.execute(RuntimeCommand.showInfo()).text)
        #expect(info.pid == 42)
        await connection.close()
    }

    @Test("a peer that closes mid-batch fails the batch and says how many commands were answered")
    func closeMidBatch() async throws {
        let peer = try FakeRuntimePeer { command in
            command.contains(" k5 ") ? .close : Self.haproxyLike(command)
        }
        defer { peer.shutdown() }
        let connection = try await connect(peer, window: 1)
        let commands = (0..<10).map { RuntimeCommand.set("/m.map", key: "k\($0)", value: "v") }
        let failure = await #expect(throws: RuntimeJobFailure.self) { try await connection.execute(commands) }
        #expect(failure?.answered.count == 5)
        #expect(failure?.error.code == .connectionClosed)
        #expect(!connection.isActive)
        await #expect(throws: (any Error).self) { try await connection.execute(RuntimeCommand.showInfo()) }
    }

    @Test("a payload dropped for being too large is a failure, never a silent success")
    func oversizedPayloadIsFailure() async throws {
        // HAProxy 2.6 answers an over-long payload with its '+ ' prompts and then closes.
        let peer = try FakeRuntimePeer { command in
            command.hasPrefix("add map") && command.contains("\n") ? .rawThenClose("+ + + ") : .answer("")
        }
        defer { peer.shutdown() }
        let connection = try await connect(peer)
        var chunker = PayloadChunker(map: "/m.map", budget: 10000)
        chunker.append(key: "a", value: "1")
        chunker.append(key: "b", value: "2")
        let payload = chunker.finish()[0].bytes
        let failure = await #expect(throws: RuntimeJobFailure.self) { try await connection.execute([payload]) }
        #expect(failure?.answered.isEmpty == true)
        #expect(failure?.error.reason.contains("tune.bufsize") == true)
    }

    @Test("an answer with nothing in flight closes the session as out of step")
    func unsolicitedAnswer() async throws {
        let peer = try FakeRuntimePeer { command in
            command == "show info" ? .raw("Pid: 1\nVersion: 2.6\n\n> Key not found.\n\n> ") : .answer("")
        }
        defer { peer.shutdown() }
        let connection = try await connect(peer)
        _ = try? await connection.execute(RuntimeCommand.showInfo())
        try await waitUntil("the connection to close") { !connection.isActive }
    }

    @Test("a silent peer times out the commands in flight")
    func silentPeer() async throws {
        let peer = try FakeRuntimePeer { command in
            command.hasPrefix("set map") ? .raw("") : .answer("")
        }
        defer { peer.shutdown() }
        let connection = try await connect(peer, timeout: .milliseconds(300))
        let failure = await #expect(throws: RuntimeJobFailure.self) {
            try await connection.execute([RuntimeCommand.set("/m.map", key: "k", value: "v")])
        }
        #expect(failure?.error.code == .timeout)
    }

    @Test("endpoints parse, and bad ones are refused with the reason")
    func endpoints() throws {
        #expect(try RuntimeEndpoint(parsing: "unix:///run/haproxy/admin.sock") == .unix(path: "/run/haproxy/admin.sock"))
        #expect(try RuntimeEndpoint(parsing: "tcp://127.0.0.1:9999") == .tcp(host: "127.0.0.1", port: 9999))
        #expect(try RuntimeEndpoint(parsing: "tcp://[::1]:9999") == .tcp(host: "::1", port: 9999))
        for bad in ["/run/haproxy.sock", "tcp://host", "tcp://host:0", "tcp://:80", "http://x:1", "unix://"] {
            #expect(throws: MapperError.self, "\(bad)") { try RuntimeEndpoint(parsing: bad) }
        }
    }
}

@Suite("HAProxy versions")
struct HAProxyVersionTests {
    func info(_ version: String) -> HAProxyInfo { HAProxyInfo(pid: 1, startTimeSec: 1, uptimeSec: 1, version: version, stopping: false) }

    @Test("what each version gets: support, set/del cost, silent refusals")
    func versions() {
        #expect(!info("2.3.10").isSupported && !info("1.8.30").isSupported)
        for version in ["2.4.0", "2.6.12-1+deb12u4", "2.8.0", "3.0.0", "3.2.0", "3.3.0", "3.4-dev2"] { #expect(info(version).isSupported, "\(version)") }
        #expect(info("2.8.0").hasLinearSetAndDelete && !info("2.9.0").hasLinearSetAndDelete && !info("3.0.0").hasLinearSetAndDelete)
        #expect(info("3.0.0").answersRefusedValuesSilently && !info("3.2.0").answersRefusedValuesSilently && !info("3.3.0").answersRefusedValuesSilently)
        #expect(!info("3.3.0").isNewerThanTested && info("3.4-dev2").isNewerThanTested)
        #expect(info("2.6.12").behaviour.count == 2 && info("3.2.0").behaviour.count == 1)
    }

    @Test("sharing the map and owning nothing yet, the bridge does not read the live map (millions of entries, perhaps); owning a partition, it does")
    func noReadWhileOwningNothing() async throws {
        let peer = try FakeRuntimePeer { command in
            if command.hasPrefix("show info") { return .answer("Name: HAProxy\nVersion: 2.6.12\nPid: 42\nStart_time_sec: 1\n") }
            if command == "show map" { return .answer("# id (file) description\n0 (/m/hosts.map) pattern loaded from file. curr_ver=0 next_ver=0 entry_cnt=1") }
            if command.hasPrefix("show map ") { return .answer("0x1 a 1") }
            return .answer("")
        }
        defer { peer.shutdown() }
        let stored = MapContents(owned: [MapContents.Entry(key: MapKey("a"), value: "1", owner: 0)])
        let applier = MapApplier(
            maps: [MapDefinition(name: "hosts", path: "/m/hosts.map")], initial: [stored], endpoint: try RuntimeEndpoint(parsing: peer.endpoint),
            options: ApplierOptions(), logger: .init(label: "test"))
        applier.setOwnership(exclusive: false, owned: [])
        _ = try await applier.synchronize()
        #expect(!peer.commands.contains("show map /m/hosts.map"), "\(peer.commands)")
        applier.setOwnership(exclusive: false, owned: [0])
        _ = try await applier.synchronize()
        #expect(peer.commands.contains("show map /m/hosts.map"), "\(peer.commands)")
        await applier.disconnect()
    }

    @Test("a version older than 2.4 is refused at connect, naming it")
    func refusedAtConnect() async throws {
        let peer = try FakeRuntimePeer { command in
            command.hasPrefix("show info") ? .answer("Name: HAProxy\nVersion: 2.2.30\nPid: 42\nStart_time_sec: 1\n") : .answer("")
        }
        defer { peer.shutdown() }
        let applier = MapApplier(
            maps: [MapDefinition(name: "hosts", path: "/m/hosts.map")], initial: [nil], endpoint: try RuntimeEndpoint(parsing: peer.endpoint),
            options: ApplierOptions(), logger: .init(label: "test"))
        do {
            _ = try await applier.synchronize()
            Issue.record("connected to HAProxy 2.2")
        } catch let error as MapperError {
            #expect(error.code == .unsupportedVersion && error.reason.contains("HAProxy 2.2.30 is not supported"), "\(error)")
        }
        await applier.disconnect()
    }
}

@Suite("Cost model per HAProxy version")
struct CostModelVersionTests {
    func model(_ version: String) -> ApplyCostModel {
        ApplyCostModel(info: HAProxyInfo(pid: 1, startTimeSec: 1, uptimeSec: 1, version: version, stopping: false))
    }

    @Test("2,000 updates on a 100,000-entry map: a rebuild before 2.9 (set/del scan the map), incremental from 3.0")
    func choice() {
        for version in ["2.4.0", "2.6.12", "2.8.0"] {
            let model = model(version)
            #expect(model.linearSetDelete)
            #expect(model.rebuild(entries: 100_000) < model.incremental(updates: 2000, adds: 0, mapSize: 100_000), "\(version)")
        }
        for version in ["3.0.0", "3.2.0", "3.3.0", "3.4-dev1"] {
            let model = model(version)
            #expect(!model.linearSetDelete)
            #expect(model.incremental(updates: 2000, adds: 0, mapSize: 100_000) < model.rebuild(entries: 100_000), "\(version)")
        }
        #expect(model("3.2.0").perCommand > model("3.3.0").perCommand, "each version starts from its own measured figure")
        #expect(model("2.8.0").perScannedEntry > model("2.6.12").perScannedEntry)
    }
}
