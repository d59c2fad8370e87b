import Core
import Foundation
import TestSupport
import Testing

@testable import Mapper

/// The entry rules against the real HAProxy (the one `MAPBRIDGE_TEST_HAPROXY` names, Debian's by
/// default): for every typed key and value below, the bridge accepts it exactly when HAProxy both
/// adds it at run time (the entry is then in `show map`) and loads it from a map file
/// (`haproxy -c`). Nothing the bridge accepts can then be silently ignored by `set map` or break
/// HAProxy's next start.
@Suite("Typed rules against the real HAProxy", .serialized)
struct TypeRulesAgainstHAProxyTests {
    static let addressTexts = [
        "10.0.0.1", "10.0.0.0/8", "10.0.0.0/255.0.0.0", "10.0.0.0/255.0.255.0", "10.0.0.0/0", "10.0.0.0/+8", "10.0.0.1/33", "10.0.0.1/-1",
        "10.0.0.0/", "1.2.3", "10.1", "0x0a000001", "10.0.0.256", "010.0.0.1", "10.0.0.1x", "10.0.0.1.", "localhost", "::1", "2001:db8::1",
        "2001:db8::/32", "2001:db8::/129", "2001:db8::/", "::ffff:1.2.3.4", "abc",
    ]
    static let integerTexts = [
        "5", "+5", "-5", "007", "1:5", "1-5", ":5", "5:", "5-", "2:1", ":", "-", "+", "--5", "1:2:3", "-5:3", "0:-", "5:-", "0x10", "12abc", "1.5",
        "1e3", "9223372036854775807", "9223372036854775808", "99999999999999999999", "abc",
    ]

    enum Field: String { case key, value }

    /// (map's match, value type, which field the texts go in, texts).
    static let tables: [(match: String, valueType: String, field: Field, texts: [String])] = [
        ("ip", "str", .key, addressTexts),
        ("int", "str", .key, integerTexts),
        ("str", "ip", .value, addressTexts),
        ("str", "int", .value, integerTexts),
    ]

    /// Whether HAProxy loads a map file holding just `key value` (`haproxy -c`).
    static func loadsFromFile(match: String, valueType: String, key: String, value: String) throws -> Bool {
        let haproxy = try HAProxyProcess(maps: [TestMap("m", match: match, valueType: valueType, initialLines: ["\(key) \(value)"])])
        defer { haproxy.directory.remove() }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: HAProxyProcess.executable)
        process.arguments = ["-c", "-q", "-f", haproxy.configPath]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        process.waitUntilExit()
        return process.terminationStatus == 0
    }

    @Test("keys of ip and int maps, values of _ip and _int maps: accepted by the bridge exactly when HAProxy adds and loads them")
    func table() async throws {
        let maps = Self.tables.enumerated().map { TestMap("m\($0.offset)", match: $0.element.match, valueType: $0.element.valueType) }
        try await withHAProxy(maps) { haproxy in
            var disagreements: [String] = []
            for (index, table) in Self.tables.enumerated() {
                let path = haproxy.mapPath("m\(index)")
                let definition = MapDefinition(
                    name: "m\(index)", path: path, match: MatchType(rawValue: table.match)!, valueType: ValueType(rawValue: table.valueType)!)
                for (position, text) in table.texts.enumerated() {
                    let (key, value) = table.field == .key ? (text, "v") : ("k\(position)", text)
                    let rule = EntryRules.default.check(key: key, value: value, for: definition) == nil
                    let answer = try haproxy.oracle.run("add map \(path) \(key) \(value)")
                    let present = try haproxy.oracle.entries(of: path).contains { $0.key == key && $0.value == value }
                    let atRunTime = present && answer.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty
                    let fromFile = try Self.loadsFromFile(match: table.match, valueType: table.valueType, key: key, value: value)
                    if rule != (atRunTime && fromFile) {
                        disagreements.append(
                            "map_\(table.match)_\(table.valueType) \(table.field) '\(text)': bridge \(rule ? "accepts" : "refuses"), HAProxy at run time \(atRunTime ? "accepts" : "refuses (\(answer.prefix(80)))"), from a file \(fromFile ? "loads" : "refuses")"
                        )
                    }
                    _ = try haproxy.oracle.run("clear map \(path)")
                }
            }
            #expect(disagreements.isEmpty, "\(disagreements.joined(separator: "\n"))")
        }
    }
}
