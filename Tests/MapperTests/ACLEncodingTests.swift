import Core
import NIOCore
import TestSupport
import Testing

@testable import Mapper

@Suite("ACL commands, rules and files")
struct ACLEncodingTests {
    let blocklist = MapDefinition(name: "blocklist", path: "/etc/haproxy/blocklist.acl", match: .ip, kind: .acl)

    @Test("runtime commands spell acl, escape the pattern, and add one pattern per command (HAProxy takes no ACL payload)")
    func commands() {
        #expect(String(buffer: RuntimeCommand.addPattern("/b.acl", pattern: "a b;c", version: 4)) == "add acl @4 /b.acl a\\ b\\;c\n")
        #expect(String(buffer: RuntimeCommand.addPattern("/b.acl", pattern: "p")) == "add acl /b.acl p\n")
        #expect(String(buffer: RuntimeCommand.del("/b.acl", key: "p", kind: .acl)) == "del acl /b.acl p\n")
        #expect(String(buffer: RuntimeCommand.prepare("/b.acl", kind: .acl)) == "prepare acl /b.acl\n")
        #expect(String(buffer: RuntimeCommand.commit("/b.acl", version: 4, kind: .acl)) == "commit acl @4 /b.acl\n")
        #expect(String(buffer: RuntimeCommand.showMap("/b.acl", version: 4, kind: .acl)) == "show acl @4 /b.acl\n")
        #expect(String(buffer: RuntimeCommand.listMaps(kind: .acl)) == "show acl\n")
        #expect(String(buffer: RuntimeCommand.del("/m.map", key: "p")) == "del map /m.map p\n", "maps are unchanged")
    }

    @Test("a pattern is checked as a key, by the ACL's match type; its value is never checked")
    func rules() {
        let rules = EntryRules.default
        #expect(rules.check(key: "203.0.113.0/24", value: "", for: blocklist) == nil)
        #expect(rules.check(key: "2001:db8::/32", value: nil, for: blocklist) == nil)
        #expect(rules.check(key: "not-an-address", value: "", for: blocklist) == .wrongType(.key, expected: "an IPv4 or IPv6 address or network"))
        #expect(rules.check(key: "10.0.0.1 x", value: "", for: blocklist) == .spaceInKey)
        #expect(rules.check(key: "#0x55d1", value: "", for: blocklist) == .entryReference)
        let strings = MapDefinition(name: "bots", path: "/bots.acl", kind: .acl)
        #expect(rules.check(key: "curl/", value: "", for: strings) == nil, "the empty value of an ACL change is not an empty map value")
        #expect(rules.check(key: "", value: "", for: strings) == .empty(.key))
        #expect(rules.check(key: "a\nb", value: "", for: strings) == .controlCharacter(.key, offset: 1))
    }

    @Test("an ACL file holds one pattern per line and nothing after it; a pattern starting with # is kept from being a comment")
    func file() throws {
        var builder = StateFiles.Builder(title: "ACL blocklist (/b.acl)", offsets: ["t:0": 7], mapHeader: ["Managed by mapbridge"], capacity: 2, kind: .acl)
        builder.append(owner: "t:0", key: "10.0.0.0/8", value: "")
        builder.append(owner: "t:0", key: "#hash", value: "")
        builder.appendTombstone(owner: "t:0", key: "192.0.2.1")
        let (state, map) = builder.finish()
        #expect(String(decoding: map ?? [], as: UTF8.self) == "# Managed by mapbridge\n10.0.0.0/8\n #hash\n")
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        try StateFiles.writeAtomically(path: directory.path + "/b.state", bytes: state)
        let stored = try StateFiles.readState(path: directory.path + "/b.state")
        #expect(stored?.entries == [.init(owner: "t:0", key: "10.0.0.0/8", value: ""), .init(owner: "t:0", key: "#hash", value: "")])
        #expect(stored?.tombstones.map(\.key) == ["192.0.2.1"], "an entry with the empty value is not a tombstone")
        #expect(stored?.offsets == ["t:0": 7])
        #expect(
            String(decoding: StateFiles.mapFile([(MapKey("a"), ""), (MapKey("b"), "")], header: [], kind: .acl), as: UTF8.self) == "a\nb\n")
    }
}
