import Core
import Foundation
import Logging
import TestSupport
import Testing

@testable import Mapper

/// ACL pattern files through the applier, against real HAProxy processes (any version, with
/// MAPBRIDGE_TEST_HAPROXY); what HAProxy holds is read back with the independent oracle client.
@Suite("ACL files against real HAProxy", .serialized)
struct ACLApplierTests {
    static let logger = Logger(label: "test.acl")

    func applier(_ haproxy: HAProxyProcess, _ acls: [MapDefinition], initial: [MapContents?]? = nil, options: ApplierOptions = .init()) throws -> MapApplier {
        MapApplier(
            maps: acls, initial: initial ?? acls.map { _ in nil }, endpoint: try RuntimeEndpoint(parsing: haproxy.endpoint),
            options: options, logger: Self.logger)
    }

    func acl(_ haproxy: HAProxyProcess, _ name: String, match: MatchType = .str) -> MapDefinition {
        MapDefinition(name: name, path: haproxy.mapPath(name), match: match, kind: .acl)
    }

    func add(_ pattern: String, tag: Int = 0) -> KeyChange { KeyChange(key: MapKey(pattern), value: "", tag: tag) }
    func del(_ pattern: String, tag: Int = 0) -> KeyChange { KeyChange(key: MapKey(pattern), value: nil, tag: tag) }

    /// HAProxy holds exactly these patterns, each once.
    func expectExact(_ haproxy: HAProxyProcess, _ name: String, _ expected: Set<String>, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let (entries, duplicates) = try haproxy.oracle.snapshot(of: haproxy.mapPath(name))
        #expect(duplicates.isEmpty, "duplicate patterns: \(duplicates)", sourceLocation: sourceLocation)
        #expect(Set(entries.keys.map { String(decoding: $0, as: UTF8.self) }) == expected, sourceLocation: sourceLocation)
    }

    @Test("adopts the live ACL, adds patterns once however often they are added, deletes them", arguments: [ApplyStrategy.incremental, .rebuild])
    func addsAndDeletes(strategy: ApplyStrategy) async throws {
        try await withHAProxy([TestMap.acl("blocklist", match: "ip", initialLines: ["10.0.0.0/8", "192.0.2.1"])]) { haproxy in
            var options = ApplierOptions()
            options.strategy.override = strategy
            let applier = try applier(haproxy, [acl(haproxy, "blocklist", match: .ip)], options: options)
            _ = try await applier.synchronize()
            #expect(applier.contents(of: 0).count == 2, "the live patterns are adopted")
            var report = try await applier.apply([[add("203.0.113.0/24"), add("10.0.0.0/8"), del("192.0.2.1"), add("2001:db8::/32")]])
            #expect(report.rejections.isEmpty)
            try expectExact(haproxy, "blocklist", ["10.0.0.0/8", "203.0.113.0/24", "2001:db8::/32"])
            // Added again (a replayed event): still once.
            report = try await applier.apply([[add("203.0.113.0/24"), del("198.51.100.99")]])
            #expect(report.rejections.isEmpty)
            try expectExact(haproxy, "blocklist", ["10.0.0.0/8", "203.0.113.0/24", "2001:db8::/32"])
            await applier.disconnect()
        }
    }

    @Test("an added pattern blocks requests at once; a deleted one stops blocking")
    func lookupsFollow() async throws {
        let port = try freePort()
        try await withHAProxy([TestMap.acl("hosts", initialLines: ["file.example.com"])], httpPort: port) { haproxy in
            let applier = try applier(haproxy, [acl(haproxy, "hosts")])
            _ = try await applier.synchronize()
            _ = try await applier.apply([[add("new.example.com"), del("file.example.com")]])
            #expect(try lookup(port: port, host: "new.example.com") == "yes")
            #expect(try lookup(port: port, host: "file.example.com") == "")
            await applier.disconnect()
        }
    }

    @Test("a pattern HAProxy refuses is reported against its change; the others are added", arguments: [ApplyStrategy.incremental, .rebuild])
    func refusedPattern(strategy: ApplyStrategy) async throws {
        try await withHAProxy([TestMap.acl("blocklist", match: "ip", initialLines: ["192.0.2.1"])]) { haproxy in
            var options = ApplierOptions()
            options.strategy.override = strategy
            let applier = try applier(haproxy, [acl(haproxy, "blocklist", match: .ip)], options: options)
            _ = try await applier.synchronize()
            // Past the entry rules on purpose (validated: true): they would refuse it before HAProxy saw it.
            let report = try await applier.apply([[add("198.51.100.7", tag: 1), add("not-an-address", tag: 2), add("198.51.100.8", tag: 3)]], validated: true)
            #expect(report.rejections.map(\.key) == [MapKey("not-an-address")])
            #expect(report.rejections.first?.tag == 2)
            try expectExact(haproxy, "blocklist", ["192.0.2.1", "198.51.100.7", "198.51.100.8"])
            #expect(applier.contents(of: 0)[MapKey("not-an-address")] == nil, "the desired state holds what HAProxy holds")
            #expect(options.rules.check(key: "not-an-address", value: "", for: acl(haproxy, "blocklist", match: .ip)) != nil, "the rules refuse it first")
            await applier.disconnect()
        }
    }

    @Test("duplicated patterns are repaired to one entry: by a rebuild, and key by key when sharing the ACL, on every version")
    func duplicatesRepaired() async throws {
        try await withHAProxy([TestMap.acl("hosts", initialLines: ["a", "b", "a", "a"]), TestMap.acl("shared", initialLines: ["a", "b", "a"])]) { haproxy in
            let applier = try applier(haproxy, [acl(haproxy, "hosts")])
            let sync = try await applier.synchronize()
            #expect(sync.resynced.first?.comparison.duplicated == [MapKey("a")])
            #expect(sync.resynced.first?.strategy == .rebuild)
            try expectExact(haproxy, "hosts", ["a", "b"])
            await applier.disconnect()

            let owner: MapContents.Owner = 3
            let desired = MapContents(owned: [
                MapContents.Entry(key: MapKey("a"), value: "", owner: owner), MapContents.Entry(key: MapKey("b"), value: "", owner: owner),
            ])
            let sharing = try self.applier(haproxy, [acl(haproxy, "shared")], initial: [desired])
            sharing.setOwnership(exclusive: false, owned: [owner])
            let repaired = try await sharing.synchronize()
            #expect(repaired.resynced.first?.strategy == .incremental)
            try expectExact(haproxy, "shared", ["a", "b"])
            // A batch's delete removes every entry another writer added.
            _ = try haproxy.oracle.run("add acl \(haproxy.mapPath("shared")) b")
            _ = try await sharing.apply([[del("b")]])
            try expectExact(haproxy, "shared", ["a"])
            await sharing.disconnect()
        }
    }

    @Test("after HAProxy restarts (runtime changes lost), synchronisation restores the desired patterns")
    func restartResync() async throws {
        try await withHAProxy([TestMap.acl("hosts", initialLines: ["file.only"])]) { haproxy in
            let applier = try applier(haproxy, [acl(haproxy, "hosts")])
            _ = try await applier.synchronize()
            _ = try await applier.apply([(0..<300).map { add("k\($0).example.com") } + [del("file.only")]])
            let expected = Set((0..<300).map { "k\($0).example.com" })
            try expectExact(haproxy, "hosts", expected)
            try await haproxy.restart()
            try expectExact(haproxy, "hosts", ["file.only"])
            let sync = try await applier.synchronize()
            #expect(sync.processChanged)
            try expectExact(haproxy, "hosts", expected)
            await applier.disconnect()
        }
    }

    @Test("an ACL HAProxy has not loaded is an error naming it; a map of that path does not stand in for it")
    func unknownACL() async throws {
        try await withHAProxy([TestMap("hosts")]) { haproxy in
            let applier = try applier(haproxy, [MapDefinition(name: "ghost", path: haproxy.mapPath("hosts"), kind: .acl)])
            let error = await #expect(throws: MapperError.self) { try await applier.synchronize() }
            #expect(error?.code == .unknownMap)
            #expect(error?.reason.contains("ghost") == true)
            #expect(error?.reason.contains("ACL") == true)
        }
    }

    /// What the lookups frontend answers for a request with this Host header (`txn.<acl>`).
    func lookup(port: Int, host: String) throws -> String {
        try httpGet(port: port, headers: ["Host": host]).body.trimmingCharacters(in: .whitespacesAndNewlines)
    }
}
