import ArgumentParser
import Bridge
import Foundation
import Logging

struct Check: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Validate the configuration, reach HAProxy and Kafka, and report (exit 0 when all is well, 1 otherwise, 2 for a bad configuration).")

    @Option(name: .long, help: "The YAML configuration file.")
    var config: String

    func run() async throws {
        let configuration = try loadConfiguration(config)
        bootstrapLogging(level: .critical)
        let findings = await Inspection.check(configuration, logger: Logger(label: "mapbridge.check"))
        for finding in findings {
            print("\(finding.ok ? "ok  " : "FAIL") \(finding.subject): \(finding.detail)")
        }
        if findings.contains(where: { !$0.ok }) { throw ExitCode(1) }
    }
}

struct Diff: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Compare each map's stored desired state with HAProxy's live map (exit 0 when they match, 1 when they differ).")

    @Option(name: .long, help: "The YAML configuration file.")
    var config: String

    @Option(name: .long, help: "How many keys to list per kind of difference.")
    var limit = 20

    func run() async throws {
        let configuration = try loadConfiguration(config)
        bootstrapLogging(level: .critical)
        let differences: [Inspection.MapDifference]
        do {
            differences = try await Inspection.diff(configuration, logger: Logger(label: "mapbridge.diff"))
        } catch {
            FileHandle.standardError.write(Data("mapbridge diff: \(error)\n".utf8))
            throw ExitCode(1)
        }
        var exact = true
        for map in differences {
            guard let desired = map.desired else {
                print("\(map.map): no stored state yet (HAProxy holds \(map.live) entries)")
                continue
            }
            if map.isExact {
                print("\(map.map): exact (\(desired) entries)")
                continue
            }
            exact = false
            print(
                "\(map.map): differs: desired \(desired), live \(map.live); missing \(map.missing.count), extra \(map.extra.count), "
                    + "different \(map.different.count), duplicated \(map.duplicated.count)\(map.outOfOrder ? ", out of order" : "")")
            for (kind, keys) in [("missing", map.missing), ("extra", map.extra), ("different", map.different), ("duplicated", map.duplicated)] {
                for key in keys.prefix(limit) { print("  \(kind) \(key)") }
                if keys.count > limit { print("  ... \(keys.count - limit) more \(kind)") }
            }
        }
        if !exact { throw ExitCode(1) }
    }
}
