import CRdKafka

/// The one error type of the Kafka side: a code a caller can branch on and a reason a human can act on.
public struct KafkaError: Error, CustomStringConvertible, Sendable, Equatable {
    public enum Code: String, Sendable {
        /// A librdkafka property was refused (its name is in the reason; never its value).
        case configuration
        /// A client handle could not be created.
        case clientCreation
        /// librdkafka reported a fatal error: the client cannot continue.
        case fatal
        /// A librdkafka call failed (the reason carries librdkafka's text).
        case operation
        /// The mock cluster refused a request.
        case cluster
        /// A message could not be delivered.
        case delivery
    }

    public var code: Code
    public var reason: String
    /// librdkafka's error code, when librdkafka gave one.
    public var underlying: Int32?

    public init(_ code: Code, _ reason: String) {
        self.code = code
        self.reason = reason
    }

    package init(_ code: Code, _ what: String, _ error: rd_kafka_resp_err_t) {
        self.init(code, "\(what): \(String(cString: rd_kafka_err2str(error)))")
        underlying = error.rawValue
    }

    /// Whether sending the same message again can never succeed: it is larger than the
    /// producer's or the broker's limits, or malformed. (An authorisation failure is not: an
    /// operator may grant the permission.)
    public var isPermanent: Bool {
        guard let underlying else { return false }
        let permanent: [rd_kafka_resp_err_t] = [
            RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE, RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE, RD_KAFKA_RESP_ERR_INVALID_MSG_SIZE,
            RD_KAFKA_RESP_ERR_INVALID_RECORD, RD_KAFKA_RESP_ERR_TOPIC_EXCEPTION, RD_KAFKA_RESP_ERR__INVALID_ARG,
        ]
        return permanent.contains { $0.rawValue == underlying }
    }

    public var description: String { "kafka \(code.rawValue): \(reason)" }
}

/// librdkafka's version string (`2.0.2` here).
public var librdkafkaVersion: String { String(cString: rd_kafka_version_str()) }
