import Consumer
import Core
import CoreMetrics
import Foundation
import Kafka
import Synchronization

/// The metrics the README lists, through swift-metrics (exported by the Prometheus endpoint when the
/// executable bootstraps it; no-ops otherwise).
final class BridgeMetrics: Sendable {
    let consumed = Counter(label: "mapbridge_events_consumed_total")
    let deadLettered = Counter(label: "mapbridge_events_dead_lettered_total")
    let deadLetterErrors = Counter(label: "mapbridge_dead_letter_errors_total")
    /// Letters given up on under `dead_letter.on_failure: skip`.
    let deadLettersDropped = Counter(label: "mapbridge_dead_letters_dropped_total")
    let changesApplied = Counter(label: "mapbridge_changes_applied_total")
    let entriesWritten = Counter(label: "mapbridge_haproxy_entries_written_total")
    let commands = Counter(label: "mapbridge_haproxy_commands_total")
    let refused = Counter(label: "mapbridge_haproxy_refused_total")
    let reconnects = Counter(label: "mapbridge_haproxy_reconnects_total")
    let haproxyErrors = Counter(label: "mapbridge_haproxy_errors_total")
    let resyncs = Counter(label: "mapbridge_haproxy_resyncs_total")
    let restarts = Counter(label: "mapbridge_haproxy_restarts_total")
    let commits = Counter(label: "mapbridge_offsets_committed_total")
    let commitErrors = Counter(label: "mapbridge_offset_commit_errors_total")
    let coalescingRatio = Gauge(label: "mapbridge_coalescing_ratio")
    let backlogEvents = Gauge(label: "mapbridge_backlog_events")
    let backlogBytes = Gauge(label: "mapbridge_backlog_bytes")
    let inSync = Gauge(label: "mapbridge_haproxy_in_sync")
    /// 1 when `/readyz` answers 200 (consuming, connected, synchronised), else 0: for alerts.
    let ready = Gauge(label: "mapbridge_ready")
    let persistDuration = Timer(label: "mapbridge_state_persist_duration_seconds", preferredDisplayUnit: .seconds)
    let persistErrors = Counter(label: "mapbridge_state_persist_errors_total")
    let applyDuration = Timer(label: "mapbridge_apply_duration_seconds", preferredDisplayUnit: .seconds)
    let eventToApplied = Timer(label: "mapbridge_event_to_applied_seconds", preferredDisplayUnit: .seconds)
    private let batchesByStrategy = Mutex<[String: Counter]>([:])
    private let invalidByReason = Mutex<[String: Counter]>([:])
    private let lagByPartition = Mutex<[TopicPartition: Gauge]>([:])
    private let entriesByMap = Mutex<[String: Gauge]>([:])

    /// The entries (patterns, for an ACL) of a managed map in its desired state, which HAProxy
    /// holds once in sync: `mapbridge_map_entries{map, kind}`.
    func entries(of map: BridgeConfiguration.Map, _ count: Int) {
        entriesByMap.withLock { gauges in
            if gauges[map.name] == nil {
                gauges[map.name] = Gauge(label: "mapbridge_map_entries", dimensions: [("map", map.name), ("kind", map.kind.rawValue)])
            }
            return gauges[map.name]!
        }.record(count)
    }

    /// Messages in the partition's log not yet committed (applied) by this bridge.
    func lag(_ partition: TopicPartition, _ messages: Int64) {
        lagByPartition.withLock { gauges in
            if gauges[partition] == nil {
                gauges[partition] = Gauge(
                    label: "mapbridge_consumer_lag", dimensions: [("topic", partition.topic), ("partition", String(partition.partition))])
            }
            return gauges[partition]!
        }.record(messages)
    }

    func batch(strategy: String) {
        batchesByStrategy.withLock { counters in
            if counters[strategy] == nil { counters[strategy] = Counter(label: "mapbridge_batches_total", dimensions: [("strategy", strategy)]) }
            return counters[strategy]!
        }.increment()
    }

    func invalid(reason: String) {
        invalidByReason.withLock { counters in
            if counters[reason] == nil { counters[reason] = Counter(label: "mapbridge_events_invalid_total", dimensions: [("reason", reason)]) }
            return counters[reason]!
        }.increment()
    }
}
