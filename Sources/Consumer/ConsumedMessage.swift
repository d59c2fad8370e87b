import CRdKafka
import Core
import Kafka

/// A message as librdkafka returned it, valid only during the delegate call that receives it:
/// its key and value point into librdkafka's buffer, so decoding reads them in place and copies
/// only what it keeps.
public struct ConsumedMessage {
    public let topic: String
    public let partition: Int32
    public let offset: Int64
    /// The message timestamp in milliseconds since the epoch, when the broker gave one.
    public let timestamp: Int64?
    /// The key's bytes, or nil for a message without a key.
    public let key: UnsafeRawBufferPointer?
    /// The value's bytes, or nil for a tombstone (a null value).
    public let value: UnsafeRawBufferPointer?
    let raw: UnsafeMutablePointer<rd_kafka_message_t>

    public var topicPartition: TopicPartition { TopicPartition(topic, partition) }

    /// The message's headers, copied.
    public func headers() -> [KafkaHeader] {
        var headers: OpaquePointer?
        guard rd_kafka_message_headers(raw, &headers) == RD_KAFKA_RESP_ERR_NO_ERROR, let headers else { return [] }
        var result: [KafkaHeader] = []
        var index = 0
        while true {
            var name: UnsafePointer<CChar>?
            var value: UnsafeRawPointer?
            var size = 0
            guard rd_kafka_header_get_all(headers, index, &name, &value, &size) == RD_KAFKA_RESP_ERR_NO_ERROR else { break }
            let bytes = value.map { Array(UnsafeRawBufferPointer(start: $0, count: size)) }
            result.append(KafkaHeader(name.map { String(cString: $0) } ?? "", bytes))
            index += 1
        }
        return result
    }

    /// Copies of the key and value (for messages kept beyond the callback, such as dead letters).
    public var keyBytes: [UInt8]? { key.map { Array($0) } }
    public var valueBytes: [UInt8]? { value.map { Array($0) } }
}
