import Core
import Logging
import NIOCore

/// Connecting, noticing new HAProxy processes, and comparing and repairing live maps.
extension MapApplier {
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

    func connectIfNeeded(_ report: inout SyncReport) async throws -> RuntimeConnection {
        if let connection, connection.isActive { return connection }
        connection = nil
        let fresh = try await RuntimeConnection.connect(to: endpoint, options: options.connection)
        do {
            let current = try HAProxyInfo(parsing: try await fresh.execute(RuntimeCommand.showInfo()).text)
            guard current.isSupported else {
                await fresh.close()
                throw MapperError(
                    .unsupportedVersion,
                    "HAProxy \(current.version) is not supported: mapbridge needs HAProxy \(HAProxyInfo.oldestSupported.major).\(HAProxyInfo.oldestSupported.minor) or later"
                )
            }
            if current.stopping {
                await fresh.close()
                throw MapperError(.connectionClosed, "the HAProxy worker answering is stopping (a reload is in progress)")
            }
            for kind in [MapKind.map, .acl] {
                let wanted = maps.map(\.definition).filter { $0.kind == kind }
                guard !wanted.isEmpty else { continue }
                let loaded = try await fresh.loadedPaths(of: kind)
                let absent = wanted.filter { !loaded.contains($0.path) }
                if !absent.isEmpty {
                    await fresh.close()
                    let names = absent.map { "\($0.name) (\($0.path))" }.joined(separator: ", ")
                    throw MapperError(
                        .unknownMap,
                        "HAProxy has not loaded \(kind.noun) \(names); \(kind.noun)s it has: \(loaded.isEmpty ? "none" : loaded.sorted().joined(separator: ", "))"
                    )
                }
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
        if let onDisconnect { fresh.whenClosed(onDisconnect) }
        return fresh
    }

    func noteNewProcess(_ current: HAProxyInfo) {
        if let previous = info {
            logger.warning(
                "HAProxy restarted or reloaded: its runtime map changes are gone; resynchronising every map",
                metadata: ["haproxy.previous": "\(previous.processIdentity)", "haproxy.current": "\(current.processIdentity)"])
        }
        let fresh = ApplyCostModel(info: current)
        if let previous = info {
            costModel = costModel.carriedOver(to: fresh, sameVersion: previous.majorMinor == current.majorMinor)
        } else {
            costModel = fresh
        }
        if info != nil { processChangePending = true }
        info = current
        invalidate()
    }

    /// Reads the live map and repairs it. As HAProxy's only writer, the whole map is compared and,
    /// when anything differs, replaced atomically with the desired contents. When sharing the map
    /// with other bridges, only the keys this bridge owns are compared and repaired, key by key.
    func resync(_ index: Int, _ connection: RuntimeConnection, _ report: inout SyncReport) async throws {
        let definition = maps[index].definition
        if !exclusive && owned.isEmpty {
            // Sharing and owning nothing yet (at start, before partitions are assigned): no key is
            // this bridge's to judge, so the live map (millions of entries, perhaps) is not read.
            // The assignment compares what it brings, and, with no stored state, adopts the live
            // map then: read once, not at connection and again at the assignment. Not reported
            // as compared: it was not.
            maps[index].desired.settle()
            return
        }
        let readStarted = ContinuousClock.now
        let dump = try await connection.execute(RuntimeCommand.showMap(definition.path, kind: definition.kind))
        try Self.checkKnownMap(dump, definition)
        let live = MapDump(body: dump.body)
        let read = ContinuousClock.now - readStarted
        if maps[index].desired.adoptLive {
            let adopted = MapContents.adopting(entries: live, capacity: live.sizeHint)
            maps[index].desired.contents = adopted.contents
            maps[index].desired.adoptLive = false
            logger.info(
                "adopted HAProxy's live map as the starting state",
                metadata: [
                    "map": "\(definition.name)", "map.entries": "\(maps[index].desired.contents.count)", "read_ms": "\(read.nanoseconds / 1_000_000)",
                    "adopt_ms": "\((ContinuousClock.now - readStarted - read).nanoseconds / 1_000_000)",
                ])
            if !adopted.duplicated {
                // The desired contents are now the live map, entry for entry and in its order: a
                // comparison (a second pass over millions of entries) would find nothing.
                maps[index].desired.settle()
                report.resynced.append((index, .none, MapComparison(exactOf: adopted.liveCount)))
                return
            }
        }
        let compareStarted = ContinuousClock.now
        let comparison =
            exclusive
            ? MapComparison.compare(desired: maps[index].desired.contents, entries: live, orderSensitive: definition.isOrderSensitive)
            : MapComparison.compare(desired: maps[index].desired.contents, live: live, owned: owned)
        logger.debug(
            "read and compared HAProxy's live map",
            metadata: [
                "map": "\(definition.name)", "map.entries": "\(comparison.liveCount)", "read_ms": "\(read.nanoseconds / 1_000_000)",
                "compare_ms": "\((ContinuousClock.now - compareStarted).nanoseconds / 1_000_000)", "exact": "\(comparison.isExact)",
            ])
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
            var removals: [MapKey] = []
            var seen = Set<MapKey>()
            for key in comparison.extra + comparison.duplicated where seen.insert(key).inserted { removals.append(key) }
            var targets = removals
            var commands = removals.map { RuntimeCommand.del(definition.path, key: $0.string, kind: definition.kind) }
            // An ACL's values are all empty: none differs (`set` has no ACL form).
            let updates = definition.kind == .acl ? [] : comparison.different.filter { !comparison.duplicated.contains($0) }
            commands += updates.map { RuntimeCommand.set(definition.path, key: $0.string, value: contents[$0]!) }
            targets += updates
            let answers = try await connection.execute(commands)
            // Every entry of a duplicated key goes, on HAProxy versions that delete one per call.
            _ = try await deleteRemainingEntries(of: zip(removals, answers).filter { $0.1.isEmpty }.map(\.0), definition, connection)
            var refused = Set<MapKey>()
            for (offset, answer) in answers.enumerated() where !answer.isEmpty && answer.text != "Key not found." {
                try Self.checkKnownMap(answer, definition)
                let key = targets[offset]
                guard refused.insert(key).inserted else { continue }
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
}
