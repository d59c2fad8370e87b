import CRdKafka
import Core
import Logging
import Synchronization

/// Owns one librdkafka handle and the Swift side of its callbacks. The thin unsafe layer: nothing
/// outside this module sees a C pointer, every error code becomes a ``KafkaError`` at once, and the
/// handle is destroyed exactly once, before the callbacks it calls into are released.
///
/// Unchecked Sendable because the handle is a C pointer, which librdkafka
/// lets any thread use (its API is thread-safe), and the callbacks are set before the handle
/// exists and only read after.
package final class RdKafkaClient: @unchecked Sendable {
    /// Swift functions librdkafka's C callbacks are routed to, found through the handle's opaque.
    package final class Callbacks: @unchecked Sendable {
        package let logger: Logger
        package let settings: KafkaSettings
        /// Runs inside `rd_kafka_consumer_poll` on the polling thread.
        package var rebalance: ((OpaquePointer, rd_kafka_resp_err_t, UnsafeMutablePointer<rd_kafka_topic_partition_list_t>?) -> Void)?
        /// Runs inside a poll call; offsets as committed (or not), with the overall error.
        package var commit: ((rd_kafka_resp_err_t, [(TopicPartition, Int64, rd_kafka_resp_err_t)]) -> Void)?
        /// Runs inside `rd_kafka_poll`/`rd_kafka_flush` of a producer.
        package var delivery: ((UnsafePointer<rd_kafka_message_t>) -> Void)?
        /// Client-level errors; `fatal` is true when the client must be destroyed.
        package var error: ((KafkaError, Bool) -> Void)?

        package init(logger: Logger, settings: KafkaSettings) {
            self.logger = logger
            self.settings = settings
        }
    }

    package let handle: OpaquePointer
    package let callbacks: Callbacks
    private let destroyed = Mutex(false)

    private init(handle: OpaquePointer, callbacks: Callbacks) {
        self.handle = handle
        self.callbacks = callbacks
    }

    deinit {
        destroy(flags: 0)
    }

    /// Destroys the handle once (later calls do nothing). It blocks until librdkafka's threads end:
    /// call it from a thread of the client's own, never from the Swift concurrency pool.
    package func destroy(flags: Int32) {
        let first = destroyed.withLock { destroyed -> Bool in
            defer { destroyed = true }
            return !destroyed
        }
        if first { rd_kafka_destroy_flags(handle, flags) }
    }

    /// Creates a consumer or producer handle with every callback routed to `callbacks`.
    package static func make(_ type: rd_kafka_type_t, settings: KafkaSettings, callbacks: Callbacks) throws(KafkaError) -> RdKafkaClient {
        let conf = try settings.makeConf()
        rd_kafka_conf_set_opaque(conf, Unmanaged.passUnretained(callbacks).toOpaque())
        rd_kafka_conf_set_log_cb(conf) { handle, level, facility, message in
            guard let handle, let opaque = rd_kafka_opaque(handle) else { return }
            let callbacks = Unmanaged<Callbacks>.fromOpaque(opaque).takeUnretainedValue()
            let text = callbacks.settings.scrub(message.map { String(cString: $0) } ?? "")
            let facilityText = facility.map { String(cString: $0) } ?? ""
            callbacks.logger.log(
                level: RdKafkaClient.logLevel(syslog: level), "\(text)",
                metadata: ["kafka.facility": "\(facilityText)", "kafka.client": "\(callbacks.settings["client.id"] ?? "rdkafka")", "source": "librdkafka"])
        }
        rd_kafka_conf_set_error_cb(conf) { handle, code, reason, opaque in
            guard let handle, let opaque else { return }
            let callbacks = Unmanaged<Callbacks>.fromOpaque(opaque).takeUnretainedValue()
            let error = rd_kafka_resp_err_t(rawValue: code)
            if error == RD_KAFKA_RESP_ERR__FATAL {
                var text = [CChar](repeating: 0, count: 512)
                let underlying = rd_kafka_fatal_error(handle, &text, text.count)
                let detail = callbacks.settings.scrub(string(fromBuffer: text))
                callbacks.error?(KafkaError(.fatal, "\(String(cString: rd_kafka_err2name(underlying))): \(detail)"), true)
            } else {
                let detail = callbacks.settings.scrub(reason.map { String(cString: $0) } ?? "")
                callbacks.error?(KafkaError(.operation, "\(String(cString: rd_kafka_err2name(error))): \(detail)"), false)
            }
        }
        if type == RD_KAFKA_CONSUMER {
            rd_kafka_conf_set_rebalance_cb(conf) { handle, error, partitions, opaque in
                guard let handle, let opaque else { return }
                let callbacks = Unmanaged<Callbacks>.fromOpaque(opaque).takeUnretainedValue()
                callbacks.rebalance?(handle, error, partitions)
            }
            rd_kafka_conf_set_offset_commit_cb(conf) { _, error, offsets, opaque in
                guard let opaque else { return }
                let callbacks = Unmanaged<Callbacks>.fromOpaque(opaque).takeUnretainedValue()
                callbacks.commit?(error, PartitionList.read(offsets))
            }
        } else {
            rd_kafka_conf_set_dr_msg_cb(conf) { _, message, opaque in
                guard let message, let opaque else { return }
                let callbacks = Unmanaged<Callbacks>.fromOpaque(opaque).takeUnretainedValue()
                callbacks.delivery?(message)
            }
        }
        var errstr = [CChar](repeating: 0, count: 512)
        guard let handle = rd_kafka_new(type, conf, &errstr, errstr.count) else {
            rd_kafka_conf_destroy(conf)
            throw KafkaError(.clientCreation, settings.scrub(string(fromBuffer: errstr)))
        }
        return RdKafkaClient(handle: handle, callbacks: callbacks)
    }

    package static func logLevel(syslog level: Int32) -> Logger.Level {
        switch level {
        case ...2: return .critical
        case 3: return .error
        case 4: return .warning
        case 5: return .notice
        case 6: return .info
        default: return .debug
        }
    }
}

/// The text of a NUL-terminated C buffer.
package func string(fromBuffer buffer: [CChar]) -> String {
    let bytes = buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }
    return String(decoding: bytes, as: UTF8.self)
}
