import Core
import Logging
import NIOCore

/// Settings of the applier.
public struct ApplierOptions: Sendable, Equatable {
    public var connection = RuntimeConnectionOptions()
    /// The largest payload command in bytes; well under HAProxy's `tune.bufsize`.
    public var payloadBudget = 12288
    /// How each map's batch is sent: by cost, or forced (tests and diagnostics).
    public var strategy = StrategyChoice()
    /// What may be sent; a change breaking these rules is refused without being sent.
    public var rules = EntryRules.default
    /// On a unix socket, send payload adds each over a short non-interactive session of its own
    /// (see ``PayloadSessions``) rather than through the interactive one, which answers every
    /// payload line with a `+ ` prompt.
    public var payloadSessions = true
    /// Payload adds are encoded and sent this many entries at a time, so a rebuild of millions
    /// of entries never holds all its payload bytes at once.
    public var payloadRound = 65536

    public init() {}

    /// Options for a HAProxy whose `tune.bufsize` is `bufsize`, for maps whose longest path is
    /// `longestMapPath` bytes.
    public init(bufsize: Int, longestMapPath: Int = 0) {
        payloadBudget = max(1024, min(bufsize - 2048, 12288))
        rules = EntryRules(bufsize: bufsize, longestMapPath: longestMapPath)
    }
}

/// What a synchronisation did.
public struct SyncReport: Sendable {
    /// A new connection was opened.
    public var connected = false
    /// The HAProxy process behind the socket is not the one seen before (restart or reload).
    public var processChanged = false
    /// Maps whose live contents were compared, and how each was brought in line.
    public var resynced: [(map: Int, strategy: ApplyStrategy, comparison: MapComparison)] = []
    public var rejections: [Rejection] = []
}

/// Keeps HAProxy's managed maps equal to their desired contents, over one persistent session.
///
/// The applier holds each map's desired contents (``MapContents``). After every acknowledged batch
/// HAProxy holds exactly those contents, so whether a key needs `add` or `set` is known without
/// asking. For each map and batch it picks, by ``ApplyCostModel``, incremental commands (`set` for
/// keys HAProxy holds, payload `add` for new keys, `del` for removals; never `del`+`add` for an
/// upsert) or an atomic rebuild (`prepare map`, payload `add map @V`, `commit map @V`).
///
/// Whenever the outcome of a command is unknown (the session broke) or HAProxy may have lost its
/// runtime changes (a new process), the map is marked out of sync; ``synchronize()`` then reads the
/// live map, compares, and repairs it, by the cheaper of incremental fixes and an atomic rebuild.
///
/// Not thread-safe: one task owns an applier.
public final class MapApplier {
    struct MapState {
        var definition: MapDefinition
        var desired: DesiredMap
    }

    public let endpoint: RuntimeEndpoint
    public let options: ApplierOptions
    public var logger: Logger
    var maps: [MapState]
    var connection: RuntimeConnection?
    /// Whether this bridge is HAProxy's only writer for its maps (it owns every source). Another
    /// bridge may otherwise be changing other keys of the same maps at the same time, so atomic
    /// rebuilds (whose commit would drop its changes) are off, and repairs touch only owned keys.
    public private(set) var exclusive = true
    /// In shared mode, the sources whose keys this bridge writes.
    public private(set) var owned: Set<MapContents.Owner> = []
    /// Called when the session with HAProxy ends (HAProxy stopped or restarted, a reload's old
    /// worker left): whoever drives the applier can synchronise at once instead of at its next
    /// periodic check.
    public var onDisconnect: (@Sendable () -> Void)?
    public internal(set) var info: HAProxyInfo?
    public internal(set) var costModel = ApplyCostModel()
    /// A new HAProxy process was seen and the synchronisation that answers it has not completed.
    var processChangePending = false
    let clock = ContinuousClock()

    /// - Parameters:
    ///   - initial: each map's desired contents, or nil to adopt what HAProxy holds at the first sync.
    public init(maps: [MapDefinition], initial: [MapContents?], endpoint: RuntimeEndpoint, options: ApplierOptions, logger: Logger) {
        precondition(maps.count == initial.count)
        self.endpoint = endpoint
        self.options = options
        self.logger = logger
        self.maps = zip(maps, initial).map { MapState(definition: $0, desired: DesiredMap(initial: $1)) }
    }

    public var definitions: [MapDefinition] { maps.map(\.definition) }

    public func contents(of map: Int) -> MapContents { maps[map].desired.contents }

    /// Hands a map's tombstones over to a store of the state (see ``MapContents/takeTombstones()``).
    public func takeTombstones(of map: Int) -> [MapKey: MapContents.Owner] {
        maps[map].desired.contents.takeTombstones()
    }

    /// Takes back tombstones whose store failed (see ``MapContents/restoreTombstones(_:)``).
    public func restoreTombstones(_ removed: [MapKey: MapContents.Owner], of map: Int) {
        maps[map].desired.contents.restoreTombstones(removed)
    }

    /// Switches between being HAProxy's only writer and sharing the maps with other bridges
    /// (writing only the keys of the `owned` sources). Every map is compared again.
    public func setOwnership(exclusive: Bool, owned: Set<MapContents.Owner>) {
        if exclusive != self.exclusive || owned != self.owned {
            logger.info(
                exclusive ? "this bridge is the maps' only writer" : "sharing the maps with other bridges: writing only the keys of owned partitions",
                metadata: ["owned.count": "\(owned.count)"])
        }
        self.exclusive = exclusive
        self.owned = owned
        invalidate()
    }

    /// Takes over sources from another bridge: their entries and tombstones in map `map` become
    /// the given ones (its stored view), and the map is compared with HAProxy again.
    public func replace(map: Int, owners: Set<MapContents.Owner>, entries: [MapContents.Entry], tombstones: [MapKey: MapContents.Owner]) {
        maps[map].desired.contents.replace(owners: owners, with: entries, tombstones: tombstones)
        maps[map].desired.inSync = false
    }

    public var isConnected: Bool { connection?.isActive ?? false }

    /// Connected, and every map known to equal its desired contents.
    public var isInSync: Bool { isConnected && maps.allSatisfy(\.desired.inSync) }

    /// Marks every map for comparison with HAProxy at the next ``synchronize()``.
    public func invalidate() {
        for index in maps.indices { maps[index].desired.inSync = false }
    }

    public func disconnect() async {
        if let connection { await connection.close() }
        connection = nil
    }

    // MARK: - Applying batches

    /// Applies one batch: `batch[m]` holds map `m`'s changes, at most one per key, new keys in the
    /// order they should be appended. Returns when HAProxy has acknowledged every command.
    ///
    /// The batch always enters the desired contents first. A change HAProxy refuses is reported in
    /// ``ApplyReport/rejections`` and its key goes back to its value before the batch. When this
    /// throws (no session, or it broke), the maps concerned are out of sync and a successful
    /// ``synchronize()`` completes the batch; never apply the same batch twice.
    ///
    /// - Parameter validated: the changes already passed ``ApplierOptions/rules`` (the bridge
    ///   checks each event as it arrives, and would otherwise check it twice).
    public func apply(_ batch: [[KeyChange]], validated: Bool = false) async throws -> ApplyReport {
        precondition(batch.count == maps.count)
        var report = ApplyReport(mapCount: maps.count)
        var plans: [Int: MapPlan] = [:]
        let planning = clock.now
        for (index, changes) in batch.enumerated() where !changes.isEmpty {
            var accepted = changes
            if maps[index].definition.kind == .acl {
                // A pattern is present or not: an ACL's entries hold no value.
                for offset in accepted.indices where accepted[offset].value != nil { accepted[offset].value = "" }
            }
            if !validated {
                // Never sent: what HAProxy would refuse, or silently ignore, stays out of the desired state.
                let definition = maps[index].definition
                accepted = changes.filter { change in
                    guard let defect = options.rules.check(key: change.key.string, value: change.value, for: definition) else { return true }
                    report.rejections.append(Rejection(map: index, key: change.key, tag: change.tag, reason: defect.description))
                    return false
                }
            }
            plans[index] = maps[index].desired.plan(accepted, orderSensitive: maps[index].definition.isOrderSensitive, exclusive: exclusive)
        }
        let sending = clock.now
        report.planNanoseconds = (sending - planning).nanoseconds
        let usable = (connection?.isActive ?? false) ? connection : nil
        var deferred = false
        do {
            for index in plans.keys.sorted() {
                let plan = plans[index]!
                guard plan.sendable, let usable else {
                    deferred = true
                    continue
                }
                try await send(index, plan, usable, &report)
            }
        } catch {
            throw await interrupted(error)
        }
        if deferred {
            throw MapperError(.connectionClosed, "not synchronised with HAProxy; the batch completes at the next synchronisation")
        }
        report.sendNanoseconds = (clock.now - sending).nanoseconds
        return report
    }

    /// Marks the maps with unknown outcomes out of sync and drops a broken session.
    func interrupted(_ error: any Error) async -> MapperError {
        let mapped = RuntimeConnection.unwrap(error)
        if mapped.code != .unknownMap || !(connection?.isActive ?? false) {
            await disconnect()
        }
        return mapped
    }

    func send(_ index: Int, _ plan: MapPlan, _ connection: RuntimeConnection, _ report: inout ApplyReport) async throws {
        guard !plan.isEmpty else {
            // Nothing to send; still in sync unless an earlier batch's outcome is unknown.
            if maps[index].desired.uncertain.isEmpty { maps[index].desired.settle() }
            return
        }
        let definition = maps[index].definition
        let targetSize = maps[index].desired.contents.count
        let mapSizeBefore = plan.sizeBefore
        let strategy = options.strategy.choose(plan, sizeAfter: targetSize, costs: costModel, exclusive: exclusive)

        var rejections: [Rejection] = []
        if strategy == .rebuild {
            report.strategies[index] = .rebuild
            let started = clock.now
            let result = try await rebuild(index, connection)
            // An ACL's entries go one command each, not in payloads: their timings would mislead.
            if definition.kind == .map { costModel.observePayload(targetSize, seconds: (clock.now - started).seconds) }
            rejections = result.rejections
            report.commands += result.commands
            report.entriesWritten += targetSize
        } else {
            report.strategies[index] = .incremental
            var adds = plan.adds
            var resyncNeeded = false
            if !plan.updates.isEmpty {
                let started = clock.now
                let answers = try await connection.execute(
                    plan.updates.map { update in
                        // An ACL's updates are deletes only: its values are all empty, so never differ.
                        update.value.map { RuntimeCommand.set(definition.path, key: update.key.string, value: $0) }
                            ?? RuntimeCommand.del(definition.path, key: update.key.string, kind: definition.kind)
                    })
                costModel.observeUpdates(plan.updates.count, mapSize: mapSizeBefore, seconds: (clock.now - started).seconds)
                report.commands += answers.count
                report.entriesWritten += answers.count
                for answer in answers where !answer.isEmpty { try Self.checkKnownMap(answer, definition) }
                let verdict = UpdateVerdict(updates: plan.updates, answers: answers.map { $0.isEmpty ? "" : $0.text })
                rejections += verdict.refused.map { Rejection(map: index, key: $0.update.key, tag: $0.update.tag, reason: $0.reason) }
                for update in verdict.missing {
                    // HAProxy lacked a key the bridge believed it held: add it, then re-read the map.
                    logger.warning(
                        "HAProxy lacked a key the bridge believed present; adding it and re-reading the map",
                        metadata: ["map": "\(definition.name)", "key": "\(update.key)"])
                    adds.append(MapPlan.Add(change: update.change, key: update.key, value: maps[index].desired.contents[update.key]!))
                }
                resyncNeeded = !verdict.missing.isEmpty
                report.commands += try await deleteRemainingEntries(of: verdict.deleted, definition, connection)
                // A silent answer to `set map` on a typed-value map proves nothing: HAProxy 2.4 to
                // 3.0 answer a value they cannot parse with silence and keep the old one. Read the
                // map back and count only what it now holds.
                if definition.valueType != .str, info?.answersRefusedValuesSilently ?? true, !verdict.silentSets.isEmpty {
                    let dump = try await connection.execute(RuntimeCommand.showMap(definition.path, kind: definition.kind))
                    try Self.checkKnownMap(dump, definition)
                    report.commands += 1
                    var live: [MapKey: String] = [:]
                    for (key, value) in MapDump(body: dump.body) where live[MapKey(key)] == nil { live[MapKey(key)] = value }
                    for update in UpdateVerdict.unconfirmed(verdict.silentSets, live: live) {
                        rejections.append(
                            Rejection(
                                map: index, key: update.key, tag: update.tag,
                                reason: "HAProxy answered nothing and kept another value: it did not take this \(definition.valueType.rawValue) value"))
                    }
                }
                // A refused set or del left HAProxy as it was: so must the desired state be.
                for rejection in rejections { maps[index].desired.refuse(rejection.key) }
                if resyncNeeded { adds.sort { $0.change < $1.change } }
            }
            let refused = Set(rejections.map(\.key))
            adds.removeAll { refused.contains($0.key) }
            let started = clock.now
            let result = try await addEntries(index, connection, adds.map { ($0.key, $0.value) }, version: nil)
            if definition.kind == .map { costModel.observePayload(adds.count, seconds: (clock.now - started).seconds) }
            report.commands += result.commands
            report.entriesWritten += adds.count
            let restores = refuseAdds(index, result.rejections)
            rejections += result.rejections
            if !restores.isEmpty {
                let restored = try await addEntries(index, connection, restores, version: nil)
                report.commands += restored.commands
                if !restored.rejections.isEmpty { resyncNeeded = true }
            }
            if resyncNeeded {
                report.resyncs += 1
                maps[index].desired.forgetUncertain()
                var sync = SyncReport()
                try await resync(index, connection, &sync)
                rejections += sync.rejections
            }
        }
        report.rejections += rejections
        maps[index].desired.settle()
    }

    /// Deletes again, until HAProxy answers that each key is gone, keys whose `del map` it has just
    /// acknowledged: from 3.3 on, an interactive `del map` removes one entry of a key that two
    /// writers added twice (earlier versions remove them all, and nothing is sent). Returns the
    /// commands sent.
    func deleteRemainingEntries(of keys: [MapKey], _ definition: MapDefinition, _ connection: RuntimeConnection) async throws -> Int {
        guard info?.deletesOneEntryPerCall ?? false else { return 0 }
        var again = keys
        var commands = 0
        var rounds = 0
        while !again.isEmpty && rounds < 64 {
            let answers = try await connection.execute(again.map { RuntimeCommand.del(definition.path, key: $0.string, kind: definition.kind) })
            commands += answers.count
            again = zip(again, answers).filter { $0.1.isEmpty }.map(\.0)
            rounds += 1
        }
        return commands
    }

    /// Throws when HAProxy answered that it has no such map or ACL (`add acl` says "Unknown ACL
    /// identifier", every other command "Unknown map identifier", for ACLs too).
    public static func checkKnownMap(_ answer: RuntimeResponse, _ definition: MapDefinition) throws {
        let bytes = answer.body.readableBytesView
        if bytes.starts(with: "Unknown map identifier".utf8) || bytes.starts(with: "Unknown ACL identifier".utf8) {
            throw MapperError(.unknownMap, "HAProxy does not know \(definition.described) (\(definition.path)): it is not loaded by its configuration")
        }
    }
}

extension Duration {
    var seconds: Double {
        let (whole, fraction) = components
        return Double(whole) + Double(fraction) / 1e18
    }
}

extension Duration {
    /// The duration in whole nanoseconds (for metrics and logs).
    public var nanoseconds: Int64 {
        let (seconds, attoseconds) = components
        return seconds * 1_000_000_000 + attoseconds / 1_000_000_000
    }
}
