import Consumer
import Core
import Events
import Kafka
import Mapper

/// Decodes a message and checks every change it holds with the entry rules: the one judgement of
/// what is a valid event, shared by the daemon's intake and `mapbridge publish`.
struct EventChecker: Sendable {
    let decoder: EventDecoder
    let rules: EntryRules
    let maps: [MapDefinition]

    init(configuration: BridgeConfiguration) {
        decoder = EventDecoder(targets: configuration.maps.map { ($0.name, $0.kind == .acl) })
        rules = configuration.entryRules
        maps = configuration.mapDefinitions
    }

    /// Fills `changes` with the message's changes; returns why it is invalid (a label for metrics
    /// and dead letters, and a reason safe to log), or nil when every change may be applied.
    func check(
        key: UnsafeRawBufferPointer?, value: UnsafeRawBufferPointer?, format: EventFormat, into changes: inout [DecodedChange]
    ) -> (label: String, reason: String)? {
        if let failure = decoder.decode(key: key, value: value, format: format, into: &changes) {
            return (failure.label, failure.reason)
        }
        for (position, change) in changes.enumerated() {
            if let defect = rules.check(key: change.key, value: change.value, for: maps[change.map]) {
                let prefix = changes.count > 1 ? "change \(position): " : ""
                return (defect.label, "\(prefix)\(defect) (\(maps[change.map].described))")
            }
        }
        return nil
    }
}
