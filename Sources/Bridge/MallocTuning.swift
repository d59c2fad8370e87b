import Foundation

/// How the daemon sets glibc's allocator up before it starts threads, and why.
///
/// - **Arenas** (`M_ARENA_MAX` 2): glibc gives each thread that contends for the heap an arena of
///   its own, up to 8 per core, and memory freed in one arena serves only that arena. With the
///   consumer, NIO and Swift's concurrency threads passing buffers around, peak RSS in the
///   benchmark's W1 was 260 MiB with the default and about 200 MiB with 2 arenas, at the same
///   throughput.
/// - **Large blocks** (`M_MMAP_THRESHOLD` and `M_TRIM_THRESHOLD` 1 MiB): by default glibc raises
///   its mmap threshold to the size of each large block freed (up to 32 MiB) and its trim
///   threshold to twice that. The backlog's arrays, a batch's, librdkafka's fetch buffers and a
///   store's are such blocks, allocated and freed again every few hundred milliseconds; after the
///   first of them was freed, the next ones came from the arenas, and what they freed stayed in
///   the process (in a W2 run, 118 MiB of heap held for 56 MiB in use once the backlog had
///   drained). Fixed at 1 MiB, a block of 1 MiB or more is mapped and given back when freed, and
///   an arena whose free top exceeds 1 MiB shrinks. Measured in the README ("Memory given back").
///
/// Each is left as it is when the environment sets it (`MALLOC_ARENA_MAX`,
/// `MALLOC_MMAP_THRESHOLD_`, `MALLOC_TRIM_THRESHOLD_`, or the same in `GLIBC_TUNABLES`): an
/// operator's choice wins.
public enum MallocTuning {
    public struct Setting: Equatable, Sendable {
        /// mallopt's parameter number, from <malloc.h> (which the Glibc module does not carry).
        public let parameter: Int32
        public let value: Int32
        /// The environment variable and the `GLIBC_TUNABLES` name that override it.
        public let variable: String
        public let tunable: String
    }

    public static let arenaMax = Setting(parameter: -8, value: 2, variable: "MALLOC_ARENA_MAX", tunable: "glibc.malloc.arena_max")
    public static let mmapThreshold = Setting(
        parameter: -3, value: 1 << 20, variable: "MALLOC_MMAP_THRESHOLD_", tunable: "glibc.malloc.mmap_threshold")
    public static let trimThreshold = Setting(
        parameter: -1, value: 1 << 20, variable: "MALLOC_TRIM_THRESHOLD_", tunable: "glibc.malloc.trim_threshold")

    /// Every setting the daemon makes, in the order it makes them.
    public static let all = [arenaMax, mmapThreshold, trimThreshold]

    /// The settings to make, given the environment: every one the environment does not set.
    public static func settings(environment: [String: String]) -> [Setting] {
        let tunables = Set(
            (environment["GLIBC_TUNABLES"] ?? "").split(separator: ":").compactMap { $0.split(separator: "=").first.map(String.init) })
        return all.filter { environment[$0.variable] == nil && !tunables.contains($0.tunable) }
    }

    /// What ``apply(environment:)`` did, for the start-up log.
    public struct Outcome: Sendable {
        /// Made (glibc accepted them).
        public var made: [Setting] = []
        /// Left to the environment.
        public var kept: [Setting] = []
        /// Refused by glibc (or not on glibc).
        public var refused: [Setting] = []

        public var logMetadata: [String: String] {
            func names(_ settings: [Setting]) -> String { settings.map { "\($0.tunable)=\($0.value)" }.joined(separator: ",") }
            var metadata = ["malloc.set": names(made)]
            if !kept.isEmpty { metadata["malloc.from_environment"] = kept.map(\.variable).joined(separator: ",") }
            if !refused.isEmpty { metadata["malloc.refused"] = names(refused) }
            return metadata
        }
    }

    /// Makes the settings; call before any thread starts.
    @discardableResult
    public static func apply(environment: [String: String] = ProcessInfo.processInfo.environment) -> Outcome {
        var outcome = Outcome()
        let wanted = settings(environment: environment)
        outcome.kept = all.filter { !wanted.contains($0) }
        for setting in wanted {
            #if os(Linux)
            let accepted = glibcMallopt(setting.parameter, setting.value) == 1
            #else
            let accepted = false
            #endif
            if accepted { outcome.made.append(setting) } else { outcome.refused.append(setting) }
        }
        return outcome
    }
}

#if os(Linux)
@_silgen_name("mallopt")
private func glibcMallopt(_ parameter: Int32, _ value: Int32) -> Int32
#endif
