/// Estimates, in seconds, what HAProxy spends on a batch applied incrementally (set/del/add
/// commands) or as an atomic rebuild (prepare, payload of every entry, commit), so the applier can
/// pick the cheaper per map and batch.
///
/// Before HAProxy 2.9, `set map` and `del map` scan the map's whole list of entries: on 2.6 a `set`
/// on a 100,000-entry map costs ~1.4 ms, so past a few hundred changes a rebuild at
/// ~2.2 us per entry is cheaper. From 2.9 on they use a tree and cost ~constant. The figures
/// start from what was measured on this machine and are refined from timings of real batches.
public struct ApplyCostModel: Sendable, Equatable {
    /// Whether set/del cost grows with the map's size (HAProxy < 2.9).
    public var linearSetDelete: Bool
    /// Seconds per pipelined single-line command, besides any scan.
    public var perCommand: Double = 4e-6
    /// Seconds per map entry scanned by one set/del when the scan is linear.
    public var perScannedEntry: Double = 1.2e-8
    /// Seconds per entry sent in a payload add.
    public var perPayloadEntry: Double = 2.3e-6
    /// Seconds for prepare + commit and the round trips around them.
    public var rebuildFixed: Double = 3e-4

    public init(linearSetDelete: Bool = true) {
        self.linearSetDelete = linearSetDelete
    }

    /// What one pipelined `set map` costs per version: per entry scanned before 2.9, per command
    /// from 2.9 on. Measured with `mapbridge-bench` on this machine (2 cores), one run, on a
    /// 30,000-entry map: 2.4.0 2,733 sets/s, 2.6.12 2,693, 2.8.0 2,395, 3.0.0 142,330, 3.2.0
    /// 82,411, 3.3.0 312,986 (see the README's compatibility table). A version between two uses
    /// the older one's figure. Payload adds cost about the same on every version (0.8-1.3 us an
    /// entry into an empty map, a session per chunk), so ``perPayloadEntry`` keeps its one
    /// starting figure, measured on 2.6's rebuilds of a 100,000-entry map.
    package static let measured: [(major: Int, minor: Int, perSetDelete: Double)] = [
        (2, 4, 1.22e-8), (2, 6, 1.24e-8), (2, 8, 1.39e-8), (3, 0, 7.0e-6), (3, 2, 1.2e-5), (3, 3, 3.2e-6),
    ]

    /// The cost of `updates` set/del commands on a map of `mapSize` entries plus `adds` payload entries.
    public func incremental(updates: Int, adds: Int, mapSize: Int) -> Double {
        let scan = linearSetDelete ? perScannedEntry * Double(mapSize) : 0
        return Double(updates) * (perCommand + scan) + Double(adds) * perPayloadEntry
    }

    /// The cost of replacing the map with `entries` entries atomically.
    public func rebuild(entries: Int) -> Double {
        rebuildFixed + Double(entries) * perPayloadEntry
    }

    /// Folds in a measured incremental run: `seconds` spent on `updates` set/del over `mapSize` entries.
    public mutating func observeUpdates(_ updates: Int, mapSize: Int, seconds: Double) {
        guard updates >= 32, seconds > 0 else { return }
        let perUpdate = seconds / Double(updates)
        if linearSetDelete && mapSize >= 1000 {
            let scan = max(perUpdate - perCommand, 0) / Double(mapSize)
            perScannedEntry = blend(perScannedEntry, scan)
        } else {
            perCommand = blend(perCommand, perUpdate)
        }
    }

    /// Folds in a measured payload run: `seconds` spent adding `entries` entries.
    public mutating func observePayload(_ entries: Int, seconds: Double) {
        guard entries >= 256, seconds > 0 else { return }
        perPayloadEntry = blend(perPayloadEntry, seconds / Double(entries))
    }

    private func blend(_ old: Double, _ new: Double) -> Double {
        // Weighted towards the past so one slow batch (a GC pause, a busy core) cannot swing the choice.
        0.8 * old + 0.2 * new
    }
}

extension ApplyCostModel {
    /// The model for a new HAProxy process: `fresh` (the new version's starting figures), keeping
    /// what timings taught `self` only when the process runs the same version (a restart or
    /// reload). Another version's set/del costs differ by up to three orders of magnitude (2.8 to
    /// 3.0), so its refined figures would mislead; payload costs are alike on every version.
    public func carriedOver(to fresh: ApplyCostModel, sameVersion: Bool) -> ApplyCostModel {
        var next = fresh
        next.perPayloadEntry = perPayloadEntry
        guard sameVersion else { return next }
        next.perCommand = perCommand
        next.perScannedEntry = perScannedEntry
        next.rebuildFixed = rebuildFixed
        return next
    }
}
