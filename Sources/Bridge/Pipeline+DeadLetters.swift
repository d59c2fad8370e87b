import Consumer
import Core
import Kafka
import Logging
import Mapper

/// Invalid events and refused changes: reports, dead letters and their retries.
extension Pipeline {

    func reportInvalid(_ message: MessageRecord, _ invalid: InvalidEvent) {
        metrics.invalid(reason: invalid.label)
        status.update { $0.invalidEvents += 1 }
        // With a dead-letter topic the letter carries all of this; the log line is then for debugging.
        logger.log(
            level: deadLetters == nil ? .warning : .debug,
            deadLetters == nil ? "invalid event skipped" : "invalid event dead-lettered",
            metadata: [
                "kafka.topic": "\(message.partition.topic)", "kafka.partition": "\(message.partition.partition)", "kafka.offset": "\(message.offset)",
                "reason": "\(invalid.label)", "detail": "\(invalid.reason)",
            ])
    }

    func reportRefused(_ rejection: Rejection, _ batch: Batch, _ tickets: [TopicPartition: OffsetTracker.Ticket]) {
        metrics.refused.increment()
        status.update { $0.refusedChanges += 1 }
        let change = rejection.tag.flatMap { $0 < batch.changes.count ? batch.changes[$0] : nil }
        let message = change.map { batch.messages[$0.source] }
        if let deadLetters, let change, let message, let ticket = tickets[message.partition] {
            tracker.addParts(ticket, 1)
            deadLetters.send(
                .refused(
                    map: configuration.maps[change.map].name, kind: configuration.maps[change.map].kind, key: change.key.string, value: change.value,
                    detail: rejection.reason, message: message,
                    ticket: ticket))
        }
        logger.warning(
            "HAProxy refused a change; skipped",
            metadata: [
                "map": "\(configuration.maps[rejection.map].name)", "key": "\(rejection.key)", "reason": "\(rejection.reason)",
                "kafka.topic": "\(message?.partition.topic ?? "?")", "kafka.partition": "\(message.map { String($0.partition.partition) } ?? "?")",
                "kafka.offset": "\(message.map { String($0.offset) } ?? "?")",
            ])
    }

    /// Counts acknowledged dead letters as done. A failed one is sent again with backoff (its
    /// source offset stays uncommitted meanwhile) until the broker refuses it for good or
    /// `dead_letter.retry_timeout_ms` has passed; then `dead_letter.on_failure` decides: stop the
    /// bridge (thrown), or drop the letter and commit past it.
    func collectDeadLetters() throws {
        guard let deadLetters else { return }
        let now = ContinuousClock.now
        for (letter, error) in deadLetters.drain() {
            guard let error else {
                metrics.deadLettered.increment()
                status.update { $0.deadLettered += 1 }
                tracker.finish(letter.ticket)
                continue
            }
            metrics.deadLetterErrors.increment()
            status.update { $0.deadLetterFailures += 1 }
            var failed = letter
            let since = failed.firstFailure ?? now
            failed.firstFailure = since
            let decision = retryPolicy.decide(permanent: error.isPermanent, attempt: failed.attempts, since: since, now: now)
            if case .retry(let delay) = decision {
                if failed.attempts <= 3 || failed.attempts % 10 == 0 {
                    logger.warning(
                        "dead letter not delivered; sending it again (its source offset is not committed meanwhile)",
                        metadata: ["error": "\(error.reason)", "source": "\(letter.source)", "topic": "\(deadLetters.topic)", "attempt": "\(failed.attempts)"])
                }
                deadLetterRetries.append((failed, now + delay))
                continue
            }
            let why = error.isPermanent ? "the broker refuses it for good" : "still failing after \(configuration.deadLetterRetryTimeoutMilliseconds) ms"
            switch configuration.deadLetterFailure {
            case .stop:
                throw DeadLetterFailure(source: letter.source, topic: deadLetters.topic, reason: letter.reason, error: error.reason, why: why)
            case .skip:
                metrics.deadLettersDropped.increment()
                logger.error(
                    "dead letter dropped (dead_letter.on_failure: skip): \(why); its source offset is committed",
                    metadata: ["error": "\(error.reason)", "source": "\(letter.source)", "topic": "\(deadLetters.topic)", "reason": "\(letter.reason)"])
                tracker.finish(letter.ticket)
            }
        }
        // Letters whose backoff is over go again.
        var waiting: [(DeadLetter, ContinuousClock.Instant)] = []
        for (letter, due) in deadLetterRetries {
            if due <= now { deadLetters.send(letter) } else { waiting.append((letter, due)) }
        }
        deadLetterRetries = waiting
    }
}

/// A dead letter could not be delivered and `dead_letter.on_failure` is `stop`: the bridge stops,
/// and the letter's source offset (and everything after it in its partition) stays uncommitted.
struct DeadLetterFailure: Error, CustomStringConvertible {
    var source: String
    var topic: String
    var reason: String
    var error: String
    var why: String

    var description: String {
        "the dead letter of \(source) (\(reason)) cannot be delivered to \(topic): \(why) (\(error)). The bridge stops (dead_letter.on_failure: stop); "
            + "fix the topic (size limits, permissions) and restart, or set dead_letter.on_failure: skip to drop such letters"
    }
}
