import Consumer
import Core
import Foundation
import Kafka
import Logging
import Mapper
import NIOPosix
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Numbers the sources of entries (Kafka partitions) for ``MapContents``, and names them in files
/// as `topic:partition` (`-` for entries no event changed).
final class OwnerTable: Sendable {
    private struct State {
        var partitions: [TopicPartition] = []
        var ids: [TopicPartition: MapContents.Owner] = [:]
    }

    private let state = Mutex(State())

    func id(_ partition: TopicPartition) -> MapContents.Owner {
        state.withLock { state in
            if let id = state.ids[partition] { return id }
            let id = MapContents.Owner(state.partitions.count)
            state.partitions.append(partition)
            state.ids[partition] = id
            return id
        }
    }

    func name(_ id: MapContents.Owner) -> String {
        guard id >= 0 else { return "-" }
        let partition = state.withLock { $0.partitions[Int(id)] }
        return "\(partition.topic):\(partition.partition)"
    }

    /// The id of a stored owner name; nil for a malformed one.
    func id(name: String) -> MapContents.Owner? {
        if name == "-" { return MapContents.unowned }
        guard let colon = name.lastIndex(of: ":"), let partition = Int32(name[name.index(after: colon)...]) else { return nil }
        return id(TopicPartition(String(name[..<colon]), partition))
    }

    static func name(_ partition: TopicPartition) -> String { "\(partition.topic):\(partition.partition)" }

    /// Every id handed out so far, and ``MapContents/unowned``.
    var allIDs: Set<MapContents.Owner> {
        let count = state.withLock { $0.partitions.count }
        return Set((-1..<count).map { MapContents.Owner($0) })
    }
}

/// One map's state to store: its entries as they were (a ``MapContents/Listing``: taking it
/// copies nothing, and the pipeline's changes meanwhile copy only the pages they touch), its
/// tombstones, what to write.
struct MapSnapshot: Sendable {
    var map: Int
    var entries: MapContents.Listing
    var tombstones: [MapKey: MapContents.Owner]

    init(map: Int, entries: MapContents.Listing, tombstones: [MapKey: MapContents.Owner]) {
        self.map = map
        self.entries = entries
        self.tombstones = tombstones
    }

    /// A snapshot of these entries, in order.
    init(map: Int, entries: [MapContents.Entry], tombstones: [MapKey: MapContents.Owner]) {
        self.init(map: map, entries: MapContents(owned: entries).listing, tombstones: tombstones)
    }
}

/// Keeps every map's desired state on disk, durably, before the offsets that produced it are
/// committed: a state file per map in the state directory (entries with their owners, and the
/// offsets they reflect) and, for maps beside HAProxy, the map's own file, which HAProxy loads when
/// it (re)starts. Bridges serving the same HAProxy share the state directory: while they share the
/// maps, each writes only the entries of the partitions it owns, merged under a lock with the
/// others' (see ``MapContents``).
final class StateStore: Sendable {
    let directory: String
    let maps: [BridgeConfiguration.Map]
    let owners: OwnerTable
    let logger: Logger

    /// Whose state this bridge keeps (see ``StateIdentity``).
    let identity: StateIdentity
    /// The open lock file while this bridge holds the directory for itself (``claimExclusively()``).
    private let exclusiveLock = Mutex<Int32?>(nil)
    /// Per map, the seal of its state file when this bridge's memory last held exactly what the
    /// file holds (loaded from it, or stored by the sole writer): a reload of an unchanged file
    /// has nothing to tell this bridge, and is skipped (a million-entry file takes seconds).
    private let knownSeals = Mutex<[Int: String]>([:])

    init(configuration: BridgeConfiguration, owners: OwnerTable, logger: Logger) {
        directory = configuration.groupStateDirectory
        maps = configuration.maps
        identity = StateIdentity(configuration)
        self.owners = owners
        self.logger = logger
    }

    deinit {
        if let fd = exclusiveLock.withLock({ $0 }) { close(fd) }
    }

    var identityPath: String { "\(directory)/identity" }
    /// Whether the directory exists (it is created by ``prepare()``).
    var exists: Bool { FileManager.default.fileExists(atPath: directory) }
    /// Held (flock) for its whole life by a bridge that is the directory's only user.
    var ownerLockPath: String { "\(directory)/.owner" }

    /// Takes the directory for this bridge alone, without waiting: false when another process
    /// holds it. Held until the process ends (or the store is released).
    func claimExclusively() throws -> Bool {
        if exclusiveLock.withLock({ $0 }) != nil { return true }
        let fd = open(ownerLockPath, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o644)
        guard fd >= 0 else { throw MapperError(.stateFile, "cannot open \(ownerLockPath): \(String(cString: strerror(errno)))") }
        if flock(fd, LOCK_EX | LOCK_NB) != 0 {
            close(fd)
            return false
        }
        let pid = Array("\(getpid())\n".utf8)
        _ = ftruncate(fd, 0)
        _ = pid.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) }
        exclusiveLock.withLock { $0 = fd }
        return true
    }

    /// The process id written by the bridge holding the directory, if any.
    var holder: String? {
        (try? String(contentsOfFile: ownerLockPath, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Checks that the directory's state is this bridge's, and records this bridge's identity in
    /// a directory that has none yet. Throws ``ForeignStateError`` when the state belongs to
    /// another group, other topics or another HAProxy map, or is damaged.
    /// With `record` false (for `diff`), nothing is written.
    func checkIdentity(record: Bool = true) throws {
        guard record || exists else { return }
        try StateFiles.withLock(lockPath) {
            let stored: StateIdentity?
            do {
                stored = try StateIdentity.read(path: identityPath)
            } catch {
                throw ForeignStateError(directory: directory, problems: [(error as? MapperError)?.reason ?? "\(error)"])
            }
            guard let stored else {
                let present = (try? FileManager.default.contentsOfDirectory(atPath: directory))?.filter { $0 == "offsets" || $0.hasSuffix(".state") } ?? []
                guard present.isEmpty else {
                    throw ForeignStateError(directory: directory, problems: ["it holds \(present.sorted().joined(separator: ", ")) but no identity file"])
                }
                if record { try StateFiles.writeAtomically(path: identityPath, bytes: identity.file) }
                return
            }
            let differences = stored.differences(from: identity)
            guard differences.isEmpty else { throw ForeignStateError(directory: directory, problems: differences) }
            let merged = stored.merging(identity)
            if record && merged != stored { try StateFiles.writeAtomically(path: identityPath, bytes: merged.file) }
        }
    }

    /// Checks the Kafka cluster the consumer reached against the one the state was built from,
    /// recording it the first time. Throws ``ForeignStateError`` when they differ: the stored
    /// offsets mean nothing in another cluster's logs.
    func verifyCluster(_ reached: String?) throws {
        try StateFiles.withLock(lockPath) {
            guard var stored = try StateIdentity.read(path: identityPath) else { return }
            if let difference = stored.clusterDifference(reached) {
                throw ForeignStateError(directory: directory, problems: [difference])
            }
            if stored.clusterID == nil, let reached {
                stored.clusterID = reached
                try StateFiles.writeAtomically(path: identityPath, bytes: stored.file)
            }
        }
    }

    func statePath(_ map: Int) -> String { "\(directory)/\(maps[map].name).state" }
    var lockPath: String { "\(directory)/.lock" }
    /// Per partition, the next offset to consume: every state file reflects the events before it.
    /// Written after the state files (so never ahead of them) and read when partitions are
    /// assigned: consumption resumes there when the group's commit is further on.
    var offsetsPath: String { "\(directory)/offsets" }

    /// The stored offsets of these partitions (those the file names).
    func storedOffsets(_ partitions: [TopicPartition]) throws -> [TopicPartition: Int64] {
        let stored = try StateFiles.withLock(lockPath) { try StateFiles.readOffsets(path: offsetsPath) } ?? [:]
        var result: [TopicPartition: Int64] = [:]
        for partition in partitions {
            if let offset = stored[OwnerTable.name(partition)] { result[partition] = offset }
        }
        return result
    }

    /// Creates the state directory if needed and checks that every file can be replaced.
    func prepare() throws {
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        } catch {
            throw MapperError(.stateFile, "cannot create the state directory \(directory) (state.directory): \(error.localizedDescription)")
        }
        try StateFiles.checkWritable(path: statePath(0))
        for map in maps where map.writeMapFile {
            do {
                try StateFiles.checkWritable(path: map.path)
            } catch {
                throw MapperError(.stateFile, "\(error.reason); set maps.\(map.name).write_map_file: false when mapbridge does not run beside HAProxy")
            }
        }
        // A bridge killed while storing leaves its temporaries (as large as the files): they go
        // now, under the lock every store holds, so another bridge's store in progress keeps its own.
        try StateFiles.withLock(lockPath) {
            let paths = [identityPath, offsetsPath] + maps.indices.map(statePath) + maps.filter(\.writeMapFile).map(\.path)
            let removed = paths.flatMap { StateFiles.removeStaleTemporaries(beside: $0) }
            if !removed.isEmpty {
                logger.notice("removed temporary files a stopped store left behind", metadata: ["files": "\(removed.sorted())"])
            }
        }
    }

    /// Each map's stored desired state (nil for a map never stored: HAProxy's live map is adopted),
    /// with the offsets it reflects.
    /// A damaged file is a ``ForeignStateError``: never a smaller map.
    func load() throws -> [(contents: MapContents?, offsets: [String: Int64])] {
        guard exists else { return maps.map { _ in (nil, [:]) } }
        do {
            return try StateFiles.withLock(lockPath) {
                _ = try StateFiles.readOffsets(path: offsetsPath)
                return try maps.indices.map { index in
                    guard let stored = try StateFiles.readStateContents(path: statePath(index), owner: owners.id(name:)) else { return (nil, [:]) }
                    // The file's tombstones are not loaded: with any, memory is not the file.
                    remember(stored.tombstones == 0 ? stored.seal : nil, of: index)
                    return (stored.contents, stored.offsets)
                }
            }
        } catch let error as MapperError where error.code == .damagedState {
            throw ForeignStateError(directory: directory, problems: [error.reason])
        }
    }

    /// The stored entries and tombstones of every owner except `keep`, per map: what another bridge
    /// last stored for the partitions this one has just been given (and everything else it does
    /// not own, which the file knows better than this bridge's memory).
    /// Nil for a map whose file is unchanged since this bridge's memory held exactly what it holds.
    func reload(except keep: Set<MapContents.Owner>) throws -> [(entries: [MapContents.Entry], tombstones: [MapKey: MapContents.Owner])?] {
        try StateFiles.withLock(lockPath) {
            try maps.indices.map { index in
                if let known = knownSeals.withLock({ $0[index] }), StateFiles.seal(path: statePath(index)) == known {
                    logger.debug("the stored state is as this bridge last read or wrote it: nothing to reload", metadata: ["map": "\(maps[index].name)"])
                    return nil
                }
                // Once merged into memory, the file's view and this bridge's differ (for what it owns).
                remember(nil, of: index)
                guard let stored = try StateFiles.readState(path: statePath(index)) else { return nil }
                let entries = try entries(stored, index).filter { !keep.contains($0.owner) }
                var tombstones: [MapKey: MapContents.Owner] = [:]
                for (owner, key) in stored.tombstones {
                    guard let id = owners.id(name: owner), !keep.contains(id) else { continue }
                    tombstones[MapKey(key)] = id
                }
                return (entries, tombstones)
            }
        }
    }

    private func remember(_ seal: String?, of map: Int) {
        knownSeals.withLock { $0[map] = seal }
    }

    private func entries(_ stored: StoredMap, _ index: Int) throws -> [MapContents.Entry] {
        // One look-up per distinct owner (a file holds a few dozen), not one parse and lock per entry.
        var ids: [String: MapContents.Owner] = [:]
        return try stored.entries.map { entry in
            if let id = ids[entry.owner] { return MapContents.Entry(key: MapKey(entry.key), value: entry.value, owner: id) }
            guard let id = owners.id(name: entry.owner) else {
                throw MapperError(.stateFile, "\(statePath(index)): unknown owner '\(entry.owner)'")
            }
            ids[entry.owner] = id
            return MapContents.Entry(key: MapKey(entry.key), value: entry.value, owner: id)
        }
    }

    /// How many bytes of a map's files are built before they are written out.
    static let writeBuffer = 1 << 20

    /// Stores the snapshots durably. `owned` is nil when this bridge is the maps' only writer
    /// (its view replaces the files); otherwise the sources it writes, merged with the files.
    /// `offsets` are the committable offsets the snapshots reflect.
    func store(_ snapshots: [MapSnapshot], offsets: [TopicPartition: Int64], owned: Set<MapContents.Owner>?) throws {
        let offsetNames = Dictionary(uniqueKeysWithValues: offsets.map { (OwnerTable.name($0.key), $0.value) })
        try StateFiles.withLock(lockPath) {
            for snapshot in snapshots {
                let map = maps[snapshot.map]
                let mapHeader = { (offsets: [String: Int64]) -> [String]? in
                    guard map.writeMapFile else { return nil }
                    return [
                        "Managed by mapbridge: this file is rewritten from the events; change the map through them.",
                        "offsets \(describeOffsets(offsets))",
                    ]
                }
                let title = "\(map.definition.described) (\(map.path))"
                // Streamed: the files are written a megabyte at a time as they are built, so a map
                // of millions of entries is never held in memory as bytes too.
                let stateFile = try StateFiles.AtomicFile(path: statePath(snapshot.map))
                let mapFile = map.writeMapFile ? try StateFiles.AtomicFile(path: map.path) : nil
                var files: StateFiles.Builder
                func drainIfFull() throws {
                    guard files.isFull else { return }
                    let (state, mapBytes) = files.takeBuffered()
                    try stateFile.write(state)
                    if let mapBytes { try mapFile?.write(mapBytes) }
                }
                if let owned {
                    // Shared: keep what the file holds for others, replace what this bridge owns.
                    var stored = StoredMap()
                    let previous = try StateFiles.readState(path: statePath(snapshot.map)) ?? StoredMap()
                    let ownedNames = Set(owned.map(owners.name))
                    // Keys byte for byte (MapKey), as HAProxy compares them: a Set<String> would
                    // take two spellings of "café" for one key and drop one of them.
                    let entries = snapshot.entries.ownedEntries()
                    var mine = Set<MapKey>()
                    for entry in entries where owned.contains(entry.owner) { mine.insert(entry.key) }
                    for (key, owner) in snapshot.tombstones where owned.contains(owner) { mine.insert(key) }
                    stored.entries = previous.entries.filter { !ownedNames.contains($0.owner) && !mine.contains(MapKey($0.key)) }
                    stored.tombstones = previous.tombstones.filter { !ownedNames.contains($0.owner) && !mine.contains(MapKey($0.key)) }
                    stored.offsets = previous.offsets.filter { !ownedNames.contains($0.key) }
                    for entry in entries where owned.contains(entry.owner) {
                        stored.entries.append(.init(owner: owners.name(entry.owner), key: entry.key.string, value: entry.value))
                    }
                    for (key, owner) in snapshot.tombstones where owned.contains(owner) {
                        stored.tombstones.append((owners.name(owner), key.string))
                    }
                    for (name, offset) in offsetNames where ownedNames.contains(name) { stored.offsets[name] = offset }
                    files = StateFiles.Builder(
                        title: title, offsets: stored.offsets, mapHeader: mapHeader(stored.offsets), capacity: stored.entries.count, kind: map.kind,
                        bufferLimit: Self.writeBuffer)
                    for entry in stored.entries {
                        files.append(owner: entry.owner, key: entry.key, value: entry.value)
                        try drainIfFull()
                    }
                    for tombstone in stored.tombstones {
                        files.appendTombstone(owner: tombstone.owner, key: tombstone.key)
                        try drainIfFull()
                    }
                } else {
                    // The only writer: this bridge's view is the file, written straight from it.
                    files = StateFiles.Builder(
                        title: title, offsets: offsetNames, mapHeader: mapHeader(offsetNames), capacity: snapshot.entries.count, kind: map.kind,
                        bufferLimit: Self.writeBuffer)
                    // Straight from the contents' bytes (no String per entry), with one name per
                    // owner (a partition), not one lock and one interpolation per entry.
                    // Owners are small numbers (unowned is -1): their names sit at owner + 1,
                    // not in a dictionary hashed once per entry.
                    var names: [[UInt8]?] = []
                    try snapshot.entries.forEachEntryBytes { key, value, owner in
                        let slot = Int(owner) + 1
                        if slot >= names.count { names.append(contentsOf: repeatElement(nil, count: slot + 1 - names.count)) }
                        if names[slot] == nil { names[slot] = Array(owners.name(owner).utf8) }
                        names[slot]!.withUnsafeBufferPointer { files.append(owner: $0, key: key, value: value) }
                        try drainIfFull()
                    }
                }
                let (stateBytes, mapBytes) = files.finish()
                try stateFile.write(stateBytes)
                if let mapBytes { try mapFile?.write(mapBytes) }
                // Memory and file agree only when this bridge's view replaced the file whole.
                remember(nil, of: snapshot.map)
                try stateFile.commit()
                if owned == nil { remember(StateFiles.seal(of: stateBytes), of: snapshot.map) }
                try mapFile?.commit()
            }
            // Last: the offsets the files now reflect, for the partitions this bridge writes (every
            // one it tracks, when it is the only writer); the others' stay as they were.
            var stored = try StateFiles.readOffsets(path: offsetsPath) ?? [:]
            let writable = owned.map { Set($0.map(owners.name)) }
            for (name, offset) in offsetNames where writable?.contains(name) ?? true { stored[name] = offset }
            try StateFiles.writeAtomically(path: offsetsPath, bytes: StateFiles.offsetsFile(stored))
        }
    }
}

extension StateStore {
    // The store's API for async callers: every file operation (reads, fsync, locks) runs on
    // NIO's blocking-I/O pool, never on the Swift concurrency pool. The synchronous forms above
    // are for threads of their own (the consumer's polling thread) and tests.

    /// Creates the directory when missing, checks that the state in it is this bridge's and
    /// records the identity; read-only (nothing created or recorded) for inspections.
    func openDirectory(readOnly: Bool = false) async throws {
        try await offload {
            if !readOnly { try self.prepare() }
            try self.checkIdentity(record: !readOnly)
        }
    }

    func claimExclusively() async throws -> Bool { try await offload { try self.claimExclusively() } }

    func load() async throws -> [(contents: MapContents?, offsets: [String: Int64])] { try await offload { try self.load() } }

    func reload(except keep: Set<MapContents.Owner>) async throws -> [(entries: [MapContents.Entry], tombstones: [MapKey: MapContents.Owner])?] {
        try await offload { try self.reload(except: keep) }
    }

    func store(_ snapshots: [MapSnapshot], offsets: [TopicPartition: Int64], owned: Set<MapContents.Owner>?) async throws {
        try await offload { try self.store(snapshots, offsets: offsets, owned: owned) }
    }

    private func offload<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await NIOThreadPool.singleton.runIfActive(body)
    }
}
