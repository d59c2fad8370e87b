import Consumer
import Mapper
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

    func batch(_ sizes: [Int], partition: Int32 = 0) -> Batch {
        var batch = Batch()
        for (index, size) in sizes.enumerated() {
            batch.messages.append(MessageRecord(partition: TopicPartition("t", partition), offset: Int64(index), timestamp: nil, invalid: nil))
            for _ in 0..<size { batch.changes.append(change(0, "k\(index)", "v", message: index)) }
        }
        return batch
    }

    @Test("a backlog batch closes at max_events on message boundaries, keeping every message once, in order")
    func batchLimits() async throws {
        let backlog = Backlog(maxEvents: 1000, maxBytes: 1 << 30)
        backlog.push(batch([1, 1, 3, 1, 5, 1]))
        backlog.push(batch([2, 2]))
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
