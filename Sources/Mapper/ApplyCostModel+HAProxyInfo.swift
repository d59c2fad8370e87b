import Core

extension ApplyCostModel {
    /// The starting figures for the connected version, then refined from timings.
    public init(info: HAProxyInfo) {
        self.init(linearSetDelete: info.hasLinearSetAndDelete)
        let (major, minor) = info.majorMinor
        if let measured = Self.measured.last(where: { ($0.major, $0.minor) <= (major, minor) }) {
            if linearSetDelete {
                perScannedEntry = measured.perSetDelete
            } else {
                perCommand = measured.perSetDelete
            }
        }
    }
}
