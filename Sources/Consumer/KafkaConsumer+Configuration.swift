import CRdKafka
import Core
import Foundation
import Kafka
import Logging
import Synchronization

extension KafkaConsumer {
    public struct Configuration: Sendable {
        public var bootstrapServers: String
        public var groupID: String
        public var topics: [String]
        /// How partitions are obtained: all of them directly (the default), or through the group.
        public var membership: Membership = .direct
        /// With ``Membership/group``: how the group shares partitions among its members.
        public var assignmentStrategy: AssignmentStrategy = .range
        /// With ``Membership/direct``: how often the topics are checked for new partitions (every
        /// second until every topic was found).
        public var discoveryInterval: Duration = .seconds(30)
        /// Any librdkafka property (TLS, SASL, timeouts...), passed through; it can override the
        /// defaults below but never the offset-management settings the bridge relies on.
        public var properties = KafkaSettings()
        public var clientID = "mapbridge"
        /// How long one poll waits when there is nothing to read.
        public var pollTimeoutMilliseconds: Int32 = 50
        /// The most messages handed over in one burst.
        public var maximumBurst = 4096

        public init(bootstrapServers: String, groupID: String, topics: [String]) {
            self.bootstrapServers = bootstrapServers
            self.groupID = groupID
            self.topics = topics
        }

        /// The librdkafka properties the consumer is created with.
        public var settings: KafkaSettings {
            var settings = KafkaSettings([
                "auto.offset.reset": "earliest",
                "client.id": clientID,
                // librdkafka's prefetch per consumer (default 64 MiB): 16 MiB keeps a fast
                // pipeline fed and memory small.
                "queued.max.messages.kbytes": "16384",
                // 2.0.2 compares this with the whole consumer queue, not one partition's, and
                // once it is reached stops fetching until its broker thread next wakes up, up to
                // a second later: at the default (100,000) the benchmark's W1 consumed in bursts
                // with idle seconds between them (half the rate). It is also the only bound on
                // how many messages are queued: the bytes bound above counts payload alone, and
                // each message costs librdkafka about 300 bytes of its own, so at 1,000,000 a
                // topic of 20-byte events held hundreds of MiB. 300,000 keeps the rate and
                // bounds that overhead near 100 MiB.
                "queued.min.messages": "300000",
            ])
            for (name, value) in properties.properties { settings[name] = value }
            settings["bootstrap.servers"] = bootstrapServers
            settings["group.id"] = groupID
            settings["partition.assignment.strategy"] = assignmentStrategy.rawValue
            settings["enable.auto.commit"] = "false"
            settings["enable.auto.offset.store"] = "false"
            settings["enable.partition.eof"] = "false"
            return settings
        }
    }
}
