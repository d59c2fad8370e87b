/// A Kafka header.
public struct KafkaHeader: Sendable, Equatable, Hashable {
    public var name: String
    /// nil for a header with a null value.
    public var value: [UInt8]?

    public init(_ name: String, _ value: [UInt8]?) {
        self.name = name
        self.value = value
    }

    public init(_ name: String, _ text: String) {
        self.init(name, Array(text.utf8))
    }
}
