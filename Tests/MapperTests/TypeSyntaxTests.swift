import Testing

@testable import Mapper

/// Cases measured against HAProxy 2.6.12's own parsers (see the notes in TypeSyntax.swift).
@Suite("Typed keys and values")
struct TypeSyntaxTests {
    @Test(
        "integer values",
        arguments: [
            ("5", true), ("+5", true), ("-5", true), ("007", true), ("9223372036854775807", true), ("0x10", false), ("12abc", false), ("1.5", false),
            ("1e3", false), ("", false), ("-", false),
        ])
    func integers(text: String, valid: Bool) { #expect(TypeSyntax.isInteger(text) == valid) }

    @Test(
        "integer keys and ranges",
        arguments: [
            ("5", true), ("1:5", true), ("-3", true), (":5", true), ("5:", true), ("+7", false), ("abc", false), ("2:1", false), (":", false), ("1:2:3", false),
        ])
    func integerKeys(text: String, valid: Bool) { #expect(TypeSyntax.isIntegerOrRange(text) == valid) }

    @Test(
        "addresses and networks",
        arguments: [
            ("10.0.0.1", true), ("10.0.0.0/8", true), ("10.0.0.0/255.0.0.0", true), ("::1", true), ("2001:db8::/32", true), ("::ffff:1.2.3.4", true),
            ("10.0.0.0/0", true), ("10.0.0.1/33", false), ("1.2.3", false), ("localhost", false), ("10.1", false), ("0x0a000001", false), ("10.0.0.256", false),
            ("10.0.0.0/255.0.255.0", false), ("2001:db8::/129", false), ("", false),
        ])
    func addresses(text: String, valid: Bool) { #expect(TypeSyntax.isAddressOrNetwork(text) == valid) }

    @Test("typed maps refuse what their types do not accept")
    func typedRules() {
        let rules = EntryRules.default
        let weights = MapDefinition(name: "w", path: "/w.map", valueType: .int)
        let blocked = MapDefinition(name: "b", path: "/b.map", match: .ip)
        #expect(rules.check(key: "w", value: "notanumber", for: weights) == .wrongType(.value, expected: "an integer"))
        #expect(rules.check(key: "w", value: "12", for: weights) == nil)
        #expect(rules.check(key: "notanip", value: "x", for: blocked) == .wrongType(.key, expected: "an IPv4 or IPv6 address or network"))
        #expect(rules.check(key: "10.0.0.0/8", value: nil, for: blocked) == nil)
        #expect(rules.check(key: "k", value: "v\n", for: weights) == .controlCharacter(.value, offset: 1))
    }
}
