import Mapper
import Testing

@testable import Bridge

@Suite("Backoff between attempts to reach HAProxy")
struct BackoffTests {
    /// The product's defaults: 100 ms, doubling to 5 s.
    static func defaults() -> Backoff { Backoff(initialMilliseconds: 100, maxMilliseconds: 5000) }

    @Test("a refused connection is tried again within 250 ms, however long HAProxy has been away")
    func refusedStaysShort() {
        var backoff = Self.defaults()
        for _ in 0..<40 {
            let wait = backoff.next(refused: true)
            #expect(wait >= .milliseconds(100) && wait <= Backoff.refusedCeiling, "\(wait)")
        }
    }

    @Test("failures once connected wait longer and longer, up to the maximum")
    func connectedFailuresBackOff() {
        var backoff = Self.defaults()
        var waits: [Duration] = []
        for _ in 0..<30 { waits.append(backoff.next(refused: false)) }
        #expect(waits.allSatisfy { $0 >= .milliseconds(100) && $0 <= .milliseconds(5000) })
        #expect(waits.prefix(2).allSatisfy { $0 <= .milliseconds(200) })
        // From the 7th on, each wait is drawn from 100 ms-5 s: 24 draws all at or under 250 ms
        // would have a probability below 1e-36.
        #expect(waits.dropFirst(6).contains { $0 > Backoff.refusedCeiling })
    }

    @Test("an operator's initial wait above 250 ms holds for refusals too")
    func initialAboveTheCeiling() {
        var backoff = Backoff(initialMilliseconds: 1000, maxMilliseconds: 60000)
        for _ in 0..<10 { #expect(backoff.next(refused: true) == .milliseconds(1000)) }
    }

    @Test("only a connection that could not be made counts as refused")
    func whatIsRefused() {
        #expect(Backoff.isRefusal(MapperError(.unreachable, "cannot connect")))
        for code in [MapperError.Code.connectFailed, .connectionClosed, .timeout, .protocolViolation, .commandFailed] {
            #expect(!Backoff.isRefusal(MapperError(code, "x")))
        }
        struct Other: Error {}
        #expect(!Backoff.isRefusal(Other()))
    }
}
