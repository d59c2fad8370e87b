import Consumer
import Core
import Foundation
import Kafka
import Logging

/// Reads every message of a topic from the beginning (a dead-letter topic, say), in a consumer
/// group of its own, keeping copies of keys, values and headers.
public final class TopicReader: @unchecked Sendable {
    public struct Message: Sendable, Equatable {
        public var partition: TopicPartition
        public var offset: Int64
        public var key: [UInt8]?
        public var value: [UInt8]?
        public var headers: [KafkaHeader]

        /// The value of the first header with this name, as text.
        public func header(_ name: String) -> String? {
            headers.first { $0.name == name }?.value.map { String(decoding: $0, as: UTF8.self) }
        }

        public var keyText: String? { key.map { String(decoding: $0, as: UTF8.self) } }
        public var valueText: String? { value.map { String(decoding: $0, as: UTF8.self) } }
    }

    private final class Recorder: KafkaConsumerDelegate, @unchecked Sendable {
        let lock = NSLock()
        var messages: [Message] = []
        func consume(_ message: ConsumedMessage) {
            let copy = Message(
                partition: message.topicPartition, offset: message.offset, key: message.keyBytes, value: message.valueBytes, headers: message.headers())
            lock.withLock { messages.append(copy) }
        }
        func endOfBurst() -> FlowControl { .proceed }
        func assigned(_ partitions: [TopicPartition]) -> FlowControl { .proceed }
        func revoking(_ partitions: [TopicPartition], lost: Bool) -> [TopicPartition: Int64] { [:] }
        func committed(_ offsets: [TopicPartition: Int64], error: KafkaError?) {}
        func failed(_ error: KafkaError) {}
    }

    private let recorder = Recorder()
    private let consumer: KafkaConsumer

    public init(bootstrapServers: String, topic: String, logger: Logger = testLogger("test.reader")) throws {
        let configuration = KafkaConsumer.Configuration(bootstrapServers: bootstrapServers, groupID: "reader-\(UUID().uuidString)", topics: [topic])
        consumer = try KafkaConsumer(configuration: configuration, delegate: recorder, logger: logger)
        try consumer.start()
    }

    /// Every message read so far.
    public var messages: [Message] { recorder.lock.withLock { recorder.messages } }

    public func close() async {
        await consumer.close()
    }
}
