import Core
import Events
import Mapper
import TestSupport
import Testing

@testable import Bridge

@Suite("ACL files in the configuration")
struct ACLConfigurationTests {
    static let base = """
        kafka: { brokers: "k:9092", group_id: edge }
        maps:
          hosts: { path: /etc/haproxy/maps/hosts.map }
        acls:
          blocklist: { path: /etc/haproxy/blocklist.acl, type: ip }
          bots: { path: /etc/haproxy/bots.acl, type: sub, write_acl_file: false }
        topics:
          - name: changes
        """

    func problems(_ yaml: String, environment: [String: String] = [:]) -> [String] { ConfigurationTests().problems(yaml, environment: environment) }

    @Test("acls: path, type and write_acl_file, after the maps; kv, record and debezium topics bind to one with acl:")
    func parsed() throws {
        let configuration = try BridgeConfiguration.parse(
            yaml: Self.base + """

                  - { name: blocklist.compacted, format: kv, acl: blocklist }
                  - { name: blocklist.records, format: record, acl: blocklist, key_field: cidr, delete_when: { field: active, equals: false } }
                  - { name: db.public.bots, format: debezium, acl: bots, key_field: agent }
                """, file: "t.yaml", environment: [:])
        #expect(configuration.maps.map(\.name) == ["hosts", "blocklist", "bots"])
        #expect(configuration.maps.map(\.kind) == [.map, .acl, .acl])
        #expect(configuration.mapDefinitions[1] == MapDefinition(name: "blocklist", path: "/etc/haproxy/blocklist.acl", match: .ip, kind: .acl))
        #expect(configuration.maps[2].match == .sub && !configuration.maps[2].writeMapFile)
        #expect(!configuration.mapDefinitions[2].isOrderSensitive, "an ACL only asks whether a pattern matches")
        #expect(configuration.topicFormats["blocklist.compacted"] == .kv(map: 1))
        #expect(
            configuration.topicFormats["blocklist.records"]
                == .record(map: 1, RecordFields(keyField: "cidr", valueField: nil, deleteWhen: .init(field: "active", equals: .bool(false)))))
        #expect(configuration.topicFormats["db.public.bots"] == .debezium(map: 2, RecordFields(keyField: "agent", valueField: nil)))
        let identity = StateIdentity(configuration)
        #expect(identity.maps == ["hosts": "/etc/haproxy/maps/hosts.map"])
        #expect(identity.acls == ["blocklist": "/etc/haproxy/blocklist.acl", "bots": "/etc/haproxy/bots.acl"])
    }

    @Test("an ACL alone is a configuration; its mistakes are reported with their paths")
    func mistakes() {
        let alone = """
            kafka: { brokers: "k:9092", group_id: edge }
            acls:
              blocklist: { path: /etc/haproxy/blocklist.acl }
            topics: [{ name: changes }]
            """
        #expect(problems(alone).isEmpty, "\(problems(alone))")
        let neither = problems("kafka: { brokers: \"k:9092\", group_id: edge }\ntopics: [{ name: changes }]\n")
        #expect(neither.contains { $0.hasPrefix("maps: required: at least one map or ACL") }, "\(neither)")
        let cases: [(String, String)] = [
            ("acls:\n  hosts: { path: /x.acl }\n", "acls.hosts: 'hosts' is also the name of map hosts"),
            ("acls:\n  dup: { path: /etc/haproxy/maps/hosts.map }\n", "acls.dup.path: '/etc/haproxy/maps/hosts.map' is also the path of map hosts"),
            ("acls:\n  re: { path: /re.acl, type: regm }\n", "acls.re.type"),
            ("acls:\n  v: { path: /v.acl, value_type: int }\n", "acls.v.value_type"),
            ("acls:\n  w: { path: /w.acl, write_map_file: false }\n", "acls.w.write_map_file"),
            ("acls:\n  nopath: {}\n", "acls.nopath.path: required"),
            ("acls: [a, b]\n", "acls"),
        ]
        let mapsOnly = """
            kafka: { brokers: "k:9092", group_id: edge }
            maps:
              hosts: { path: /etc/haproxy/maps/hosts.map }
            topics: [{ name: changes }]

            """
        for (section, expected) in cases {
            let found = problems(mapsOnly + section)
            #expect(found.contains { $0.hasPrefix(expected) }, "\(section): \(found)")
        }
        let topicCases: [(String, String)] = [
            ("  - { name: t, format: kv, acl: hosts }", "topics[1].acl: 'hosts' is not one of the ACLs (blocklist, bots)"),
            ("  - { name: t, format: kv, map: blocklist }", "topics[1].map: 'blocklist' is not one of the maps (hosts)"),
            ("  - { name: t, format: kv, map: hosts, acl: blocklist }", "topics[1].acl: a topic changes one map or one ACL"),
            ("  - { name: t, format: json, acl: blocklist }", "topics[1].acl: only kv, record and debezium topics"),
            ("  - { name: t, format: record, acl: blocklist, key_field: a, value_field: b }", "topics[1].value_field: an ACL's patterns have no value"),
            ("  - { name: t, format: record, acl: blocklist }", "topics[1].key_field: required"),
        ]
        for (topic, expected) in topicCases {
            let found = problems(Self.base + "\n" + topic)
            #expect(found.contains { $0.hasPrefix(expected) }, "\(topic): \(found)")
        }
    }

    @Test("environment: MAPBRIDGE_ACLS_<NAME>_<FIELD> for a declared ACL, and MAPBRIDGE_TOPICS name:format:acl:NAME")
    func environment() throws {
        let configuration = try BridgeConfiguration.parse(
            yaml: Self.base, file: "t.yaml",
            environment: [
                "MAPBRIDGE_ACLS_BLOCKLIST_PATH": "/run/blocklist.acl", "MAPBRIDGE_ACLS_BOTS_TYPE": "reg",
                "MAPBRIDGE_TOPICS": "changes:json,blocked:kv:acl:blocklist,hosts:kv:hosts",
            ])
        #expect(configuration.maps[1].path == "/run/blocklist.acl")
        #expect(configuration.maps[2].match == .reg)
        #expect(configuration.topicFormats["blocked"] == .kv(map: 1))
        #expect(configuration.topicFormats["hosts"] == .kv(map: 0))
        let found = problems(Self.base, environment: ["MAPBRIDGE_TOPICS": "blocked:kv:list:blocklist"])
        #expect(found.contains { $0.contains("name:format:acl:NAME") }, "\(found)")
    }

    @Test("stored identities record ACLs apart: a name that turns from map to ACL is another target")
    func identity() throws {
        let stored = StateIdentity(groupID: "g", topics: ["t"], maps: ["blocklist": "/b.map"])
        let configured = StateIdentity(groupID: "g", topics: ["t"], maps: [:], acls: ["blocklist": "/b.acl"])
        #expect(stored.differences(from: configured).contains { $0.contains("blocklist is map '/b.map' (configured: ACL '/b.acl')") })
        let moved = StateIdentity(groupID: "g", topics: ["t"], maps: [:], acls: ["blocklist": "/old.acl"])
        #expect(moved.differences(from: configured) == ["ACL blocklist is '/old.acl' (configured: '/b.acl')"])
        let directory = try TemporaryDirectory(prefix: "acl-identity")
        defer { directory.remove() }
        let path = directory.file("identity")
        try StateFiles.writeAtomically(path: path, bytes: configured.merging(stored).file)
        let read = try StateIdentity.read(path: path)
        #expect(read?.acls == ["blocklist": "/b.acl"] && read?.maps == ["blocklist": "/b.map"])
    }

    @Test("mapbridge publish on an ACL: a pattern per line adds it, -pattern deletes it, as ACL events")
    func publishLines() throws {
        let configuration = try BridgeConfiguration.parse(yaml: Self.base, file: "t.yaml", environment: [:])
        let parser = try ChangeLineParser(configuration: configuration, map: "blocklist")
        #expect(parser.parse("203.0.113.0/24") == .change(key: "203.0.113.0/24", value: ""))
        #expect(parser.parse("-203.0.113.0/24") == .change(key: "203.0.113.0/24", value: nil))
        if case .invalid = parser.parse("not-an-address") {} else { Issue.record("an ip ACL takes addresses only") }
        if case .invalid = parser.parse("10.0.0.1 extra") {} else { Issue.record("a pattern holds no space") }
        #expect(parser.jsonEvent(key: "10.0.0.1", value: "") == #"{"acl":"blocklist","op":"add","pattern":"10.0.0.1"}"#)
        #expect(parser.jsonEvent(key: "10.0.0.1", value: nil) == #"{"acl":"blocklist","op":"del","pattern":"10.0.0.1"}"#)
    }
}
