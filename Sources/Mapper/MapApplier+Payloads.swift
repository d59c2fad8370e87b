import Core
import Logging
import NIOCore

/// Payload adds and atomic rebuilds, and finding the line HAProxy refused in a payload.
extension MapApplier {
    /// Payload adds HAProxy refused: each key goes back to its value before the batch. Returns the
    /// entries to add again: keys whose earlier value HAProxy no longer holds (a list-matched key
    /// deleted to move it to the end, or an entry of a rebuilt version).
    func refuseAdds(_ index: Int, _ rejections: [Rejection]) -> [(key: MapKey, value: String)] {
        rejections.compactMap { rejection in
            maps[index].desired.refuse(rejection.key, wasAdd: true).map { (rejection.key, $0) }
        }
    }

    /// Replaces the map's live contents with the desired ones atomically: `prepare map`, payload
    /// `add map @V`, `commit map @V`. An entry HAProxy refuses goes back to its value before the
    /// batch (added to the new version in its place), or is dropped when it had none.
    func rebuild(_ index: Int, _ connection: RuntimeConnection) async throws -> (rejections: [Rejection], commands: Int) {
        let definition = maps[index].definition
        let prepared = try await connection.execute(RuntimeCommand.prepare(definition.path, kind: definition.kind))
        try Self.checkKnownMap(prepared, definition)
        guard prepared.text.hasPrefix("New version created: "), let version = Int(prepared.text.dropFirst("New version created: ".count)) else {
            throw MapperError(
                .protocolViolation, "unexpected answer to 'prepare \(definition.kind.rawValue) \(definition.path)': '\(prepared.text.prefix(200))'")
        }
        // A part at a time (``ApplierOptions/payloadRound``), from a listing of the contents as
        // they are now (it shares their pages: a change meanwhile copies only what it touches),
        // so a map of millions of entries is never listed whole.
        let listing = maps[index].desired.contents.listing
        var result: (rejections: [Rejection], commands: Int) = ([], 0)
        var position: UInt64 = 0
        while position < listing.sequenceBound {
            let part = listing.entries(from: position, limit: max(1, options.payloadRound))
            position = part.next
            let sent = try await addEntries(index, connection, part.entries, version: version)
            result.rejections += sent.rejections
            result.commands += sent.commands
        }
        let restores = refuseAdds(index, result.rejections)
        if !restores.isEmpty {
            let restored = try await addEntries(index, connection, restores, version: version)
            result.commands += restored.commands
            if let refused = restored.rejections.first {
                throw MapperError(.protocolViolation, "HAProxy refused to restore '\(refused.key)' in map \(definition.name): \(refused.reason)")
            }
        }
        let committed = try await connection.execute(RuntimeCommand.commit(definition.path, version: version, kind: definition.kind))
        guard committed.isEmpty else {
            throw MapperError(
                .protocolViolation, "HAProxy refused 'commit \(definition.kind.rawValue) @\(version) \(definition.path)': '\(committed.text.prefix(200))'")
        }
        return (result.rejections, result.commands + 2)
    }

    /// Adds entries with payload commands, one in flight at a time (to the map, or to one of its
    /// versions). A payload stops at its first line HAProxy refuses and keeps the lines before:
    /// which line it was is read back from the map (the chunk's keys HAProxy now holds are exactly
    /// the lines before it), the refusal is reported, and the rest is sent again.
    func addEntries(
        _ index: Int, _ connection: RuntimeConnection, _ entries: [(key: MapKey, value: String)], version: Int?
    ) async throws -> (rejections: [Rejection], commands: Int) {
        guard !entries.isEmpty else { return ([], 0) }
        let definition = maps[index].definition
        if definition.kind == .acl { return try await addPatterns(index, connection, entries.map(\.key), version: version) }
        var rejections: [Rejection] = []
        var commands = 0
        var start = 0
        // Separate sessions until one of them gets an answer other than success: the interactive
        // session, which every other command goes through, then decides (see below).
        var separateSessions = options.payloadSessions
        while start < entries.count {
            // One round at a time (``ApplierOptions/payloadRound``); a refusal starts the next
            // round just after the refused line.
            let end = min(entries.count, start + max(1, options.payloadRound))
            var chunker = PayloadChunker(map: definition.path, version: version, budget: options.payloadBudget)
            for entry in entries[start..<end] { chunker.append(key: entry.key.string, value: entry.value) }
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
            guard let failed = answers.firstIndex(where: { !$0.isEmpty }) else {
                start = end
                continue
            }
            let answer = answers[failed]
            if !viaSeparateSessions { try Self.checkKnownMap(answer, definition) }
            let chunk = chunks[failed]
            let dump = try await connection.execute(RuntimeCommand.showMap(definition.path, version: version, kind: definition.kind))
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

    /// Adds an ACL's patterns, one pipelined `add acl` each (HAProxy takes no payload for ACLs):
    /// each answer tells whether its pattern was taken, so a refused one is known at once and the
    /// others are not held back.
    func addPatterns(
        _ index: Int, _ connection: RuntimeConnection, _ patterns: [MapKey], version: Int?
    ) async throws -> (rejections: [Rejection], commands: Int) {
        let definition = maps[index].definition
        var rejections: [Rejection] = []
        var commands = 0
        // In slices, so that a rebuild of millions of patterns never holds all its commands at once.
        for start in stride(from: 0, to: patterns.count, by: 8192) {
            let slice = patterns[start..<min(start + 8192, patterns.count)]
            let answers = try await connection.execute(slice.map { RuntimeCommand.addPattern(definition.path, pattern: $0.string, version: version) })
            commands += answers.count
            for (pattern, answer) in zip(slice, answers) where !answer.isEmpty {
                try Self.checkKnownMap(answer, definition)
                rejections.append(Rejection(map: index, key: pattern, tag: maps[index].desired.tag(of: pattern), reason: answer.text))
            }
        }
        return (rejections, commands)
    }
}
