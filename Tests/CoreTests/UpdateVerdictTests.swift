import Core
import Testing

@Suite("What HAProxy's answers to set and del mean")
struct UpdateVerdictTests {
    func set(_ key: String, _ value: String, change: Int = 0) -> MapPlan.Update { .init(change: change, key: MapKey(key), value: value, tag: change) }
    func del(_ key: String, change: Int = 0) -> MapPlan.Update { .init(change: change, key: MapKey(key), value: nil, tag: change) }

    @Test("each answer sorts its update: refused, missing (set of a key HAProxy lacked), deleted, silent set, or done")
    func sorting() {
        let updates = [
            set("a", "1", change: 0), del("b", change: 1), del("c", change: 2), set("d", "4", change: 3), set("e", "5", change: 4),
            del("f", change: 5), set("g", "x", change: 6),
        ]
        let answers = ["", "", "Key not found.", "entry not found.", "'5' is not a valid IPv4 or IPv6 address.", "entry not found.", "unable to parse 'x'"]
        let verdict = UpdateVerdict(updates: updates, answers: answers)
        #expect(verdict.silentSets == [set("a", "1", change: 0)])
        #expect(verdict.deleted == [MapKey("b")], "a del answered 'Key not found.' needs nothing more")
        #expect(verdict.missing == [set("d", "4", change: 3)])
        #expect(
            verdict.refused == [
                .init(update: set("e", "5", change: 4), reason: "'5' is not a valid IPv4 or IPv6 address."),
                // 'entry not found.' to a del is not the answer a del gets: refused, the key left as it was.
                .init(update: del("f", change: 5), reason: "entry not found."),
                .init(update: set("g", "x", change: 6), reason: "unable to parse 'x'"),
            ])
    }

    @Test("whatever the answers, every update is judged at most once, in order")
    func partition() {
        let texts = ["", "Key not found.", "entry not found.", "refused"]
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<200 {
            let updates = (0..<Int.random(in: 0..<20, using: &generator)).map { index in
                Bool.random(using: &generator) ? set("k\(index)", "v", change: index) : del("k\(index)", change: index)
            }
            let answers = updates.map { _ in texts.randomElement(using: &generator)! }
            let verdict = UpdateVerdict(updates: updates, answers: answers)
            let judged = verdict.refused.map(\.update.change) + verdict.missing.map(\.change) + verdict.silentSets.map(\.change)
            let deleted = Set(verdict.deleted)
            #expect(Set(judged).count == judged.count)
            #expect(judged.allSatisfy { !deleted.contains(MapKey("k\($0)")) })
            let done = zip(updates, answers).filter { $0.0.value == nil && $0.1 == "Key not found." }.count
            #expect(judged.count + deleted.count + done == updates.count)
            #expect(verdict.refused.map(\.update.change) == verdict.refused.map(\.update.change).sorted())
        }
    }

    @Test("a silent set is confirmed only when HAProxy's first entry for the key holds its value")
    func confirmation() {
        let silent = [set("a", "10.0.0.1"), set("b", "10.0.0.2"), set("c", "10.0.0.3")]
        let live = [MapKey("a"): "10.0.0.1", MapKey("b"): "10.9.9.9"]
        #expect(UpdateVerdict.unconfirmed(silent, live: live) == [set("b", "10.0.0.2"), set("c", "10.0.0.3")])
    }
}
