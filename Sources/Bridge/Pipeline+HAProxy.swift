import Consumer
import Core
import Kafka
import Logging
import Mapper

/// Keeping HAProxy in line: synchronising with retries, and checking for restarts and reloads.
extension Pipeline {
    /// Brings HAProxy in line with the desired state, retrying with backoff; the refused changes
    /// found on the way, or nil when shutdown came first.
    @discardableResult
    func synchronizeUntilDone(reason: String) async throws -> [Rejection]? {
        var backoff = Backoff(
            initialMilliseconds: configuration.haproxy.reconnectInitialMilliseconds, maxMilliseconds: configuration.haproxy.reconnectMaxMilliseconds)
        var failures = 0
        var refused = false
        var lastWarning: ContinuousClock.Instant?
        while true {
            fence()
            do {
                let report = try await applier.synchronize()
                noteSync(report, reason: reason)
                if failures > 0 { logger.notice("HAProxy is back: synchronised", metadata: ["attempts": "\(failures + 1)"]) }
                status.update {
                    $0.haproxyConnected = true
                    $0.inSync = true
                    $0.lastError = nil
                }
                metrics.inSync.record(1)
                for (index, map) in configuration.maps.enumerated() { metrics.entries(of: map, applier.contents(of: index).count) }
                return report.rejections
            } catch {
                failures += 1
                metrics.haproxyErrors.increment()
                metrics.inSync.record(0)
                status.update {
                    $0.haproxyConnected = false
                    $0.inSync = false
                    $0.syncFailures += 1
                    $0.lastError = "\(error)"
                }
                refused = Backoff.isRefusal(error)
                // Log the first failures, then one a minute, so an outage does not flood the logs.
                let now = ContinuousClock.now
                if failures <= 3 || lastWarning.map({ now - $0 >= .seconds(60) }) ?? true {
                    lastWarning = now
                    logger.warning(
                        "cannot synchronise with HAProxy; retrying", metadata: ["error": "\(error)", "attempt": "\(failures)", "during": "\(reason)"])
                }
            }
            if backlog.isClosed {
                let deadline = shutdownDeadline ?? (ContinuousClock.now + .milliseconds(configuration.shutdownTimeoutMilliseconds))
                shutdownDeadline = deadline
                if ContinuousClock.now >= deadline { return nil }
                try await Task.sleep(for: min(backoff.next(refused: refused), deadline - ContinuousClock.now))
            } else {
                try await Task.sleep(for: backoff.next(refused: refused))
            }
        }
    }

    func noteSync(_ report: SyncReport, reason: String) {
        if report.connected { metrics.reconnects.increment() }
        if report.processChanged {
            metrics.restarts.increment()
            status.update { $0.haproxyRestarts += 1 }
        }
        if report.processChanged {
            for resync in report.resynced {
                logger.notice(
                    "map compared with HAProxy after a restart or reload",
                    metadata: [
                        "map": "\(configuration.maps[resync.map].name)",
                        "outcome": "\(resync.strategy == .none ? "exact (HAProxy loaded the stored state)" : "repaired by \(resync.strategy.rawValue)")",
                    ])
            }
        }
        for resync in report.resynced where resync.strategy != .none {
            metrics.resyncs.increment()
            status.update { $0.resyncs += 1 }
            logger.notice(
                "resynchronised a map with HAProxy",
                metadata: [
                    "map": "\(configuration.maps[resync.map].name)", "strategy": "\(resync.strategy.rawValue)",
                    "map.missing": "\(resync.comparison.missing.count)",
                    "map.extra": "\(resync.comparison.extra.count)", "map.different": "\(resync.comparison.different.count)", "during": "\(reason)",
                ])
        }
    }

    /// Asks HAProxy whether it restarted or reloaded, and resynchronises when it did.
    func checkHAProxy() async throws -> Bool {
        if applier.isInSync {
            do {
                try await applier.checkProcess()
            } catch {
                logger.warning("HAProxy check failed", metadata: ["error": "\(error)"])
            }
        }
        if !applier.isInSync {
            return try await synchronizeUntilDone(reason: "check") != nil
        }
        return true
    }
}
