import CRdKafka

/// librdkafka properties, kept as strings until the C boundary, with secrets kept out of every
/// log line and error message.
public struct KafkaSettings: Sendable, Equatable {
    public var properties: [String: String]

    public init(_ properties: [String: String] = [:]) {
        self.properties = properties
    }

    public subscript(name: String) -> String? {
        get { properties[name] }
        set { properties[name] = newValue }
    }

    /// Whether a property holds a secret (passwords, keys, tokens, JAAS and OAuth settings).
    public static func isSecret(_ name: String) -> Bool {
        let lowered = name.lowercased()
        return ["password", "secret", "token", "jaas", "oauthbearer.config", "key.pem", "ssl.key", "keystore", "credentials", "sasl.username"]
            .contains { lowered.contains($0) }
    }

    /// The properties with every secret value replaced, for logs.
    public var redacted: [String: String] {
        properties.reduce(into: [:]) { $0[$1.key] = Self.isSecret($1.key) ? "<redacted>" : $1.value }
    }

    /// Removes every secret value from a text (an error message that may quote one).
    public func scrub(_ text: String) -> String {
        var text = text
        for (name, value) in properties where Self.isSecret(name) && value.count >= 3 {
            text = text.replacingOccurrences(of: value, with: "<redacted>")
        }
        return text
    }

    /// Builds a librdkafka configuration; the caller owns it (until `rd_kafka_new` takes it).
    package func makeConf() throws(KafkaError) -> OpaquePointer {
        let conf = rd_kafka_conf_new()!
        var errstr = [CChar](repeating: 0, count: 512)
        for (name, value) in properties.sorted(by: { $0.key < $1.key }) {
            let result = rd_kafka_conf_set(conf, name, value, &errstr, errstr.count)
            guard result == RD_KAFKA_CONF_OK else {
                rd_kafka_conf_destroy(conf)
                let detail = scrub(string(fromBuffer: errstr))
                throw KafkaError(.configuration, "kafka property '\(name)': \(detail)")
            }
        }
        return conf
    }
}

extension String {
    fileprivate func replacingOccurrences(of target: String, with replacement: String) -> String {
        guard !target.isEmpty else { return self }
        var result = ""
        var rest = self[...]
        while let range = rest.firstRange(of: target) {
            result += rest[..<range.lowerBound]
            result += replacement
            rest = rest[range.upperBound...]
        }
        return result + rest
    }
}
