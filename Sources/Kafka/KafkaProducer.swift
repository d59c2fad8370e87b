import CRdKafka
import Foundation
import Logging
import Synchronization

/// Where a message was stored.
public struct DeliveredMessage: Sendable, Equatable {
    public var partition: Int32
    public var offset: Int64
}

/// librdkafka's producer, for dead letters, `mapbridge publish`, the demo and the tests. Delivery
/// reports are served by a polling thread of its own; ``send(topic:key:value:headers:partition:)``
/// returns only once the broker acknowledged the message.
public final class KafkaProducer: Sendable {
    /// A delivery callback, kept alive until librdkafka reports the outcome.
    private final class Pending: Sendable {
        let completion: @Sendable (Result<DeliveredMessage, KafkaError>) -> Void
        init(_ completion: @escaping @Sendable (Result<DeliveredMessage, KafkaError>) -> Void) { self.completion = completion }
    }

    /// What the polling thread shares with the producer (never the producer itself, so that
    /// releasing the producer stops the thread).
    private final class Poller: Sendable {
        let stopping = Mutex(false)
        let done = DispatchSemaphore(value: 0)
    }

    private let client: RdKafkaClient
    private let logger: Logger
    private let poller = Poller()
    /// Where the producer's blocking calls (flush, waiting for the polling thread) run: its own
    /// queue, never the Swift concurrency pool.
    private let blocking = DispatchQueue(label: "mapbridge-kafka-producer-blocking")

    /// - Parameter properties: any librdkafka property (TLS, SASL...); they override the defaults.
    public init(bootstrapServers: String, properties: KafkaSettings = .init(), logger: Logger) throws(KafkaError) {
        var settings = KafkaSettings(["linger.ms": "5", "batch.num.messages": "10000", "enable.idempotence": "true", "client.id": "mapbridge-producer"])
        for (name, value) in properties.properties { settings[name] = value }
        settings["bootstrap.servers"] = bootstrapServers
        self.logger = logger
        let callbacks = RdKafkaClient.Callbacks(logger: logger, settings: settings)
        callbacks.delivery = { message in
            guard let opaque = message.pointee._private else { return }
            let pending = Unmanaged<Pending>.fromOpaque(opaque).takeRetainedValue()
            if message.pointee.err == RD_KAFKA_RESP_ERR_NO_ERROR {
                pending.completion(.success(DeliveredMessage(partition: message.pointee.partition, offset: message.pointee.offset)))
            } else {
                pending.completion(.failure(KafkaError(.delivery, "delivery", message.pointee.err)))
            }
        }
        callbacks.error = { error, fatal in
            logger.log(level: fatal ? .critical : .warning, "producer error", metadata: ["error": "\(error.reason)"])
        }
        client = try RdKafkaClient.make(RD_KAFKA_PRODUCER, settings: settings, callbacks: callbacks)
        let (client, poller) = (client, poller)
        let thread = Thread {
            while !poller.stopping.withLock({ $0 }) { rd_kafka_poll(client.handle, 100) }
            // Destroyed on this thread: destroying blocks, and must not run on the Swift pool.
            client.destroy(flags: 0)
            poller.done.signal()
        }
        thread.name = "mapbridge-kafka-producer"
        thread.start()
    }

    deinit {
        // The polling thread destroys the handle; nothing here waits.
        poller.stopping.withLock { $0 = true }
    }

    /// Waits for queued messages (at most `timeoutMilliseconds`), then stops and destroys the producer.
    public func close(timeoutMilliseconds: Int32 = 10000) async {
        await flushOffPool(timeoutMilliseconds: timeoutMilliseconds)
        poller.stopping.withLock { $0 = true }
        let poller = self.poller
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            blocking.async {
                poller.done.wait()
                poller.done.signal()
                continuation.resume()
            }
        }
    }

    /// Queues a message; `completion` runs on the producer's thread with the broker's answer. When
    /// librdkafka's queue is full this waits (serving delivery reports) until there is room, unless
    /// `waitWhenFull` is false: it then fails at once (for callers that must not block).
    public func produce(
        topic: String, key: [UInt8]?, value: [UInt8]?, headers: [KafkaHeader] = [], partition: Int32? = nil, waitWhenFull: Bool = true,
        completion: @escaping @Sendable (Result<DeliveredMessage, KafkaError>) -> Void = { _ in }
    ) throws(KafkaError) {
        let pending = Unmanaged.passRetained(Pending(completion))
        var cHeaders: OpaquePointer? = nil
        if !headers.isEmpty {
            cHeaders = rd_kafka_headers_new(headers.count)
            for header in headers {
                if let value = header.value {
                    value.withUnsafeBytes { _ = rd_kafka_header_add(cHeaders, header.name, -1, $0.baseAddress, $0.count) }
                } else {
                    _ = rd_kafka_header_add(cHeaders, header.name, -1, nil, 0)
                }
            }
        }
        var attempt = 0
        while true {
            let error: OpaquePointer? = topic.withCString { topicName in
                withOptionalBytes(key) { keyBytes in
                    withOptionalBytes(value) { valueBytes in
                        var fields = [rd_kafka_vu_t](repeating: rd_kafka_vu_t(), count: 8)
                        fields[0].vtype = RD_KAFKA_VTYPE_TOPIC
                        fields[0].u.cstr = topicName
                        fields[1].vtype = RD_KAFKA_VTYPE_MSGFLAGS
                        fields[1].u.i = RD_KAFKA_MSG_F_COPY
                        fields[2].vtype = RD_KAFKA_VTYPE_OPAQUE
                        fields[2].u.ptr = pending.toOpaque()
                        fields[3].vtype = RD_KAFKA_VTYPE_PARTITION
                        fields[3].u.i32 = partition ?? RD_KAFKA_PARTITION_UA
                        var count = 4
                        if let keyBytes {
                            fields[count].vtype = RD_KAFKA_VTYPE_KEY
                            fields[count].u.mem.ptr = UnsafeMutableRawPointer(mutating: keyBytes.baseAddress ?? UnsafeRawPointer(bitPattern: 1)!)
                            fields[count].u.mem.size = keyBytes.count
                            count += 1
                        }
                        if let valueBytes {
                            fields[count].vtype = RD_KAFKA_VTYPE_VALUE
                            fields[count].u.mem.ptr = UnsafeMutableRawPointer(mutating: valueBytes.baseAddress ?? UnsafeRawPointer(bitPattern: 1)!)
                            fields[count].u.mem.size = valueBytes.count
                            count += 1
                        }
                        if let cHeaders {
                            fields[count].vtype = RD_KAFKA_VTYPE_HEADERS
                            fields[count].u.headers = cHeaders
                            count += 1
                        }
                        return rd_kafka_produceva(client.handle, &fields, count)
                    }
                }
            }
            guard let error else { return }
            let code = rd_kafka_error_code(error)
            rd_kafka_error_destroy(error)
            if code == RD_KAFKA_RESP_ERR__QUEUE_FULL && waitWhenFull && attempt < 10_000 {
                attempt += 1
                rd_kafka_poll(client.handle, 10)
                continue
            }
            pending.release()
            if let cHeaders { rd_kafka_headers_destroy(cHeaders) }
            throw KafkaError(.delivery, "produce to \(topic)", code)
        }
    }

    /// Sends one message and waits for the broker's acknowledgement.
    @discardableResult
    public func send(topic: String, key: [UInt8]?, value: [UInt8]?, headers: [KafkaHeader] = [], partition: Int32? = nil) async throws -> DeliveredMessage {
        try await withCheckedThrowingContinuation { continuation in
            do {
                try produce(topic: topic, key: key, value: value, headers: headers, partition: partition) { result in
                    continuation.resume(with: result)
                }
            } catch {
                continuation.resume(throwing: error)
            }
        }
    }

    /// ``flush(timeoutMilliseconds:)`` on the producer's own queue, never on the Swift concurrency
    /// pool (flushing blocks for up to the timeout).
    public func flushOffPool(timeoutMilliseconds: Int32) async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            self.blocking.async {
                try? self.flush(timeoutMilliseconds: timeoutMilliseconds)
                continuation.resume()
            }
        }
    }

    /// Waits until every queued message has been acknowledged (or failed).
    public func flush(timeoutMilliseconds: Int32 = 30000) throws(KafkaError) {
        let error = rd_kafka_flush(client.handle, timeoutMilliseconds)
        if error != RD_KAFKA_RESP_ERR_NO_ERROR { throw KafkaError(.delivery, "flush", error) }
    }
}

private func withOptionalBytes<T>(_ bytes: [UInt8]?, _ body: (UnsafeRawBufferPointer?) -> T) -> T {
    guard let bytes else { return body(nil) }
    return bytes.withUnsafeBytes { body($0) }
}
