import CRdKafka
import Logging

/// Kafka protocol request types, for fault injection.
public enum KafkaAPI: Int16, Sendable {
    case produce = 0, fetch = 1, listOffsets = 2, metadata = 3, offsetCommit = 8, offsetFetch = 9, findCoordinator = 10
    case joinGroup = 11, heartbeat = 12, leaveGroup = 13, syncGroup = 14
}

/// A real Kafka cluster inside this process: librdkafka's mock cluster (`rdkafka_mock.h`). It speaks
/// the Kafka protocol on loopback ports, supports consumer groups and offset commits, and can be
/// told to fail requests or take brokers down. Each partition keeps only the last ~5 MB or 100,000
/// messages: long runs must consume while they produce, or spread over many partitions.
public final class EmbeddedKafkaCluster: @unchecked Sendable {
    private let owner: RdKafkaClient
    private let cluster: OpaquePointer
    public let brokerCount: Int32

    public init(brokers: Int32 = 1, logger: Logger) throws(KafkaError) {
        let settings = KafkaSettings(["client.id": "mapbridge-embedded-cluster", "log_level": "0"])
        owner = try RdKafkaClient.make(RD_KAFKA_PRODUCER, settings: settings, callbacks: .init(logger: logger, settings: settings))
        guard let cluster = rd_kafka_mock_cluster_new(owner.handle, brokers) else {
            throw KafkaError(.cluster, "librdkafka could not start its mock cluster")
        }
        self.cluster = cluster
        brokerCount = brokers
    }

    deinit {
        rd_kafka_mock_cluster_destroy(cluster)
    }

    /// The `host:port,...` list clients bootstrap from.
    public var bootstrapServers: String { String(cString: rd_kafka_mock_cluster_bootstraps(cluster)) }

    public func createTopic(_ name: String, partitions: Int32, replicationFactor: Int32 = 1) throws(KafkaError) {
        let error = rd_kafka_mock_topic_create(cluster, name, partitions, replicationFactor)
        if error != RD_KAFKA_RESP_ERR_NO_ERROR { throw KafkaError(.cluster, "create topic \(name)", error) }
    }

    /// Makes the next `errors.count` requests of this type fail with these error codes, in order.
    public func failRequests(_ api: KafkaAPI, with errors: [Int32]) {
        var codes = errors.map { rd_kafka_resp_err_t(rawValue: $0) }
        rd_kafka_mock_push_request_errors_array(cluster, api.rawValue, codes.count, &codes)
    }

    /// Stops failing requests of this type.
    public func clearRequestErrors(_ api: KafkaAPI) {
        rd_kafka_mock_clear_request_errors(cluster, api.rawValue)
    }

    /// Takes a broker down (its connections are closed and refused) or brings it back.
    public func setBroker(_ id: Int32, up: Bool) throws(KafkaError) {
        let error = up ? rd_kafka_mock_broker_set_up(cluster, id) : rd_kafka_mock_broker_set_down(cluster, id)
        if error != RD_KAFKA_RESP_ERR_NO_ERROR { throw KafkaError(.cluster, "set broker \(id) \(up ? "up" : "down")", error) }
    }

    /// Adds a round-trip time to every answer of a broker.
    public func setBrokerRTT(_ id: Int32, milliseconds: Int32) throws(KafkaError) {
        let error = rd_kafka_mock_broker_set_rtt(cluster, id, milliseconds)
        if error != RD_KAFKA_RESP_ERR_NO_ERROR { throw KafkaError(.cluster, "set broker \(id) rtt", error) }
    }
}

/// Kafka error codes used in fault injection.
public enum KafkaErrorCode {
    public static let notCoordinator: Int32 = 16
    public static let coordinatorNotAvailable: Int32 = 15
    public static let coordinatorLoadInProgress: Int32 = 14
    public static let requestTimedOut: Int32 = 7
    public static let notLeaderForPartition: Int32 = 6
    public static let rebalanceInProgress: Int32 = 27
    public static let unknownMemberID: Int32 = 25
    public static let illegalGeneration: Int32 = 22
    public static let networkException: Int32 = 13
}
