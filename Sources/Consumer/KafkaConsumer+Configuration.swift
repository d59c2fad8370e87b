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
                // librdkafka's prefetch, which is memory the bridge does not count: at most 8 MiB of
                // payload (librdkafka's default is 64 MiB), 50,000 messages (each costs
                // librdkafka about 300 bytes of its own, which the bytes bound does not count,
                // so this is the bound for small events), and one fetch beyond them, which
                // librdkafka bounds by the bytes bound too (`fetch.max.bytes`, unless set). 2.0.2
                // compares the first two with the whole consumer queue, and once one is reached
                // stops fetching until its broker thread next wakes up, up to a second later; the
                // consumer wakes it when it has drained the queue (see `PrefetchRefill`), so
                // bounds this small keep the rate.
                "queued.max.messages.kbytes": "8192",
                "queued.min.messages": "50000",
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
