import Testing

@testable import Core

@Suite("Apply cost model")
struct ApplyCostModelTests {
    @Test("timings refine the model; a restart of the same version keeps them, another version starts from its own figures")
    func carriedOver() {
        var old = ApplyCostModel(linearSetDelete: true)
        // 100 sets on a 100,000-entry map in 0.5 s: far dearer than the starting figures.
        old.observeUpdates(100, mapSize: 100_000, seconds: 0.5)
        old.observePayload(10_000, seconds: 0.05)
        #expect(old.perScannedEntry > ApplyCostModel(linearSetDelete: true).perScannedEntry)
        let restarted = old.carriedOver(to: ApplyCostModel(linearSetDelete: true), sameVersion: true)
        #expect(restarted == old)
        var tree = ApplyCostModel(linearSetDelete: false)
        tree.perCommand = 3.2e-6
        let upgraded = old.carriedOver(to: tree, sameVersion: false)
        #expect(upgraded.perCommand == tree.perCommand && upgraded.perScannedEntry == tree.perScannedEntry)
        #expect(upgraded.perPayloadEntry == old.perPayloadEntry, "payload adds cost alike on every version")
        #expect(!upgraded.linearSetDelete)
    }
}
