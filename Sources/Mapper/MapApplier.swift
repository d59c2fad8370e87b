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
    private var maps: [MapState]
    private var connection: RuntimeConnection?
    /// Whether this bridge is HAProxy's only writer for its maps (it owns every source). Another
    /// bridge may otherwise be changing other keys of the same maps at the same time, so atomic
    /// rebuilds (whose commit would drop its changes) are off, and repairs touch only owned keys.
    public private(set) var exclusive = true
    /// In shared mode, the sources whose keys this bridge writes.
    public private(set) var owned: Set<MapContents.Owner> = []
    public private(set) var info: HAProxyInfo?
    public private(set) var costModel = ApplyCostModel()
    /// A new HAProxy process was seen and the synchronisation that answers it has not completed.
    private var processChangePending = false
    private let clock = ContinuousClock()

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

    /// Forgets the maps' tombstones (once the state holding them is stored).
    public func clearTombstones() {
        for index in maps.indices { maps[index].desired.contents.clearTombstones() }
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

    // MARK: - Synchronisation

    /// Opens a session when there is none, notices a new HAProxy process, and brings every map
    /// that is not known to be in sync in line with its desired contents.
    public func synchronize() async throws -> SyncReport {
        var report = SyncReport()
        let connection = try await connectIfNeeded(&report)
        report.processChanged = processChangePending
        do {
            for index in maps.indices where !maps[index].desired.inSync {
                // Refused entries go back to their earlier values, which HAProxy may not hold yet:
                // compare again until the map is exact (an earlier value was accepted once).
                var attempts = 0
                repeat {
                    let refused = report.rejections.count
                    try await resync(index, connection, &report)
                    if report.rejections.count == refused { break }
                    maps[index].desired.inSync = false
                    attempts += 1
                } while attempts < 3
            }
        } catch {
            throw await interrupted(error)
        }
        processChangePending = false
        return report
    }

    /// Asks HAProxy which process answers; when it is a new one, or an old worker that is stopping,
    /// the maps are marked for comparison and the next ``synchronize()`` repairs them.
    public func checkProcess() async throws {
        guard let connection, connection.isActive else { return }
        do {
            let current = try HAProxyInfo(parsing: try await connection.execute(RuntimeCommand.showInfo()).text)
            if current.stopping {
                logger.notice("HAProxy worker is stopping (reload); reconnecting to the new one", metadata: ["haproxy.pid": "\(current.pid)"])
                await disconnect()
            } else if current.processIdentity != info?.processIdentity {
                noteNewProcess(current)
            }
        } catch {
            throw await interrupted(error)
        }
    }

    private func connectIfNeeded(_ report: inout SyncReport) async throws -> RuntimeConnection {
        if let connection, connection.isActive { return connection }
        connection = nil
        let fresh = try await RuntimeConnection.connect(to: endpoint, options: options.connection)
        do {
            let current = try HAProxyInfo(parsing: try await fresh.execute(RuntimeCommand.showInfo()).text)
            guard current.isSupported else {
                await fresh.close()
                throw MapperError(
                    .unsupportedVersion,
                    "HAProxy \(current.version) is not supported: mapbridge needs HAProxy \(HAProxyInfo.oldestSupported.major).\(HAProxyInfo.oldestSupported.minor) or later")
            }
            if current.stopping {
                await fresh.close()
                throw MapperError(.connectionClosed, "the HAProxy worker answering is stopping (a reload is in progress)")
            }
            let loaded = LoadedMap.parseListing(try await fresh.execute(RuntimeCommand.listMaps()).text)
            let known = Set(loaded.map(\.path))
            let absent = maps.map(\.definition).filter { !known.contains($0.path) }
            if !absent.isEmpty {
                await fresh.close()
                let names = absent.map { "\($0.name) (\($0.path))" }.joined(separator: ", ")
                let loadedNames = loaded.map(\.path).joined(separator: ", ")
                throw MapperError(.unknownMap, "HAProxy has not loaded map \(names); maps it has: \(loadedNames.isEmpty ? "none" : loadedNames)")
            }
            report.connected = true
            if current.processIdentity != info?.processIdentity {
                noteNewProcess(current)
            }
            logger.info(
                "connected to HAProxy runtime API",
                metadata: [
                    "haproxy.endpoint": "\(endpoint)", "haproxy.pid": "\(current.pid)", "haproxy.version": "\(current.version)",
                    "haproxy.behaviour": "\(current.behaviour.joined(separator: "; "))",
                ])
        } catch {
            await fresh.close()
            throw RuntimeConnection.unwrap(error)
        }
        connection = fresh
        return fresh
    }

    private func noteNewProcess(_ current: HAProxyInfo) {
        if let previous = info {
            logger.warning(
                "HAProxy restarted or reloaded: its runtime map changes are gone; resynchronising every map",
                metadata: ["haproxy.previous": "\(previous.processIdentity)", "haproxy.current": "\(current.processIdentity)"])
        }
        let calibrated = costModel
        costModel = ApplyCostModel(info: current)
        if info != nil {
            costModel.perPayloadEntry = calibrated.perPayloadEntry
            costModel.perCommand = calibrated.perCommand
            if calibrated.linearSetDelete == costModel.linearSetDelete { costModel.perScannedEntry = calibrated.perScannedEntry }
        }
        if info != nil { processChangePending = true }
        info = current
        invalidate()
    }

    /// Reads the live map and repairs it. As HAProxy's only writer, the whole map is compared and,
    /// when anything differs, replaced atomically with the desired contents. When sharing the map
    /// with other bridges, only the keys this bridge owns are compared and repaired, key by key.
    private func resync(_ index: Int, _ connection: RuntimeConnection, _ report: inout SyncReport) async throws {
        let definition = maps[index].definition
        let dump = try await connection.execute(RuntimeCommand.showMap(definition.path))
        try Self.checkKnownMap(dump, definition)
        let live = MapDump(body: dump.body)
        if maps[index].desired.adoptLive {
            maps[index].desired.contents = MapContents(entries: live)
            maps[index].desired.adoptLive = false
            logger.info(
                "adopted HAProxy's live map as the starting state", metadata: ["map": "\(definition.name)", "map.entries": "\(maps[index].desired.contents.count)"])
        }
        let comparison =
            exclusive
            ? MapComparison.compare(desired: maps[index].desired.contents, live: live, orderSensitive: definition.match.isOrderSensitive)
            : MapComparison.compare(desired: maps[index].desired.contents, live: live, owned: owned)
        if comparison.isExact {
            maps[index].desired.settle()
            report.resynced.append((index, .none, comparison))
            return
        }
        let strategy: ApplyStrategy = exclusive ? .rebuild : .incremental
        logger.notice(
            "HAProxy's live map differs from the desired state; repairing",
            metadata: [
                "map": "\(definition.name)", "map.missing": "\(comparison.missing.count)", "map.extra": "\(comparison.extra.count)",
                "map.different": "\(comparison.different.count)", "map.duplicated": "\(comparison.duplicated.count)",
                "map.out_of_order": "\(comparison.outOfOrder)", "strategy": "\(strategy.rawValue)",
            ])
        var rejections: [Rejection] = []
        if strategy == .rebuild {
            rejections = try await rebuild(index, connection).rejections
        } else {
            // Key by key: remove extras and every duplicated key, set different values, then add
            // what is missing (including the duplicated keys, now gone).
            let contents = maps[index].desired.contents
            let removals = comparison.extra + comparison.duplicated
            var commands = removals.map { RuntimeCommand.del(definition.path, key: $0.string) }
            let updates = comparison.different.filter { !comparison.duplicated.contains($0) }
            commands += updates.map { RuntimeCommand.set(definition.path, key: $0.string, value: contents[$0]!) }
            let answers = try await connection.execute(commands)
            for (offset, answer) in answers.enumerated() where !answer.isEmpty && answer.text != "Key not found." {
                try Self.checkKnownMap(answer, definition)
                let key = offset < removals.count ? removals[offset] : updates[offset - removals.count]
                rejections.append(Rejection(map: index, key: key, tag: maps[index].desired.tag(of: key), reason: answer.text))
            }
            let adds = (comparison.missing + comparison.duplicated.filter { contents[$0] != nil }).map { ($0, contents[$0]!) }
            rejections += try await addEntries(index, connection, adds, version: nil).rejections
            for rejection in rejections { maps[index].desired.refuse(rejection.key) }
        }
        for rejection in rejections where rejection.tag == nil {
            // An entry HAProxy refuses that no batch in flight changed cannot be held: it is dropped.
            logger.error(
                "HAProxy refused an entry of the desired state; dropping it",
                metadata: ["map": "\(definition.name)", "key": "\(rejection.key)", "reason": "\(rejection.reason)"])
        }
        report.rejections += rejections
        maps[index].desired.settle()
        report.resynced.append((index, strategy, comparison))
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
            if !validated {
                // Never sent: what HAProxy would refuse, or silently ignore, stays out of the desired state.
                let definition = maps[index].definition
                accepted = changes.filter { change in
                    guard let defect = options.rules.check(key: change.key.string, value: change.value, for: definition) else { return true }
                    report.rejections.append(Rejection(map: index, key: change.key, tag: change.tag, reason: defect.description))
                    return false
                }
            }
            plans[index] = maps[index].desired.plan(accepted, orderSensitive: maps[index].definition.match.isOrderSensitive, exclusive: exclusive)
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
    private func interrupted(_ error: any Error) async -> MapperError {
        let mapped = RuntimeConnection.unwrap(error)
        if mapped.code != .unknownMap || !(connection?.isActive ?? false) {
            await disconnect()
        }
        return mapped
    }

    private func send(_ index: Int, _ plan: MapPlan, _ connection: RuntimeConnection, _ report: inout ApplyReport) async throws {
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
            costModel.observePayload(targetSize, seconds: (clock.now - started).seconds)
            rejections = result.rejections
            report.commands += result.commands
            report.entriesWritten += targetSize
        } else {
            report.strategies[index] = .incremental
            var adds = plan.adds.map { (change: $0.change, key: $0.key, value: $0.value) }
            var resyncNeeded = false
            if !plan.updates.isEmpty {
                let started = clock.now
                let answers = try await connection.execute(
                    plan.updates.map { update in
                        update.value.map { RuntimeCommand.set(definition.path, key: update.key.string, value: $0) }
                            ?? RuntimeCommand.del(definition.path, key: update.key.string)
                    })
                costModel.observeUpdates(plan.updates.count, mapSize: mapSizeBefore, seconds: (clock.now - started).seconds)
                report.commands += answers.count
                report.entriesWritten += answers.count
                for (update, answer) in zip(plan.updates, answers) where !answer.isEmpty {
                    try Self.checkKnownMap(answer, definition)
                    let key = update.key
                    switch answer.text {
                    case "Key not found.":
                        continue  // del of a key HAProxy did not hold: the outcome wanted.
                    case "entry not found." where update.value != nil:
                        // HAProxy lacked a key the bridge believed it held: add it, then re-read the map.
                        logger.warning(
                            "HAProxy lacked a key the bridge believed present; adding it and re-reading the map",
                            metadata: ["map": "\(definition.name)", "key": "\(key)"])
                        adds.append((update.change, key, maps[index].desired.contents[key]!))
                        resyncNeeded = true
                    default:
                        rejections.append(Rejection(map: index, key: key, tag: update.tag, reason: answer.text))
                    }
                }
                // A silent answer to `set map` on a typed-value map proves nothing: HAProxy 2.4 to
                // 3.0 answer a value they cannot parse with silence and keep the old one. Read the
                // map back and count only what it now holds.
                if definition.valueType != .str, info?.answersRefusedValuesSilently ?? true {
                    let silent = zip(plan.updates, answers).filter { $0.1.isEmpty && $0.0.value != nil }.map(\.0)
                    if !silent.isEmpty {
                        let dump = try await connection.execute(RuntimeCommand.showMap(definition.path))
                        try Self.checkKnownMap(dump, definition)
                        report.commands += 1
                        var live: [MapKey: String] = [:]
                        for (key, value) in MapDump(body: dump.body) where live[MapKey(key)] == nil { live[MapKey(key)] = value }
                        for update in silent where live[update.key] != update.value {
                            rejections.append(
                                Rejection(
                                    map: index, key: update.key, tag: update.tag,
                                    reason: "HAProxy answered nothing and kept another value: it did not take this \(definition.valueType.rawValue) value"))
                        }
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
            costModel.observePayload(adds.count, seconds: (clock.now - started).seconds)
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

    /// Payload adds HAProxy refused: each key goes back to its value before the batch. Returns the
    /// entries to add again: keys whose earlier value HAProxy no longer holds (a list-matched key
    /// deleted to move it to the end, or an entry of a rebuilt version).
    private func refuseAdds(_ index: Int, _ rejections: [Rejection]) -> [(key: MapKey, value: String)] {
        rejections.compactMap { rejection in
            maps[index].desired.refuse(rejection.key, wasAdd: true).map { (rejection.key, $0) }
        }
    }

    /// Replaces the map's live contents with the desired ones atomically: `prepare map`, payload
    /// `add map @V`, `commit map @V`. An entry HAProxy refuses goes back to its value before the
    /// batch (added to the new version in its place), or is dropped when it had none.
    private func rebuild(_ index: Int, _ connection: RuntimeConnection) async throws -> (rejections: [Rejection], commands: Int) {
        let definition = maps[index].definition
        let prepared = try await connection.execute(RuntimeCommand.prepare(definition.path))
        try Self.checkKnownMap(prepared, definition)
        guard prepared.text.hasPrefix("New version created: "), let version = Int(prepared.text.dropFirst("New version created: ".count)) else {
            throw MapperError(.protocolViolation, "unexpected answer to 'prepare map \(definition.path)': '\(prepared.text.prefix(200))'")
        }
        let entries = maps[index].desired.contents.entries(ordered: definition.match.isOrderSensitive)
        var result = try await addEntries(index, connection, entries, version: version)
        let restores = refuseAdds(index, result.rejections)
        if !restores.isEmpty {
            let restored = try await addEntries(index, connection, restores, version: version)
            result.commands += restored.commands
            if let refused = restored.rejections.first {
                throw MapperError(.protocolViolation, "HAProxy refused to restore '\(refused.key)' in map \(definition.name): \(refused.reason)")
            }
        }
        let committed = try await connection.execute(RuntimeCommand.commit(definition.path, version: version))
        guard committed.isEmpty else {
            throw MapperError(.protocolViolation, "HAProxy refused 'commit map @\(version) \(definition.path)': '\(committed.text.prefix(200))'")
        }
        return (result.rejections, result.commands + 2)
    }

    /// Adds entries with payload commands, one in flight at a time (to the map, or to one of its
    /// versions). A payload stops at its first line HAProxy refuses and keeps the lines before:
    /// which line it was is read back from the map (the chunk's keys HAProxy now holds are exactly
    /// the lines before it), the refusal is reported, and the rest is sent again.
    private func addEntries(
        _ index: Int, _ connection: RuntimeConnection, _ entries: [(key: MapKey, value: String)], version: Int?
    ) async throws -> (rejections: [Rejection], commands: Int) {
        guard !entries.isEmpty else { return ([], 0) }
        let definition = maps[index].definition
        var rejections: [Rejection] = []
        var commands = 0
        var start = 0
        // Separate sessions until one of them gets an answer other than success: the interactive
        // session, which every other command goes through, then decides (see below).
        var separateSessions = options.payloadSessions
        while start < entries.count {
            var chunker = PayloadChunker(map: definition.path, version: version, budget: options.payloadBudget)
            for entry in entries[start...] { chunker.append(key: entry.key.string, value: entry.value) }
            let chunks = chunker.finish()
            let answers: [RuntimeResponse]
            let viaSeparateSessions: Bool
            if separateSessions, case .unix(let path) = endpoint {
                answers = try await PayloadSessions.send(chunks.map(\.bytes), path: path, options: options.connection)
                viaSeparateSessions = true
            } else {
                answers = try await connection.execute(chunks.map(\.bytes), window: 1, stopAfterFailure: true)
                viaSeparateSessions = false
            }
            commands += answers.count
            guard let failed = answers.firstIndex(where: { !$0.isEmpty }) else { return (rejections, commands) }
            let answer = answers[failed]
            if !viaSeparateSessions { try Self.checkKnownMap(answer, definition) }
            let chunk = chunks[failed]
            let dump = try await connection.execute(RuntimeCommand.showMap(definition.path, version: version))
            try Self.checkKnownMap(dump, definition)
            let held = Set(MapDump(body: dump.body).lazy.map { MapKey($0.key) })
            commands += 1
            let lines = entries[(start + chunk.entries.lowerBound)..<(start + chunk.entries.upperBound)]
            let added = lines.prefix { held.contains($0.key) }.count
            if viaSeparateSessions {
                // A separate session may have reached another HAProxy process than the
                // interactive one (a reload in between: "Version number in the future"), so its
                // refusal proves nothing. Carry on through the interactive session from the first
                // line its process lacks: a line really refused is refused there again, and found
                // as below.
                separateSessions = false
                start += chunk.entries.lowerBound + added
                logger.debug(
                    "a payload session got a refusal; the interactive session takes over for this map's payload",
                    metadata: ["map": "\(definition.name)", "answer": "\(answer.text.prefix(200))"])
                continue
            }
            guard added < lines.count else {
                throw MapperError(.protocolViolation, "HAProxy refused a payload for map \(definition.name) yet holds all of it: '\(answer.text.prefix(200))'")
            }
            let refused = lines[lines.startIndex + added]
            rejections.append(Rejection(map: index, key: refused.key, tag: maps[index].desired.tag(of: refused.key), reason: answer.text))
            start += chunk.entries.lowerBound + added + 1
        }
        return (rejections, commands)
    }

    public static func checkKnownMap(_ answer: RuntimeResponse, _ definition: MapDefinition) throws {
        if answer.body.readableBytesView.starts(with: "Unknown map identifier".utf8) {
            throw MapperError(.unknownMap, "HAProxy does not know map \(definition.name) (\(definition.path)): it is not loaded by its configuration")
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
