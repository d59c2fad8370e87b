import Core
import Foundation
import Logging
import NIOCore
import TestSupport
import Testing

@testable import Mapper

/// The applier against real HAProxy processes; what HAProxy holds is read back with the
/// independent oracle client.
@Suite("Applier against real HAProxy", .serialized)
struct ApplierIntegrationTests {
    static let logger = Logger(label: "test.applier")

    func applier(_ haproxy: HAProxyProcess, _ maps: [MapDefinition], initial: [MapContents?]? = nil, options: ApplierOptions = .init()) throws -> MapApplier {
        MapApplier(
            maps: maps, initial: initial ?? maps.map { _ in nil }, endpoint: try RuntimeEndpoint(parsing: haproxy.endpoint),
            options: options, logger: Self.logger)
    }

    func definition(_ haproxy: HAProxyProcess, _ name: String, match: MatchType = .str, value: ValueType = .str) -> MapDefinition {
        MapDefinition(name: name, path: haproxy.mapPath(name), match: match, valueType: value)
    }

    func set(_ key: String, _ value: String, tag: Int = 0) -> KeyChange { KeyChange(key: MapKey(key), value: value, tag: tag) }
    func del(_ key: String, tag: Int = 0) -> KeyChange { KeyChange(key: MapKey(key), value: nil, tag: tag) }

    func expectExact(_ haproxy: HAProxyProcess, _ map: String, _ expected: [String: String], sourceLocation: SourceLocation = #_sourceLocation) throws {
        let (entries, duplicates) = try haproxy.oracle.snapshot(of: haproxy.mapPath(map))
        #expect(duplicates.isEmpty, "duplicate entries: \(duplicates)", sourceLocation: sourceLocation)
        let wanted = Dictionary(uniqueKeysWithValues: expected.map { (Array($0.key.utf8), $0.value) })
        #expect(entries == wanted, sourceLocation: sourceLocation)
    }

    @Test("with a 2,400-byte map path, the longest entry still fits one command, escaped to twice its size", arguments: [ApplyStrategy.incremental, .rebuild])
    func longMapPath(strategy: ApplyStrategy) async throws {
        let folder = (0..<12).map { _ in String(repeating: "d", count: 200) }.joined(separator: "/")
        try await withHAProxy([TestMap("hosts", initialLines: ["k old"])], mapsDirectory: folder) { haproxy in
            let path = haproxy.mapPath("hosts")
            #expect(path.utf8.count > 2400)
            var options = ApplierOptions(bufsize: 16384, longestMapPath: path.utf8.count)
            options.strategy.override = strategy
            let limit = options.rules.maxEntryBytes
            #expect(limit < EntryRules.entryLimit(bufsize: 16384), "the path takes room from the entry")
            // Backslashes: every one is escaped, so the single-line command carries the entry twice over.
            let value = "v" + String(repeating: "\\", count: limit - 3) + "v"
            #expect(options.rules.check(key: "k", value: value) == nil)
            #expect(options.rules.check(key: "k", value: value + "x") != nil, "one byte more is too long")
            let applier = try applier(haproxy, [MapDefinition(name: "hosts", path: path)], options: options)
            try await applier.synchronize()
            let report = try await applier.apply([[set("k", value)]], validated: true)
            #expect(report.rejections.isEmpty)
            try expectExact(haproxy, "hosts", ["k": value])
            await applier.disconnect()
        }
    }

    @Test("a typed value HAProxy does not take is never counted as applied, whatever the version answers (2.4 to 3.0: nothing)")
    func silentRefusalConfirmed() async throws {
        try await withHAProxy([TestMap("servers", valueType: "ip", initialLines: ["k 10.0.0.1", "other 10.0.0.2"])]) { haproxy in
            var options = ApplierOptions()
            options.strategy.override = .incremental
            let applier = try applier(haproxy, [definition(haproxy, "servers", value: .ip)], options: options)
            try await applier.synchronize()
            // Past the entry rules on purpose (validated: true): the rules refuse it before HAProxy ever sees it.
            let report = try await applier.apply([[set("k", "2001:db8::/32", tag: 1), set("other", "10.0.0.3", tag: 2)]], validated: true)
            #expect(report.rejections.map(\.key) == [MapKey("k")], "\(report.rejections)")
            #expect(report.rejections.first?.tag == 1)
            try expectExact(haproxy, "servers", ["k": "10.0.0.1", "other": "10.0.0.3"])
            #expect(applier.contents(of: 0)[MapKey("k")] == "10.0.0.1", "the desired state keeps what HAProxy holds")
            await applier.disconnect()
        }
    }

    /// A first start (no stored state) adopts HAProxy's live map. It used to read it at the
    /// connection, owning nothing yet, and again at the assignment to compare: two reads of what
    /// may be millions of entries (3-4 s each at 5,000,000). It now reads it once, when the
    /// partitions are assigned, and adopts what HAProxy holds then.
    @Test("with no stored state, the live map is read and adopted when partitions are assigned, not before")
    func adoptsAtAssignment() async throws {
        try await withHAProxy([TestMap("hosts", initialLines: ["a.example.com be_a", "b.example.com be_b"])]) { haproxy in
            let applier = try applier(haproxy, [definition(haproxy, "hosts")])
            applier.setOwnership(exclusive: false, owned: [])
            let connected = try await applier.synchronize()
            #expect(connected.connected)
            #expect(connected.resynced.isEmpty, "owning nothing, the live map is not read")
            #expect(applier.contents(of: 0).count == 0)
            // Someone writes before the assignment: the bridge adopts what HAProxy holds at the
            // assignment, and repairs nothing away.
            _ = try haproxy.oracle.run("add map \(haproxy.mapPath("hosts")) c.example.com be_c")
            applier.setOwnership(exclusive: true, owned: [0])
            let assigned = try await applier.synchronize()
            #expect(assigned.resynced.map(\.strategy) == [ApplyStrategy.none])
            #expect(applier.contents(of: 0).count == 3)
            try expectExact(haproxy, "hosts", ["a.example.com": "be_a", "b.example.com": "be_b", "c.example.com": "be_c"])
            await applier.disconnect()
        }
    }

    @Test("adopts the live map, then upserts with set/add and deletes without duplicates", arguments: [ApplyStrategy.incremental, .rebuild])
    func upserts(strategy: ApplyStrategy) async throws {
        try await withHAProxy([
            TestMap("hosts", initialLines: ["a.example.com be_a", " #hash be_hash"]), TestMap("sentinel", initialLines: ["keep me"]),
        ]) { haproxy in
            var options = ApplierOptions()
            options.strategy.override = strategy
            let applier = try applier(haproxy, [definition(haproxy, "hosts")], options: options)
            let sync = try await applier.synchronize()
            #expect(sync.connected)
            #expect(applier.contents(of: 0).count == 2)
            let report = try await applier.apply([
                [
                    set("a.example.com", "be_b"), set("new.example.com", "be_new"), del("#hash"), del("never.there"),
                ]
            ])
            #expect(report.rejections.isEmpty)
            #expect(report.strategies == [strategy])
            try expectExact(haproxy, "hosts", ["a.example.com": "be_b", "new.example.com": "be_new"])
            // Applying the same changes again (a replay after a crash) changes nothing and adds no duplicate.
            _ = try await applier.apply([[set("a.example.com", "be_b"), set("new.example.com", "be_new"), del("#hash")]])
            try expectExact(haproxy, "hosts", ["a.example.com": "be_b", "new.example.com": "be_new"])
            try expectExact(haproxy, "sentinel", ["keep": "me"])
            await applier.disconnect()
        }
    }

    @Test(
        "a payload session that reaches another HAProxy process (its socket replaced, as by a reload) refuses nothing: the interactive session completes the batch",
        arguments: [ApplyStrategy.incremental, .rebuild])
    func payloadSessionElsewhere(strategy: ApplyStrategy) async throws {
        let initial = (0..<2000).map { "k\($0).example.com be_0" }
        try await withHAProxy([TestMap("hosts", initialLines: initial)]) { first in
            try await withHAProxy([TestMap("hosts", initialLines: initial)]) { second in
                var options = ApplierOptions()
                options.strategy.override = strategy
                let applier = try applier(first, [definition(first, "hosts")], options: options)
                _ = try await applier.synchronize()
                // The interactive session stays with the first process; new sessions on its socket
                // path now reach the second one, which has another version counter and map path.
                let firstSocket = first.directory.file("first.sock")
                #expect(link(first.socketPath, firstSocket) == 0)
                #expect(rename(second.socketPath, first.socketPath) == 0)
                var changes = (0..<3000).map { set("k\($0).example.com", "be_1") }
                changes.append(set("fresh.example.com", "be_fresh"))
                let report = try await applier.apply([changes])
                #expect(report.rejections.isEmpty, "\(report.rejections.prefix(3))")
                var expected = Dictionary(uniqueKeysWithValues: (0..<3000).map { ("k\($0).example.com", "be_1") })
                expected["fresh.example.com"] = "be_fresh"
                let (entries, duplicates) = try RuntimeOracle(socketPath: firstSocket).snapshot(of: first.mapPath("hosts"))
                #expect(duplicates.isEmpty)
                #expect(entries == Dictionary(uniqueKeysWithValues: expected.map { (Array($0.key.utf8), $0.value) }))
                #expect(applier.contents(of: 0).count == expected.count)
                await applier.disconnect()
                #expect(rename(first.socketPath, second.socketPath) == 0)
            }
        }
    }

    static let awkward: [(String, String)] = [
        ("semi;colon", "val;ue; clear map /etc/other"), (#"back\slash"#, #"C:\path\to"#), ("#hash-key", "#hash value"),
        ("ünïcødé.example", "välue ✓ 日本"), ("lt<<", "<<"), ("k-trailing-lt", "a <<"), ("spaces", "value with  inner   spaces"),
        ("quote'\"", "it's \"quoted\""), ("tabless", "x\\ty"), ("ampersand&", "a&b|c$d`e`"),
    ]

    @Test("awkward keys and values reach HAProxy verbatim through payloads, set and rebuilds")
    func verbatim() async throws {
        try await withHAProxy([TestMap("hosts"), TestMap("sentinel", initialLines: ["keep me"])]) { haproxy in
            var options = ApplierOptions()
            options.strategy.override = .incremental
            let applier = try applier(haproxy, [definition(haproxy, "hosts")], options: options)
            _ = try await applier.synchronize()
            for (key, value) in Self.awkward { #expect(EntryRules.default.check(key: key, value: value) == nil, "\(key)") }
            // 1. New keys: payload add.
            _ = try await applier.apply([Self.awkward.map { set($0.0, $0.1) }])
            try expectExact(haproxy, "hosts", Dictionary(uniqueKeysWithValues: Self.awkward))
            // 2. Existing keys: single-line set with escaping.
            let changed = Self.awkward.map { ($0.0, $0.1 + " ;\\<<") }
            _ = try await applier.apply([changed.map { set($0.0, $0.1) }])
            try expectExact(haproxy, "hosts", Dictionary(uniqueKeysWithValues: changed))
            for (key, value) in changed {
                let answer = try haproxy.oracle.run("get map \(haproxy.mapPath("hosts")) \(RuntimeCommand.escaped(key))")
                #expect(answer.contains("found=yes"), "\(key): \(answer)")
                #expect(
                    answer.contains("value=\"\(value.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\""))\"")
                        || answer.contains(value), "\(key): \(answer)")
            }
            // 3. A rebuild carries them too.
            options.strategy.override = .rebuild
            let rebuilder = try self.applier(haproxy, [definition(haproxy, "hosts")], options: options)
            _ = try await rebuilder.synchronize()
            _ = try await rebuilder.apply([Self.awkward.map { set($0.0, $0.1) }])
            try expectExact(haproxy, "hosts", Dictionary(uniqueKeysWithValues: Self.awkward))
            // 4. Deleting them with escaped del leaves nothing, and the other map was never touched.
            _ = try await rebuilder.apply([Self.awkward.map { del($0.0) }])
            try expectExact(haproxy, "hosts", [:])
            try expectExact(haproxy, "sentinel", ["keep": "me"])
            #expect(try haproxy.oracle.loadedMaps() == [haproxy.mapPath("hosts"), haproxy.mapPath("sentinel")])
            await applier.disconnect()
            await rebuilder.disconnect()
        }
    }

    @Test("a large batch on a large map is applied exactly, by whichever strategy costs less")
    func largeBatches() async throws {
        let initial = (0..<5000).map { "/seed\($0) s\($0)" }
        try await withHAProxy([TestMap("hosts", initialLines: initial)]) { haproxy in
            let applier = try applier(haproxy, [definition(haproxy, "hosts")])
            _ = try await applier.synchronize()
            var expected = Dictionary(uniqueKeysWithValues: (0..<5000).map { ("/seed\($0)", "s\($0)") })
            var generator = SystemRandomNumberGenerator()
            for round in 0..<4 {
                var changes: [String: String?] = [:]
                for _ in 0..<3000 {
                    let key = Int.random(in: 0..<8000, using: &generator)
                    changes["/seed\(key)"] = Bool.random(using: &generator) ? "r\(round)-\(key)" : nil
                }
                let batch = changes.map { KeyChange(key: MapKey($0.key), value: $0.value) }
                let report = try await applier.apply([batch])
                #expect(report.rejections.isEmpty)
                for (key, value) in changes { expected[key] = value }
                try expectExact(haproxy, "hosts", expected)
            }
            await applier.disconnect()

        }
    }

    @Test("list-matched maps keep HAProxy's order: new keys append, del then set moves a key last")
    func listOrder() async throws {
        try await withHAProxy([TestMap("paths", match: "sub")]) { haproxy in
            for strategy in [ApplyStrategy.incremental, .rebuild] {
                var options = ApplierOptions()
                options.strategy.override = strategy
                let applier = try applier(haproxy, [definition(haproxy, "paths", match: .sub)], initial: [MapContents()], options: options)
                _ = try await applier.synchronize()
                _ = try await applier.apply([[set("/a", "1"), set("/b", "2"), set("/c", "3")]])
                #expect(try haproxy.oracle.entries(of: haproxy.mapPath("paths")).map(\.key) == ["/a", "/b", "/c"])
                _ = try await applier.apply([[set("/a", "1b"), KeyChange(key: MapKey("/b"), value: "2b", deletedFirst: true), set("/d", "4")]])
                let entries = try haproxy.oracle.entries(of: haproxy.mapPath("paths"))
                #expect(entries.map(\.key) == ["/a", "/c", "/b", "/d"], "\(strategy)")
                #expect(entries.map(\.value) == ["1b", "3", "2b", "4"], "\(strategy)")
                await applier.disconnect()
            }
        }
    }

    @Test("what HAProxy would refuse is reported against its change; the rest of the batch applies", arguments: [ApplyStrategy.incremental, .rebuild])
    func refusals(strategy: ApplyStrategy) async throws {
        try await withHAProxy([
            TestMap("blocked", match: "ip", initialLines: ["192.168.0.1 old"]), TestMap("weights", valueType: "int", initialLines: ["w 5"]),
        ]) { haproxy in
            var options = ApplierOptions()
            options.strategy.override = strategy
            options.strategy.minimumRebuildSize = 0
            let applier = try applier(haproxy, [definition(haproxy, "blocked", match: .ip), definition(haproxy, "weights", value: .int)], options: options)
            _ = try await applier.synchronize()
            let report = try await applier.apply([
                [
                    set("10.0.0.1", "a", tag: 1), set("notanip", "b", tag: 2), set("10.0.0.2", "c", tag: 3), set("bad.ip", "d", tag: 4),
                    set("10.0.0.0/8", "e", tag: 5),
                ],
                [set("w", "notanumber", tag: 6), set("x", "7", tag: 7), set("y", "eight", tag: 8)],
            ])
            #expect(Set(report.rejections.compactMap(\.tag)) == [2, 4, 6, 8])
            #expect(report.rejections.first { $0.tag == 6 }?.reason == "value is not an integer")
            try expectExact(haproxy, "blocked", ["192.168.0.1": "old", "10.0.0.1": "a", "10.0.0.2": "c", "10.0.0.0/8": "e"])
            try expectExact(haproxy, "weights", ["w": "5", "x": "7"])
            #expect(applier.contents(of: 1)[MapKey("w")] == "5")
            #expect(applier.contents(of: 0)[MapKey("notanip")] == nil)
            await applier.disconnect()
        }
    }

    @Test(
        "a payload line HAProxy itself refuses is found, reported, and the lines after it still applied (in one round, or in rounds of 97 entries)",
        arguments: [ApplyStrategy.incremental, .rebuild], [65536, 97])
    func haproxyRefusals(strategy: ApplyStrategy, payloadRound: Int) async throws {
        try await withHAProxy([TestMap("patterns", match: "reg", initialLines: ["^/old old"])]) { haproxy in
            var options = ApplierOptions()
            options.strategy.override = strategy
            options.strategy.minimumRebuildSize = 0
            options.payloadRound = payloadRound
            let applier = try applier(haproxy, [definition(haproxy, "patterns", match: .reg)], options: options)
            _ = try await applier.synchronize()
            // Regexes are compiled by HAProxy; the bridge lets HAProxy judge them.
            let changes =
                [set("^/api", "a", tag: 1), set("(unclosed", "b", tag: 2), set("\\d+", "c", tag: 3), set("*bad", "d", tag: 4), set("^/old", "new", tag: 5)]
                + (0..<600).map { set("^/bulk\($0)$", "v", tag: 100 + $0) } + [set("[z-a]", "e", tag: 6), set("^/last", "f", tag: 7)]
            let report = try await applier.apply([changes])
            #expect(Set(report.rejections.compactMap(\.tag)) == [2, 4, 6])
            // HAProxy's own words, whichever regex engine it was built with: PCRE2 (Debian's
            // build) adds its reason ("... is invalid (error=missing closing parenthesis, ..."),
            // libc's regex (a plain `make TARGET=linux-glibc`) does not ("... is invalid.").
            let reason = report.rejections.first { $0.tag == 2 }?.reason ?? ""
            #expect(reason.hasPrefix("regex '(unclosed' is invalid"), "\(reason)")
            var expected = ["^/api": "a", "\\d+": "c", "^/old": "new", "^/last": "f"]
            for index in 0..<600 { expected["^/bulk\(index)$"] = "v" }
            try expectExact(haproxy, "patterns", expected)
            #expect(applier.contents(of: 0).count == expected.count)
            await applier.disconnect()
        }
    }

    @Test("after HAProxy restarts (runtime changes lost), synchronisation restores the desired state")
    func restartResync() async throws {
        try await withHAProxy([TestMap("hosts", initialLines: ["file.only value"])]) { haproxy in
            let applier = try applier(haproxy, [definition(haproxy, "hosts")])
            _ = try await applier.synchronize()
            _ = try await applier.apply([(0..<300).map { set("/k\($0)", "v\($0)") } + [del("file.only")]])
            var expected = Dictionary(uniqueKeysWithValues: (0..<300).map { ("/k\($0)", "v\($0)") })
            try expectExact(haproxy, "hosts", expected)
            try await haproxy.restart()
            try expectExact(haproxy, "hosts", ["file.only": "value"])
            await #expect(throws: (any Error).self) { try await applier.apply([[set("/k1", "new")]]) }
            let sync = try await applier.synchronize()
            #expect(sync.processChanged)
            #expect(sync.resynced.count == 1)
            expected["/k1"] = "new"
            try expectExact(haproxy, "hosts", expected)
            await applier.disconnect()
        }
    }

    @Test("a session killed mid-batch leaves the batch to be completed by the next synchronisation")
    func killedMidBatch() async throws {
        try await withHAProxy([TestMap("hosts")]) { haproxy in
            var options = ApplierOptions()
            options.strategy.override = .incremental
            let applier = try applier(haproxy, [definition(haproxy, "hosts")], options: options)
            _ = try await applier.synchronize()
            _ = try await applier.apply([(0..<2000).map { set("/k\($0)", "v0") }])
            // 2000 pipelined sets; HAProxy dies while they are in flight.
            let killer = Task {
                try await waitUntil("some sets to land", every: .milliseconds(1)) {
                    (try? haproxy.oracle.run("get map \(haproxy.mapPath("hosts")) /k1999"))?.contains("v1") ?? true
                        || (try? haproxy.oracle.run("get map \(haproxy.mapPath("hosts")) /k0"))?.contains("v1") ?? true
                }
                haproxy.kill()
            }
            do {
                _ = try await applier.apply([(0..<2000).map { set("/k\($0)", "v1") }])
            } catch {
                // Expected when the kill lands mid-batch.
            }
            _ = try? await killer.value
            haproxy.kill()
            try await haproxy.start()
            _ = try await applier.synchronize()
            try expectExact(haproxy, "hosts", Dictionary(uniqueKeysWithValues: (0..<2000).map { ("/k\($0)", "v1") }))
            await applier.disconnect()
        }
    }

    @Test("payloads fit a small tune.bufsize; an over-long one fails loudly instead of vanishing")
    func smallBuffer() async throws {
        try await withHAProxy([TestMap("hosts")], bufsize: 4096) { haproxy in
            let fitting = try applier(haproxy, [definition(haproxy, "hosts")], options: ApplierOptions(bufsize: 4096))
            _ = try await fitting.synchronize()
            let rules = EntryRules(bufsize: 4096)
            let big = String(repeating: "v", count: rules.maxEntryBytes - 10)
            let changes = (0..<2000).map { set("/k\($0)", "v\($0)") } + [set("/big", big)]
            let report = try await fitting.apply([changes])
            #expect(report.rejections.isEmpty)
            var expected = Dictionary(uniqueKeysWithValues: (0..<2000).map { ("/k\($0)", "v\($0)") })
            expected["/big"] = big
            try expectExact(haproxy, "hosts", expected)
            await fitting.disconnect()

            var tooBig = ApplierOptions()
            tooBig.payloadBudget = 12288  // three times HAProxy's buffer
            let careless = try applier(haproxy, [definition(haproxy, "hosts")], options: tooBig)
            _ = try await careless.synchronize()
            await #expect(throws: MapperError.self) {
                _ = try await careless.apply([(0..<2000).map { set("/other\($0)", "v") }])
            }
            await careless.disconnect()
        }
    }

    @Test("duplicate entries in HAProxy's map are removed by an atomic rebuild")
    func duplicatesRepaired() async throws {
        try await withHAProxy([TestMap("hosts", initialLines: ["a 1", "b 2", "a 3"])]) { haproxy in
            let applier = try applier(haproxy, [definition(haproxy, "hosts")])
            let sync = try await applier.synchronize()
            #expect(sync.resynced.first?.comparison.duplicated == [MapKey("a")])
            #expect(sync.resynced.first?.strategy == .rebuild)
            try expectExact(haproxy, "hosts", ["a": "1", "b": "2"])
            await applier.disconnect()
        }
    }

    @Test("sharing the map, a key HAProxy holds three times is repaired key by key to one entry, on every version")
    func duplicatesRepairedKeyByKey() async throws {
        // HAProxy 3.3 removes one entry of a duplicated key per `del map` in an interactive
        // session; the repair must not leave the others behind (run with MAPBRIDGE_TEST_HAPROXY).
        try await withHAProxy([TestMap("hosts", initialLines: ["a 1", "b 2", "a 3", "a 4"])]) { haproxy in
            let owner: MapContents.Owner = 7
            let desired = MapContents(owned: [
                MapContents.Entry(key: MapKey("a"), value: "1", owner: owner), MapContents.Entry(key: MapKey("b"), value: "2", owner: owner),
            ])
            let applier = try applier(haproxy, [definition(haproxy, "hosts")], initial: [desired])
            applier.setOwnership(exclusive: false, owned: [owner])
            let sync = try await applier.synchronize()
            #expect(sync.resynced.first?.comparison.duplicated == [MapKey("a")])
            #expect(sync.resynced.first?.strategy == .incremental)
            try expectExact(haproxy, "hosts", ["a": "1", "b": "2"])
            await applier.disconnect()
        }
    }

    @Test("a batch's delete removes every entry of a key another writer duplicated, on every version")
    func deleteRemovesDuplicates() async throws {
        // HAProxy 3.3 removes one entry per interactive `del map` (run with MAPBRIDGE_TEST_HAPROXY).
        try await withHAProxy([TestMap("hosts", initialLines: ["a 1", "b 2"])]) { haproxy in
            var options = ApplierOptions()
            options.strategy.override = .incremental  // the batch's own del, not a rebuild
            let applier = try applier(haproxy, [definition(haproxy, "hosts")], options: options)
            _ = try await applier.synchronize()
            _ = try haproxy.oracle.run("add map \(haproxy.mapPath("hosts")) a 5")
            _ = try haproxy.oracle.run("add map \(haproxy.mapPath("hosts")) a 6")
            _ = try await applier.apply([[del("a")]])
            try expectExact(haproxy, "hosts", ["b": "2"])
            await applier.disconnect()
        }
    }

    @Test("a map HAProxy has not loaded is an error naming it, before anything is sent")
    func unknownMap() async throws {
        try await withHAProxy([TestMap("hosts")]) { haproxy in
            let applier = try applier(haproxy, [MapDefinition(name: "ghost", path: "/etc/haproxy/ghost.map")])
            let error = await #expect(throws: MapperError.self) { try await applier.synchronize() }
            #expect(error?.code == .unknownMap)
            #expect(error?.reason.contains("ghost") == true)
        }
    }
}
