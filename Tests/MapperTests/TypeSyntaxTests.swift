import Core
import Testing

@testable import Mapper

/// Cases read from HAProxy's parsers (2.4 to 3.3 alike); `TypeRulesAgainstHAProxyTests` runs the
/// same kind of table against the real HAProxy.
@Suite("Typed keys and values")
struct TypeSyntaxTests {
    @Test(
        "integer values (map_parse_int)",
        arguments: [
            ("5", true), ("+5", true), ("-5", true), ("007", true), ("9223372036854775807", true), ("99999999999999999999", true), ("0x10", false),
            ("12abc", false), ("1.5", false), ("1e3", false), ("-", true), ("+", true), ("--5", false), (" 5", false),
        ])
    func integers(text: String, valid: Bool) { #expect(TypeSyntax.isIntegerValue(text) == valid, "\(text)") }

    @Test(
        "integer keys and ranges (pat_parse_int)",
        arguments: [
            ("5", true), ("1:5", true), ("1-5", true), ("-3", true), (":5", true), ("5:", true), ("5-", true), ("+7", false), ("abc", false),
            ("2:1", false), (":", false), ("-", false), ("1:2:3", false), ("-5:3", false), ("0:-", true), ("5:-", false), ("9223372036854775808", false),
            ("", false),
        ])
    func integerKeys(text: String, valid: Bool) { #expect(TypeSyntax.isIntegerKey(text) == valid, "\(text)") }

    @Test(
        "address keys (pat_parse_ip, nothing resolved)",
        arguments: [
            ("10.0.0.1", true), ("10.0.0.0/8", true), ("10.0.0.0/255.0.0.0", true), ("::1", true), ("2001:db8::/32", true), ("::ffff:1.2.3.4", true),
            ("10.0.0.0/0", true), ("10.0.0.0/+8", true), ("10.0.0.1/33", false), ("10.0.0.1/-1", false), ("1.2.3", false), ("localhost", false),
            ("10.1", false), ("0x0a000001", false), ("10.0.0.256", false), ("010.0.0.1", false), ("10.0.0.0/255.0.255.0", true),
            ("10.0.0.0/", false), ("2001:db8::/129", false), ("2001:db8::/", false), ("", false),
        ])
    func addressKeys(text: String, valid: Bool) { #expect(TypeSyntax.isAddressKey(text) == valid, "\(text)") }

    @Test(
        "address values (map_parse_ip)",
        arguments: [
            ("10.0.0.1", true), ("::1", true), ("::ffff:1.2.3.4", true), ("010.0.0.1", true), ("10.0.0.1/8", true), ("10.0.0.1x", true),
            ("2001:db8::/32", false), ("10.0.0.1.", false), ("10.0.0", false), ("10.0.0.256", false), ("localhost", false), ("", false),
        ])
    func addressValues(text: String, valid: Bool) { #expect(TypeSyntax.isAddressValue(text) == valid, "\(text)") }

    @Test("typed maps refuse what their types do not accept")
    func typedRules() {
        let rules = EntryRules.default
        let servers = MapDefinition(name: "s", path: "/s.map", valueType: .ip)
        #expect(
            rules.check(key: "k", value: "2001:db8::/32", for: servers) == .wrongType(.value, expected: "an IPv4 or IPv6 address (a network is not a value)"))
        #expect(rules.check(key: "k", value: "2001:db8::1", for: servers) == nil)
        let weights = MapDefinition(name: "w", path: "/w.map", valueType: .int)
        let blocked = MapDefinition(name: "b", path: "/b.map", match: .ip)
        #expect(rules.check(key: "w", value: "notanumber", for: weights) == .wrongType(.value, expected: "an integer"))
        #expect(rules.check(key: "w", value: "12", for: weights) == nil)
        #expect(rules.check(key: "notanip", value: "x", for: blocked) == .wrongType(.key, expected: "an IPv4 or IPv6 address or network"))
        #expect(rules.check(key: "10.0.0.0/8", value: nil, for: blocked) == nil)
        #expect(rules.check(key: "k", value: "v\n", for: weights) == .controlCharacter(.value, offset: 1))
    }
}
