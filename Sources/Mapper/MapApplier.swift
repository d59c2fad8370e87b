import Logging
import NIOCore

/// Settings of the applier.
public struct ApplierOptions: Sendable, Equatable {
    public var connection = RuntimeConnectionOptions()
    /// The largest payload command in bytes; well under HAProxy's `tune.bufsize`.
    public var payloadBudget = 12288
    /// Maps smaller than this are always changed incrementally (a rebuild has fixed costs).
    public var minimumRebuildSize = 512

    public init() {}

    /// Options for a HAProxy whose `tune.bufsize` is `bufsize`.
    public init(bufsize: Int) {
        payloadBudget = max(1024, min(bufsize - 2048, 12288))
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
        var contents: MapContents
        /// On the first synchronisation, take HAProxy's live contents as the desired ones.
        var adoptLive: Bool
        var inSync = false
        /// The previous values of changes whose outcome is not known yet.
        var uncertain: [MapKey: String?] = [:]

        var canReject: Bool {
            definition.valueType != .str || [.ip, .int, .reg, .regm].contains(definition.match)
        }
    }

    public let endpoint: RuntimeEndpoint
    public let options: ApplierOptions
    public var logger: Logger
    private var maps: [MapState]
    private var connection: RuntimeConnection?
    public private(set) var info: HAProxyInfo?
    public private(set) var costModel = ApplyCostModel()
    private let clock = ContinuousClock()

    /// - Parameters:
    ///   - initial: each map's desired contents, or nil to adopt what HAProxy holds at the first sync.
    public init(maps: [MapDefinition], initial: [MapContents?], endpoint: RuntimeEndpoint, options: ApplierOptions, logger: Logger) {
        precondition(maps.count == initial.count)
        self.endpoint = endpoint
        self.options = options
        self.logger = logger
        self.maps = zip(maps, initial).map { MapState(definition: $0, contents: $1 ?? MapContents(), adoptLive: $1 == nil) }
    }

    public var definitions: [MapDefinition] { maps.map(\.definition) }

    public func contents(of map: Int) -> MapContents { maps[map].contents }

    public var isConnected: Bool { connection?.isActive ?? false }

    /// Connected, and every map known to equal its desired contents.
    public var isInSync: Bool { isConnected && maps.allSatisfy(\.inSync) }

    /// Marks every map for comparison with HAProxy at the next ``synchronize()``.
    public func invalidate() {
        for index in maps.indices { maps[index].inSync = false }
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
        do {
            for index in maps.indices where !maps[index].inSync {
                try await resync(index, connection, &report)
            }
        } catch {
            throw await interrupted(error)
        }
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
                report.processChanged = info != nil
                noteNewProcess(current)
            }
            logger.info(
                "connected to HAProxy runtime API",
                metadata: ["haproxy.endpoint": "\(endpoint)", "haproxy.pid": "\(current.pid)", "haproxy.version": "\(current.version)"])
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
        info = current
        invalidate()
    }

    /// Reads the live map and repairs every difference with the desired contents.
    private func resync(_ index: Int, _ connection: RuntimeConnection, _ report: inout SyncReport) async throws {
        let definition = maps[index].definition
        let dump = try await connection.execute(RuntimeCommand.showMap(definition.path))
        try Self.checkKnownMap(dump, definition)
        let live = MapDump(body: dump.body)
        if maps[index].adoptLive {
            maps[index].contents = MapContents(entries: live)
            maps[index].adoptLive = false
            logger.info("adopted HAProxy's live map as the starting state", metadata: ["map": "\(definition.name)", "map.entries": "\(maps[index].contents.count)"])
        }
        let comparison = MapComparison.compare(desired: maps[index].contents, live: live, orderSensitive: definition.match.isOrderSensitive)
        if comparison.isExact {
            maps[index].inSync = true
            maps[index].uncertain = [:]
            report.resynced.append((index, .none, comparison))
            return
        }
        let contents = maps[index].contents
        let updates = comparison.extra.count + comparison.different.count
        let needsRebuild = !comparison.duplicated.isEmpty || comparison.outOfOrder
            || (definition.match.isOrderSensitive && !comparison.missing.isEmpty)
        let incrementalCost = costModel.incremental(updates: updates, adds: comparison.missing.count, mapSize: comparison.liveCount)
        let strategy: ApplyStrategy = needsRebuild || costModel.rebuild(entries: contents.count) < incrementalCost ? .rebuild : .incremental
        logger.notice(
            "HAProxy's live map differs from the desired state; repairing",
            metadata: [
                "map": "\(definition.name)", "map.missing": "\(comparison.missing.count)", "map.extra": "\(comparison.extra.count)",
                "map.different": "\(comparison.different.count)", "map.duplicated": "\(comparison.duplicated.count)",
                "map.out_of_order": "\(comparison.outOfOrder)", "strategy": "\(strategy.rawValue)",
            ])
        var rejections: [Rejection] = []
        if strategy == .rebuild {
            rejections = try await rebuild(index, connection, changed: [:])
        } else {
            var commands: [ByteBuffer] = []
            for key in comparison.extra { commands.append(RuntimeCommand.del(definition.path, key: key.string)) }
            for key in comparison.different { commands.append(RuntimeCommand.set(definition.path, key: key.string, value: contents[key]!)) }
            let answers = try await connection.execute(commands)
            for (offset, answer) in answers.enumerated() where !answer.isEmpty && answer.text != "Key not found." {
                try Self.checkKnownMap(answer, definition)
                let key = offset < comparison.extra.count ? comparison.extra[offset] : comparison.different[offset - comparison.extra.count]
                rejections.append(Rejection(map: index, key: key, tag: nil, reason: answer.text))
            }
            let adds = comparison.missing.map { ($0, contents[$0]!) }
            rejections += try await addEntries(index, connection, adds, version: nil, changed: [:]).rejections
        }
        for rejection in rejections {
            // A desired entry HAProxy refuses cannot be held: drop it rather than retry forever.
            logger.error("HAProxy refused an entry of the desired state; dropping it", metadata: ["map": "\(definition.name)", "key": "\(rejection.key)", "reason": "\(rejection.reason)"])
            maps[index].contents.remove(rejection.key)
        }
        report.rejections += rejections
        maps[index].inSync = true
        maps[index].uncertain = [:]
        report.resynced.append((index, strategy, comparison))
    }

    // MARK: - Applying batches

    /// Applies one batch: `batch[m]` holds map `m`'s changes, at most one per key, new keys in the
    /// order they should be appended. Returns when HAProxy has acknowledged every command.
    ///
    /// A change HAProxy refuses is reported in ``ApplyReport/rejections`` and leaves its key as it
    /// was. When the session breaks, this throws; the desired contents then already include the
    /// batch, the maps are out of sync, and a successful ``synchronize()`` completes the batch.
    public func apply(_ batch: [[KeyChange]]) async throws -> ApplyReport {
        precondition(batch.count == maps.count)
        var report = ApplyReport(mapCount: maps.count)
        guard let connection, connection.isActive, maps.allSatisfy(\.inSync) else {
            throw MapperError(.connectionClosed, "not synchronised with HAProxy")
        }
        do {
            for (index, changes) in batch.enumerated() where !changes.isEmpty {
                try await applyChanges(index, changes, connection, &report)
            }
        } catch {
            throw await interrupted(error)
        }
        return report
    }

    /// Marks the maps with unknown outcomes out of sync and drops a broken session.
    private func interrupted(_ error: any Error) async -> MapperError {
        let mapped = RuntimeConnection.unwrap(error)
        if mapped.code != .unknownMap || !(connection?.isActive ?? false) {
            await disconnect()
        }
        for index in maps.indices where !maps[index].uncertain.isEmpty {
            maps[index].inSync = false
        }
        return mapped
    }

    private struct Plan {
        var updates: [(change: Int, command: ByteBuffer, isDelete: Bool)] = []
        var adds: [(change: Int, key: MapKey, value: String)] = []
    }

    private func applyChanges(_ index: Int, _ changes: [KeyChange], _ connection: RuntimeConnection, _ report: inout ApplyReport) async throws {
        let definition = maps[index].definition
        let orderSensitive = definition.match.isOrderSensitive
        var plan = Plan()
        var target = maps[index].contents
        var previous: [MapKey: String?] = [:]
        previous.reserveCapacity(changes.count)
        for (offset, change) in changes.enumerated() {
            let before = target[change.key]
            if let value = change.value {
                if before == nil {
                    plan.adds.append((offset, change.key, value))
                    target.set(change.key, value)
                } else if change.deletedFirst && orderSensitive {
                    plan.updates.append((offset, RuntimeCommand.del(definition.path, key: change.key.string), true))
                    plan.adds.append((offset, change.key, value))
                    target.moveToEnd(change.key, value)
                } else if !bytesEqual(before!, value) {
                    plan.updates.append((offset, RuntimeCommand.set(definition.path, key: change.key.string, value: value), false))
                    target.set(change.key, value)
                } else {
                    continue
                }
            } else if before != nil {
                plan.updates.append((offset, RuntimeCommand.del(definition.path, key: change.key.string), true))
                target.remove(change.key)
            } else {
                continue
            }
            previous[change.key] = .some(before)
        }
        guard !previous.isEmpty else { return }

        let mapSize = maps[index].contents.count
        let incrementalCost = costModel.incremental(updates: plan.updates.count, adds: plan.adds.count, mapSize: mapSize)
        let rebuildCost = costModel.rebuild(entries: target.count)
        let useRebuild = mapSize >= options.minimumRebuildSize && rebuildCost < incrementalCost
        // From here on the desired state includes the batch; what HAProxy holds is uncertain until acknowledged.
        maps[index].contents = target
        maps[index].uncertain = previous
        maps[index].inSync = false

        let tags = Dictionary(changes.map { ($0.key, $0.tag) }, uniquingKeysWith: { _, last in last })
        var rejections: [Rejection] = []
        if useRebuild {
            report.strategies[index] = .rebuild
            let started = clock.now
            rejections = try await rebuild(index, connection, changed: tags)
            costModel.observePayload(maps[index].contents.count, seconds: (clock.now - started).seconds)
            report.commands += 2 + (maps[index].contents.count * 40 / options.payloadBudget + 1)
            report.entriesWritten += maps[index].contents.count
        } else {
            report.strategies[index] = .incremental
            var adds = plan.adds
            var resyncNeeded = false
            if !plan.updates.isEmpty {
                let started = clock.now
                let answers = try await connection.execute(plan.updates.map(\.command))
                costModel.observeUpdates(plan.updates.count, mapSize: mapSize, seconds: (clock.now - started).seconds)
                report.commands += answers.count
                report.entriesWritten += answers.count
                for (update, answer) in zip(plan.updates, answers) where !answer.isEmpty {
                    try Self.checkKnownMap(answer, definition)
                    let change = changes[update.change]
                    switch answer.text {
                    case "Key not found.":
                        continue  // del of a key HAProxy did not hold: the outcome wanted.
                    case "entry not found." where !update.isDelete:
                        // HAProxy lacked a key the bridge believed it held: add it, then re-read the map.
                        logger.warning(
                            "HAProxy lacked a key the bridge believed present; adding it and re-reading the map",
                            metadata: ["map": "\(definition.name)", "key": "\(change.key)"])
                        adds.append((update.change, change.key, change.value!))
                        resyncNeeded = true
                    default:
                        rejections.append(Rejection(map: index, key: change.key, tag: change.tag, reason: answer.text))
                    }
                }
                // A refused set or del left HAProxy as it was: so must the desired state be.
                for rejection in rejections { revert(index, rejection.key) }
                if resyncNeeded { adds.sort { $0.change < $1.change } }
            }
            let refused = Set(rejections.map(\.key))
            adds.removeAll { refused.contains($0.key) }
            let started = clock.now
            let result = try await addEntries(index, connection, adds.map { ($0.key, $0.value) }, version: nil, changed: tags)
            costModel.observePayload(adds.count, seconds: (clock.now - started).seconds)
            report.commands += result.commands
            report.entriesWritten += adds.count
            var restores: [(key: MapKey, value: String)] = []
            for rejection in result.rejections {
                revert(index, rejection.key)
                // A key moved by del+add whose add was refused is gone from HAProxy: restore its old value.
                if case .some(.some(let value)) = maps[index].uncertain[rejection.key] { restores.append((rejection.key, value)) }
            }
            rejections += result.rejections
            if !restores.isEmpty {
                let restored = try await addEntries(index, connection, restores, version: nil, changed: [:])
                report.commands += restored.commands
                if !restored.rejections.isEmpty { resyncNeeded = true }
            }
            if resyncNeeded {
                report.resyncs += 1
                var sync = SyncReport()
                maps[index].uncertain = [:]
                try await resync(index, connection, &sync)
                rejections += sync.rejections
            }
        }
        report.rejections += rejections
        maps[index].uncertain = [:]
        maps[index].inSync = true
    }

    /// Puts a refused key back to its value before the batch.
    private func revert(_ index: Int, _ key: MapKey) {
        guard let before = maps[index].uncertain[key] else { return }
        if let value = before {
            maps[index].contents.set(key, value)
        } else {
            maps[index].contents.remove(key)
        }
    }

    /// Replaces the map's live contents with the desired ones atomically.
    ///
    /// - Parameter changed: keys changed by the batch being applied, with their tags; a refused
    ///   entry among them is reported and replaced by its value before the batch.
    private func rebuild(_ index: Int, _ connection: RuntimeConnection, changed: [MapKey: Int]) async throws -> [Rejection] {
        let definition = maps[index].definition
        let prepared = try await connection.execute(RuntimeCommand.prepare(definition.path))
        try Self.checkKnownMap(prepared, definition)
        guard prepared.text.hasPrefix("New version created: "), let version = Int(prepared.text.dropFirst("New version created: ".count)) else {
            throw MapperError(.protocolViolation, "unexpected answer to 'prepare map \(definition.path)': '\(prepared.text.prefix(200))'")
        }
        let entries = maps[index].contents.entries(ordered: definition.match.isOrderSensitive)
        let result = try await addEntries(index, connection, entries, version: version, changed: changed)
        for rejection in result.rejections {
            if let before = maps[index].uncertain[rejection.key], let value = before {
                // The batch's new value was refused: the entry keeps its old value. It was skipped in
                // the new version, so add the old value back there before committing.
                maps[index].contents.set(rejection.key, value)
                let readd = try await connection.execute(RuntimeCommand.add(definition.path, key: rejection.key.string, value: value, version: version))
                if !readd.isEmpty {
                    throw MapperError(.protocolViolation, "HAProxy refused to restore '\(rejection.key)' in map \(definition.name): \(readd.text)")
                }
            } else {
                maps[index].contents.remove(rejection.key)
            }
        }
        let committed = try await connection.execute(RuntimeCommand.commit(definition.path, version: version))
        guard committed.isEmpty else {
            throw MapperError(.protocolViolation, "HAProxy refused 'commit map @\(version) \(definition.path)': '\(committed.text.prefix(200))'")
        }
        return result.rejections
    }

    /// Adds entries with payload commands, one in flight at a time. A payload stops at its first
    /// line HAProxy refuses and keeps the lines before it; the refused line is found from the map's
    /// entry count, reported, and the rest are sent again.
    private func addEntries(
        _ index: Int, _ connection: RuntimeConnection, _ entries: [(key: MapKey, value: String)], version: Int?, changed: [MapKey: Int]
    ) async throws -> (rejections: [Rejection], commands: Int) {
        guard !entries.isEmpty else { return ([], 0) }
        let definition = maps[index].definition
        var rejections: [Rejection] = []
        var commands = 0
        var start = 0
        var baseline: Int? = maps[index].canReject ? try await entryCount(definition, connection) : nil
        while start < entries.count {
            var chunker = PayloadChunker(map: definition.path, version: version, budget: options.payloadBudget)
            for entry in entries[start...] { chunker.append(key: entry.key.string, value: entry.value) }
            let chunks = chunker.finish()
            let answers = try await connection.execute(chunks.map(\.bytes), window: 1, stopAfterFailure: true)
            commands += answers.count
            guard let failed = answers.firstIndex(where: { !$0.isEmpty }) else { return (rejections, commands) }
            let answer = answers[failed]
            try Self.checkKnownMap(answer, definition)
            let chunk = chunks[failed]
            let linesBefore = chunks[..<failed].reduce(0) { $0 + $1.entries.count }
            guard let before = baseline else {
                throw MapperError(.protocolViolation, "HAProxy refused a payload line of map \(definition.name), which should accept any string: '\(answer.text.prefix(200))'")
            }
            let after = try await entryCount(definition, connection)
            let addedInChunk = after - before - linesBefore
            guard addedInChunk >= 0, addedInChunk < chunk.entries.count else {
                throw MapperError(.protocolViolation, "cannot tell which line of a payload for map \(definition.name) HAProxy refused ('\(answer.text.prefix(200))')")
            }
            let refused = entries[start + chunk.entries.lowerBound + addedInChunk]
            rejections.append(Rejection(map: index, key: refused.key, tag: changed[refused.key], reason: answer.text))
            start += chunk.entries.lowerBound + addedInChunk + 1
            baseline = after
        }
        return (rejections, commands)
    }

    /// The number of entries (of every version) HAProxy holds for the map.
    private func entryCount(_ definition: MapDefinition, _ connection: RuntimeConnection) async throws -> Int {
        let listing = LoadedMap.parseListing(try await connection.execute(RuntimeCommand.listMaps()).text)
        guard let count = listing.first(where: { $0.path == definition.path })?.entryCount else {
            throw MapperError(.unknownMap, "HAProxy no longer lists map \(definition.name) (\(definition.path))")
        }
        return count
    }

    static func checkKnownMap(_ answer: RuntimeResponse, _ definition: MapDefinition) throws {
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
