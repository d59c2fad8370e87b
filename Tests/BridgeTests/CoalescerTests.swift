import Consumer
import Core
import Foundation
import Kafka
import Mapper
import Synchronization
import TestSupport
import Testing

@testable import Bridge

@Suite("Coalescing and batching")
struct CoalescerTests {
    func change(_ map: Int, _ key: String, _ value: String?, message: Int = 0) -> PendingChange {
        PendingChange(map: map, key: MapKey(key), value: value, message: message)
    }

    @Test("the last change of each (map, key) wins, in offset order; maps stay apart")
    func lastWins() {
        let changes = [change(0, "a", "1"), change(0, "b", "1"), change(1, "a", "x"), change(0, "a", "2"), change(0, "b", nil), change(1, "a", "y")]
        let result = Coalescer.coalesce(changes, mapCount: 2)
        #expect(result[0].map(\.key.string) == ["a", "b"])
        #expect(result[0].map(\.value) == ["2", nil])
        #expect(result[0].map(\.tag) == [3, 4])
        #expect(result[1] == [KeyChange(key: MapKey("a"), value: "y", deletedFirst: false, tag: 5)])
    }

    @Test("new keys keep their entering order; delete then set re-enters a key at the end")
    func enteringOrder() {
        let changes = [change(0, "a", "1"), change(0, "b", "1"), change(0, "a", nil), change(0, "c", "1"), change(0, "a", "3"), change(0, "b", "2")]
        let result = Coalescer.coalesce(changes, mapCount: 1)[0]
        #expect(result.map(\.key.string) == ["b", "c", "a"])
        #expect(result.first { $0.key.string == "a" }?.deletedFirst == true)
        #expect(result.first { $0.key.string == "b" }?.deletedFirst == false)
    }

    @Test("a batch's last offset per partition, over runs and interleavings of partitions and topics", arguments: 0..<10)
    func lastOffsets(seed: Int) {
        var random = SplitMix(seed: UInt64(seed))
        // Two topics with a partition number in common: runs must not merge across topics.
        let partitions = [TopicPartition("a", 0), TopicPartition("a", 1), TopicPartition("b", 0), TopicPartition("a-longer-topic-name-on-the-heap", 0)]
        var batch = Batch()
        var expected: [TopicPartition: Int64] = [:]
        var next = Dictionary(uniqueKeysWithValues: partitions.map { ($0, Int64.random(in: 0..<1000, using: &random)) })
        for _ in 0..<Int.random(in: 0..<200, using: &random) {
            let partition = partitions[Int.random(in: 0..<partitions.count, using: &random)]
            for _ in 0..<Int.random(in: 1..<6, using: &random) {
                // Offsets rise within a partition, by gaps (compacted topics, transaction markers).
                let offset = next[partition]!
                next[partition] = offset + Int64.random(in: 1..<4, using: &random)
                batch.messages.append(MessageRecord(partition: partition, offset: offset, timestamp: nil, invalid: nil))
                expected[partition] = max(expected[partition] ?? .min, offset)
            }
        }
        #expect(batch.lastOffsets == expected)
    }

    func batch(_ sizes: [Int], partition: Int32 = 0, keys: String = "k") -> Batch {
        var batch = Batch()
        for (index, size) in sizes.enumerated() {
            batch.messages.append(MessageRecord(partition: TopicPartition("t", partition), offset: Int64(index), timestamp: nil, invalid: nil))
            for position in 0..<size { batch.changes.append(change(0, "\(keys)\(index)-\(position)", "v", message: index)) }
            batch.messages[index].changeCount = Int32(size)
        }
        return batch
    }

    @Test("a backlog batch closes at max_events on message boundaries, keeping every message once, in order")
    func batchLimits() async throws {
        let backlog = Backlog(maxEvents: 1000, maxBytes: 1 << 30)
        backlog.push(batch([1, 1, 3, 1, 5, 1]))
        backlog.push(batch([2, 2], keys: "other"))
        var taken: [[Int64]] = []
        var counts: [Int] = []
        while let item = try await backlog.next(maxEvents: 4, maxWait: .zero, idleDeadline: .now), case .batch(let batch) = item {
            taken.append(batch.messages.map(\.offset))
            counts.append(batch.events)
            #expect(batch.changes.allSatisfy { $0.message < batch.messages.count })
        }
        #expect(counts == [2, 4, 5, 3, 2], "\(taken)")  // 1+1 | 3+1 | 5 alone | 1 + 2 | 2
        #expect(taken.flatMap { $0 } == [0, 1, 2, 3, 4, 5, 0, 1])
    }

    @Test("a chunk taken a batch at a time gives up what each batch took, and a revoke in between drops only the rest of its partition")
    func partlyTakenChunk() async throws {
        let backlog = Backlog(maxEvents: 1000, maxBytes: 1 << 30)
        // One chunk: partitions 0 and 1 alternate, each message with one change, every fourth
        // message invalid (a dead letter to be, which counts as an event).
        var chunk = Batch()
        weak var firstInvalid: InvalidEvent?
        for index in 0..<12 {
            let invalid = index % 4 == 0 ? InvalidEvent(label: "m\(index)", reason: "bad", key: nil, value: nil, headers: []) : nil
            if index == 0 { firstInvalid = invalid }
            chunk.messages.append(
                MessageRecord(partition: TopicPartition("t", Int32(index % 2)), offset: Int64(index / 2), timestamp: nil, invalid: invalid, changeCount: 1))
            chunk.changes.append(change(0, "k\(index)", "v\(index)", message: index))
            if invalid != nil { chunk.invalidCount += 1 }
        }
        chunk.bytes = 1200
        backlog.push(chunk)
        chunk = Batch()
        #expect(backlog.size.events == 15 && backlog.size.bytes > 0)
        func take(_ limit: Int) async throws -> Batch {
            guard case .batch(let batch)? = try await backlog.next(maxEvents: limit, maxWait: .zero, idleDeadline: nil) else {
                Issue.record("a batch is due")
                return Batch()
            }
            #expect(batch.changes.allSatisfy { $0.message < batch.messages.count && $0.source < batch.messages.count })
            #expect(batch.changes.allSatisfy { batch.messages[$0.message].offset == Int64(Int($0.key.string.dropFirst())! / 2) })
            return batch
        }
        // Messages 0-2: four events (message 0 is invalid).
        var first: Batch? = try await take(4)
        #expect(first?.messages.map(\.offset) == [0, 0, 1] && first?.events == 4 && first?.invalidCount == 1)
        #expect(backlog.size.events == 11)
        first = nil
        #expect(firstInvalid == nil, "the backlog still held a message the batch took")
        // Messages 3-4, then partition 1 is revoked: its messages 5, 7, 9 and 11 go.
        let second = try await take(3)
        #expect(second.changes.map(\.key.string) == ["k3", "k4"] && second.events == 3)
        backlog.remove(partitions: [TopicPartition("t", 1)])
        #expect(backlog.size.events == 4)  // k6, k8 (invalid) and k10
        let rest = try await take(100)
        #expect(rest.changes.map(\.key.string) == ["k6", "k8", "k10"] && rest.events == 4)
        #expect(rest.messages.allSatisfy { $0.partition.partition == 0 })
        #expect(backlog.size.events == 0 && backlog.size.bytes == 0)
    }

    @Test(
        "changes compacted in the backlog, taken in batches of any size, leave a list-matched map as the events one by one do; every message stays, in order",
        arguments: 0..<200)
    func compactionMatchesEventOrder(seed: Int) async throws {
        var random = SplitMix(seed: UInt64(seed))
        let backlog = Backlog(maxEvents: 1 << 30, maxBytes: 1 << 40)
        var expected = ListMap()
        var applied = ListMap()
        var offsets: [TopicPartition: [Int64]] = [:]
        var taken: [TopicPartition: [Int64]] = [:]
        var totalChanges = 0
        var takenChanges = 0
        let limit = Int(random.next() % 12) + 1
        func drain(_ maxEvents: Int) async throws {
            while let item = try await backlog.next(maxEvents: maxEvents, maxWait: .zero, idleDeadline: .now), case .batch(let batch) = item {
                for message in batch.messages { taken[message.partition, default: []].append(message.offset) }
                #expect(batch.changes.allSatisfy { $0.message < batch.messages.count && $0.source < batch.messages.count })
                #expect(batch.changes.allSatisfy { batch.messages[$0.message].partition == batch.messages[$0.source].partition })
                takenChanges += batch.changeEvents
                if batch.keysDistinct {
                    // The pipeline then skips the coalescer's hashing: the claim must hold.
                    let keys = batch.changes.map { "\($0.map) \($0.key.string)" }
                    #expect(Set(keys).count == keys.count, "seed \(seed): a batch said distinct repeats a key")
                }
                // As the pipeline reduces it.
                for change in batch.coalesced(mapCount: 1)[0] { applied.apply(change) }
            }
        }
        for _ in 0..<Int(random.next() % 40 + 1) {
            var chunk = Batch()
            for _ in 0..<Int(random.next() % 8 + 1) {
                // Few keys, so that they repeat; some keys reach two partitions.
                let partition = TopicPartition("t", Int32(random.next() % 2))
                let offset = Int64(offsets[partition]?.count ?? 0)
                offsets[partition, default: []].append(offset)
                let count = Int(random.next() % 3)
                chunk.messages.append(MessageRecord(partition: partition, offset: offset, timestamp: nil, invalid: nil, changeCount: Int32(count)))
                for _ in 0..<count {
                    let key = "k\(random.next() % 5)"
                    let value: String? = random.next() % 3 == 0 ? nil : "v\(random.next() % 4)"
                    expected.apply(key, value)
                    chunk.changes.append(change(0, key, value, message: chunk.messages.count - 1))
                    totalChanges += 1
                }
            }
            backlog.push(chunk)
            if random.next() % 3 == 0 { try await drain(limit) }
        }
        try await drain(random.next() % 2 == 0 ? limit : 1 << 30)
        #expect(applied == expected, "seed \(seed)")
        #expect(taken == offsets)
        #expect(takenChanges == totalChanges)
    }

    @Test("a batch is marked distinct only when no two of its changes share a key, and then reduces as the coalescer does")
    func distinctKeys() async throws {
        let backlog = Backlog(maxEvents: 1 << 20, maxBytes: 1 << 30)
        var offset: Int64 = 0
        func chunk(_ changes: [(key: String, value: String?, partition: Int32)]) -> Batch {
            var chunk = Batch()
            for change in changes {
                chunk.messages.append(
                    MessageRecord(partition: TopicPartition("t", change.partition), offset: offset, timestamp: nil, invalid: nil, changeCount: 1))
                chunk.changes.append(self.change(0, change.key, change.value, message: chunk.messages.count - 1))
                offset += 1
            }
            return chunk
        }
        func take(_ limit: Int = 1 << 20) async throws -> Batch {
            guard case .batch(let batch)? = try await backlog.next(maxEvents: limit, maxWait: .zero, idleDeadline: nil) else {
                Issue.record("a batch is due")
                return Batch()
            }
            #expect(batch.coalesced(mapCount: 1) == Coalescer.coalesce(batch.changes, mapCount: 1))
            return batch
        }
        // New keys, and a key set twice (the second replaces the first in place): distinct.
        backlog.push(chunk([("a", "1", 0), ("b", "1", 0), ("a", "2", 0), ("c", nil, 0)]))
        var batch = try await take()
        #expect(batch.keysDistinct && batch.changes.map(\.key.string) == ["a", "b", "c"])
        // A set after a delete stays two changes (the key moves to the end): not distinct.
        backlog.push(chunk([("a", nil, 0), ("b", "1", 0), ("a", "3", 0)]))
        batch = try await take()
        #expect(!batch.keysDistinct && batch.changes.count == 3)
        #expect(batch.coalesced(mapCount: 1)[0].map(\.key.string) == ["b", "a"])
        // One key from two partitions: both changes kept.
        backlog.push(chunk([("a", "1", 0), ("a", "2", 1)]))
        batch = try await take()
        #expect(!batch.keysDistinct && batch.changes.count == 2)
        // A batch limit splits a distinct chunk: both parts stay distinct...
        backlog.push(chunk([("a", "1", 0), ("b", "1", 0), ("c", "1", 0)]))
        batch = try await take(2)
        #expect(batch.keysDistinct && batch.changes.map(\.key.string) == ["a", "b"])
        // ...but what is left of it, taken with what arrived since, may repeat a key.
        backlog.push(chunk([("c", "2", 0)]))
        batch = try await take()
        #expect(!batch.keysDistinct && batch.changes.map(\.value) == ["1", "2"])
        #expect(batch.coalesced(mapCount: 1)[0].map(\.value) == ["2"])
        // Built other than by the backlog's compaction: never claimed distinct.
        #expect(!chunk([("x", "1", 0)]).keysDistinct)
    }

    @Test("a busy key costs the backlog one pending change, not one per event")
    func compactionBoundsMemory() async throws {
        let backlog = Backlog(maxEvents: 1000, maxBytes: 1 << 30)
        for round in 0..<100 {
            var chunk = Batch()
            chunk.messages.append(MessageRecord(partition: TopicPartition("t", 0), offset: Int64(round), timestamp: nil, invalid: nil, changeCount: 1))
            chunk.changes.append(change(0, "busy.example.com", "v\(round)", message: 0))
            #expect(!backlog.push(chunk), "never full: one distinct change")
        }
        #expect(backlog.size.events == 1)
        guard case .batch(let batch)? = try await backlog.next(maxEvents: 10, maxWait: .zero, idleDeadline: nil) else {
            Issue.record("a batch is due")
            return
        }
        #expect(batch.messages.count == 100 && batch.changes.count == 1 && batch.changeEvents == 100)
        #expect(batch.changes[0].value == "v99" && batch.changes[0].source == 99 && batch.changes[0].message == 0)
    }

    @Test("pause and resume reach the consumer in the order the backlog decided them, however the pipeline races the intake")
    func pauseResumeOrder() async throws {
        let backlog = Backlog(maxEvents: 8, maxBytes: 1 << 30)
        // What the consumer carried out, in order, and the resumes queued for it (as the real
        // consumer does, the polling thread pauses itself and runs queued commands between bursts).
        let commands = Mutex<[String]>([])
        let queued = Mutex<[String]>([])
        let stuck = Mutex(false)
        let rounds = 2000
        let intake = Thread {
            let runQueued = {
                let pending = queued.withLock { queue in
                    defer { queue.removeAll() }
                    return queue
                }
                commands.withLock { $0 += pending }
            }
            // A consumer: while paused it delivers nothing; each burst fills the backlog.
            for round in 0..<rounds {
                // A consumer left paused stays paused for ever; the bound only ends the test. It is
                // generous: in a full test run the pipeline's task can wait seconds for a thread
                // of the concurrency pool (5 s failed that way, with nothing stuck).
                let deadline = Date().addingTimeInterval(60)
                runQueued()
                while commands.withLock({ $0.last == "pause" }) {
                    guard Date() < deadline else {
                        stuck.withLock { $0 = true }
                        backlog.close()
                        return
                    }
                    usleep(50)
                    runQueued()
                }
                var chunk = self.batch([8], keys: "r\(round)-")
                chunk.arrival = .now
                if backlog.push(chunk) { commands.withLock { $0.append("pause") } }
            }
            backlog.close()
        }
        intake.start()
        // The pipeline: takes a batch as soon as one is there, and resumes right after taking it.
        while let item = try await backlog.next(maxEvents: 8, maxWait: .zero, idleDeadline: nil) {
            guard case .batch = item else { continue }
            _ = backlog.takeResume { queued.withLock { $0.append("resume") } }
        }
        commands.withLock { $0 += queued.withLock { $0 } }
        let sent = commands.withLock { $0 }
        #expect(!stuck.withLock { $0 }, "the consumer stayed paused with the backlog drained")
        #expect(sent.count >= rounds, "the backlog filled and drained at every burst")
        #expect(zip(sent, sent.dropFirst()).allSatisfy { $0 != $1 }, "pause and resume alternate")
    }

    @Test("a batch waits max_wait for more events, unless max_events is reached first")
    func waitsForMore() async throws {
        let backlog = Backlog(maxEvents: 1000, maxBytes: 1 << 30)
        backlog.push(batch([1]))
        let early = try await backlog.next(maxEvents: 100, maxWait: .seconds(60), idleDeadline: .now + .milliseconds(50))
        guard case .idle? = early else {
            Issue.record("a lone event waits for max_wait (\(String(describing: early)))")
            return
        }
        backlog.push(batch([120]))
        guard case .batch(let full)? = try await backlog.next(maxEvents: 100, maxWait: .seconds(60), idleDeadline: nil) else {
            Issue.record("reaching max_events closes the batch at once")
            return
        }
        #expect(full.events == 1, "the big message does not fit with the first one")
    }

    @Test("the backlog asks to pause when full and to resume below half; revoked partitions' messages are dropped")
    func bounds() async throws {
        let backlog = Backlog(maxEvents: 10, maxBytes: 1 << 30)
        #expect(!backlog.push(batch([4])))
        #expect(backlog.push(batch([4, 4], partition: 1)))
        #expect(!backlog.takeResume())
        backlog.remove(partitions: [TopicPartition("t", 1)])
        #expect(backlog.size.events == 4)
        #expect(backlog.takeResume())
        #expect(!backlog.takeResume())
        let request = RevokeRequest(partitions: [TopicPartition("t", 0)], lost: false)
        #expect(backlog.push(request))
        guard case .revoke? = try await backlog.next(maxEvents: 100, maxWait: .zero, idleDeadline: nil) else {
            Issue.record("a revoke goes before any batch")
            return
        }
        backlog.close()
        #expect(try await backlog.next(maxEvents: 100, maxWait: .zero, idleDeadline: nil) == nil)
        #expect(!backlog.push(request))
    }
}

extension ListMap {
    /// A coalesced change as the applier sends it to a list-matched map.
    mutating func apply(_ change: KeyChange) {
        if change.deletedFirst { apply(change.key.string, nil) }
        apply(change.key.string, change.value)
    }
}
