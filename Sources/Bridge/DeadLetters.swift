import Consumer
import Core
import Foundation
import Kafka
import Logging
import Synchronization

/// One dead letter: what goes to the dead-letter topic, and the offset-tracker ticket it holds open
/// (its source offset is not committed before the broker has acknowledged it).
struct DeadLetter: Sendable {
    var key: [UInt8]?
    var value: [UInt8]?
    var headers: [KafkaHeader]
    var ticket: OffsetTracker.Ticket
    /// For logs and metrics.
    var reason: String
    var source: String
    /// When the broker first refused it, and how often it was sent: retries back off, and stop
    /// after `dead_letter.retry_timeout_ms`.
    var firstFailure: ContinuousClock.Instant?
    var attempts = 0

    /// Header names, all under `mapbridge.`.
    enum Header {
        static let reason = "mapbridge.reason"
        static let detail = "mapbridge.detail"
        static let topic = "mapbridge.source.topic"
        static let partition = "mapbridge.source.partition"
        static let offset = "mapbridge.source.offset"
        static let timestamp = "mapbridge.source.timestamp"
        static let map = "mapbridge.map"
        static let original = "mapbridge.original"
    }

    /// The source coordinates and the reason, appended to a letter's own headers.
    static func headers(reason: String, detail: String, message: MessageRecord) -> [KafkaHeader] {
        var headers = [
            KafkaHeader(Header.reason, reason), KafkaHeader(Header.detail, detail), KafkaHeader(Header.topic, message.partition.topic),
            KafkaHeader(Header.partition, String(message.partition.partition)), KafkaHeader(Header.offset, String(message.offset)),
        ]
        if let timestamp = message.timestamp { headers.append(KafkaHeader(Header.timestamp, String(timestamp))) }
        return headers
    }

    /// An invalid message, as it came (key, value, headers), with why.
    static func invalid(_ message: MessageRecord, _ invalid: InvalidEvent, ticket: OffsetTracker.Ticket) -> DeadLetter {
        DeadLetter(
            key: invalid.key, value: invalid.value,
            headers: invalid.headers + headers(reason: invalid.label, detail: invalid.reason, message: message) + [KafkaHeader(Header.original, "message")],
            ticket: ticket, reason: invalid.label, source: "\(message.partition)@\(message.offset)")
    }

    /// A change HAProxy refused. The message it came from passed every check, so only the refused
    /// change is kept (a message may hold several): it is the letter's value, as a JSON event, and
    /// its key is the map key.
    static func refused(
        map: String, kind: MapKind = .map, key: String, value: String?, detail: String, message: MessageRecord, ticket: OffsetTracker.Ticket
    ) -> DeadLetter {
        DeadLetter(
            key: Array(key.utf8), value: Array(jsonEvent(map: map, key: key, value: value, kind: kind).utf8),
            headers: headers(reason: "haproxy_refused", detail: detail, message: message) + [
                KafkaHeader(Header.map, map), KafkaHeader(Header.original, "change"),
            ],
            ticket: ticket, reason: "haproxy_refused", source: "\(message.partition)@\(message.offset)")
    }
}

/// Sends dead letters to the configured topic. Outcomes arrive on the producer's thread and wait
/// here until the pipeline collects them (it alone touches the offset tracker).
final class DeadLetterQueue: Sendable {
    let topic: String
    private let producer: KafkaProducer
    private let logger: Logger
    private let outcomes = Mutex<[(letter: DeadLetter, error: KafkaError?)]>([])
    private let inFlight = Atomic<Int>(0)

    init(topic: String, producer: KafkaProducer, logger: Logger) {
        self.topic = topic
        self.producer = producer
        self.logger = logger
    }

    /// Letters sent and not yet acknowledged or failed.
    var pending: Int { inFlight.load(ordering: .relaxed) }

    /// Queues a letter; never blocks (a full producer queue is a retriable failure, reported
    /// like the broker's).
    func send(_ letter: DeadLetter) {
        var letter = letter
        letter.attempts += 1
        inFlight.add(1, ordering: .relaxed)
        do {
            try producer.produce(topic: topic, key: letter.key, value: letter.value, headers: letter.headers, waitWhenFull: false) { [self, letter] result in
                switch result {
                case .success: report(letter, nil)
                case .failure(let failure): report(letter, failure)
                }
            }
        } catch {
            report(letter, error)
        }
    }

    private func report(_ letter: DeadLetter, _ error: KafkaError?) {
        outcomes.withLock { $0.append((letter, error)) }
        inFlight.subtract(1, ordering: .relaxed)
    }

    /// The outcomes reported since the last call.
    func drain() -> [(letter: DeadLetter, error: KafkaError?)] {
        outcomes.withLock { outcomes in
            defer { outcomes.removeAll() }
            return outcomes
        }
    }

    /// Waits (off the Swift pool, at most `milliseconds`) until every letter sent is acknowledged or failed.
    func flush(milliseconds: Int) async {
        guard pending > 0 else { return }
        await producer.flushOffPool(timeoutMilliseconds: Int32(milliseconds))
    }

    func close() async {
        await producer.close(timeoutMilliseconds: 5000)
    }
}
