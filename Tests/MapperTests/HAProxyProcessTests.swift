import Foundation
import TestSupport
import Testing

@Suite("The tests' HAProxy process")
struct HAProxyProcessTests {
    @Test("an exit the test did not ask for is told apart from a stop or a kill, and HAProxy's log says why")
    func exitOnItsOwn() async throws {
        try await withHAProxy([TestMap("hosts")]) { haproxy in
            #expect(!haproxy.exitedOnItsOwn)
            // The worker dies as a crash would end it; the master follows it.
            for worker in haproxy.workerPids() { Foundation.kill(worker, SIGKILL) }
            try await waitUntil("the master to exit after its worker", timeout: 20) { haproxy.pid == nil }
            #expect(haproxy.exitedOnItsOwn)
            #expect(haproxy.log().contains("exited with code"), "\(haproxy.log())")
            try await haproxy.start()
            #expect(!haproxy.exitedOnItsOwn)
            haproxy.kill()
            #expect(!haproxy.exitedOnItsOwn, "a kill the test asked for")
            try await haproxy.start()
            await haproxy.stop()
            #expect(!haproxy.exitedOnItsOwn, "a stop the test asked for")
            try await haproxy.start()
        }
    }
}
