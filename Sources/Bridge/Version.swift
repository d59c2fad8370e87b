/// mapbridge's version.
public enum MapBridgeVersion {
    public static let current = "0.1.0"
}
