import Foundation
import TestSupport
import Testing

@testable import Bridge

@Suite("The benchmark's CPU time per process")
struct ProcessCPUTests {
    @Test("a process's CPU time counts the work of every thread, and is nil once the process is gone")
    func cpuSeconds() throws {
        let pid = getpid()
        let before = try #require(processCPUSeconds(pid: pid))
        // Work on another thread until the process's total has risen by a tenth of a second (the
        // kernel counts in ticks of 10 ms); a reading that missed that thread's time never rises.
        let done = DoneFlag()
        let worker = Thread {
            var x: UInt64 = 1
            while !done.isSet { for _ in 0..<100_000 { x = x &* 6_364_136_223_846_793_005 &+ 1 } }
            blackHole(x)
        }
        worker.start()
        defer { done.set() }
        let deadline = Date().addingTimeInterval(30)
        var now = before
        while now < before + 0.1 && Date() < deadline {
            usleep(10_000)
            now = processCPUSeconds(pid: pid) ?? now
        }
        #expect(now >= before + 0.1, "CPU time went from \(before) s to \(now) s")

        // A child that has exited and been reaped has no /proc entry left.
        let child = Process()
        child.executableURL = URL(fileURLWithPath: "/bin/true")
        try child.run()
        child.waitUntilExit()
        #expect(processCPUSeconds(pid: child.processIdentifier) == nil)
    }
}

@inline(never) private func blackHole(_ value: UInt64) { if value == 42 { print("") } }
