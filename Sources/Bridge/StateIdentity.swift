import Mapper

/// Whose state a state directory holds: the Kafka cluster and consumer group whose offsets it
/// records, the topics it consumed, and each map's and ACL's name as HAProxy knows it. Stored beside the
/// state (`identity`), so that state belonging to another edge — another HAProxy, another
/// cluster, another group — is recognised and never applied.
public struct StateIdentity: Sendable, Equatable {
    /// The cluster's id, once a broker told it (nil before the first connection, or for a broker
    /// that has none).
    public var clusterID: String?
    public var groupID: String
    public var topics: [String]
    /// Map name → the map as HAProxy names it. Maps no longer configured stay recorded: their
    /// state files are still in the directory.
    public var maps: [String: String]
    /// ACL name → the ACL file as HAProxy names it (recorded apart: a name that was a map and is
    /// now an ACL, or the reverse, is another target).
    public var acls: [String: String]

    public init(clusterID: String? = nil, groupID: String, topics: [String], maps: [String: String], acls: [String: String] = [:]) {
        self.clusterID = clusterID
        self.groupID = groupID
        self.topics = topics.sorted()
        self.maps = maps
        self.acls = acls
    }

    /// The identity a configuration gives a new state directory.
    public init(_ configuration: BridgeConfiguration) {
        self.init(
            groupID: configuration.kafka.groupID, topics: configuration.topics.map(\.name),
            maps: Dictionary(configuration.maps.filter { $0.kind == .map }.map { ($0.name, $0.path) }, uniquingKeysWith: { $1 }),
            acls: Dictionary(configuration.maps.filter { $0.kind == .acl }.map { ($0.name, $0.path) }, uniquingKeysWith: { $1 }))
    }

    /// What in this stored identity differs from `configured`, one phrase each; empty when the
    /// state is this configuration's. A map configured now and not recorded, or recorded and no
    /// longer configured, is no difference: its state is simply absent, or unused.
    public func differences(from configured: StateIdentity) -> [String] {
        var found: [String] = []
        if groupID != configured.groupID { found.append("group '\(groupID)' (configured: '\(configured.groupID)')") }
        if topics != configured.topics {
            found.append("topics \(topics.joined(separator: ",")) (configured: \(configured.topics.joined(separator: ",")))")
        }
        for (name, path) in configured.maps.sorted(by: { $0.key < $1.key }) {
            if let stored = maps[name], stored != path { found.append("map \(name) is '\(stored)' (configured: '\(path)')") }
            if let stored = acls[name] { found.append("\(name) is ACL '\(stored)' (configured: map '\(path)')") }
        }
        for (name, path) in configured.acls.sorted(by: { $0.key < $1.key }) {
            if let stored = acls[name], stored != path { found.append("ACL \(name) is '\(stored)' (configured: '\(path)')") }
            if let stored = maps[name] { found.append("\(name) is map '\(stored)' (configured: ACL '\(path)')") }
        }
        return found
    }

    /// The cluster difference, if any: a cluster recorded and another one reached.
    public func clusterDifference(_ reached: String?) -> String? {
        guard let clusterID, let reached, clusterID != reached else { return nil }
        return "Kafka cluster '\(clusterID)' (the brokers are cluster '\(reached)')"
    }

    /// This identity with the configured maps recorded too.
    public func merging(_ configured: StateIdentity) -> StateIdentity {
        var merged = self
        merged.maps.merge(configured.maps) { $1 }
        merged.acls.merge(configured.acls) { $1 }
        return merged
    }

    /// The identity file's bytes (sealed: see ``StateFiles/sealed(_:)``). Names and paths hold
    /// no tab or newline (the configuration refuses them).
    public var file: [UInt8] {
        var text = "# mapbridge state identity v1: whose state this directory holds\n"
        text += "cluster\t\(clusterID ?? "-")\n"
        text += "group\t\(groupID)\n"
        for topic in topics { text += "topic\t\(topic)\n" }
        for (name, path) in maps.sorted(by: { $0.key < $1.key }) { text += "map\t\(name)\t\(path)\n" }
        for (name, path) in acls.sorted(by: { $0.key < $1.key }) { text += "acl\t\(name)\t\(path)\n" }
        return StateFiles.sealed(Array(text.utf8))
    }

    /// Reads an identity file; nil when there is none.
    public static func read(path: String) throws(MapperError) -> StateIdentity? {
        guard let text = try StateFiles.readSealed(path: path, kind: "identity file") else { return nil }
        var identity = StateIdentity(groupID: "", topics: [], maps: [:])
        var sawGroup = false
        for line in text.split(separator: "\n") where !line.hasPrefix("#") {
            let fields = line.split(separator: "\t", omittingEmptySubsequences: false).map(String.init)
            switch (fields.first, fields.count) {
            case ("cluster", 2): identity.clusterID = fields[1] == "-" ? nil : fields[1]
            case ("group", 2):
                identity.groupID = fields[1]
                sawGroup = true
            case ("topic", 2): identity.topics.append(fields[1])
            case ("map", 3): identity.maps[fields[1]] = fields[2]
            case ("acl", 3): identity.acls[fields[1]] = fields[2]
            default: throw MapperError(.damagedState, "\(path): unexpected line '\(line.prefix(120))'")
            }
        }
        guard sawGroup else { throw MapperError(.damagedState, "\(path): no group line") }
        identity.topics.sort()
        return identity
    }
}

/// The state directory holds state that is not this bridge's (another edge's, or damaged), and
/// the bridge refuses to apply it: the daemon exits with status 2, as for a configuration error.
public struct ForeignStateError: Error, CustomStringConvertible {
    public var directory: String
    public var problems: [String]

    public var description: String {
        "the state directory \(directory) holds state that is not this bridge's: \(problems.joined(separator: "; ")). "
            + "It is not applied to HAProxy. If it is stale, move it away (the bridge then starts from HAProxy's live maps and the group's committed offsets); "
            + "if another bridge owns it, give this one its own state.directory"
    }
}
