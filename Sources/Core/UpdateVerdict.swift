/// What HAProxy's answers to a plan's `set`/`del` commands mean: decided from the answers alone,
/// so that the applier only sends, reads and carries the verdict out.
///
/// Guarantees: every update lands in exactly one of ``refused``, ``missing``, ``deleted``,
/// ``silentSets``, or none of them when its answer already means the outcome wanted (a `del` of a
/// key HAProxy did not hold: "Key not found.").
public struct UpdateVerdict: Sendable, Equatable {
    /// An update HAProxy refused, with its answer: the key stays as it was.
    public struct Refusal: Sendable, Equatable {
        public var update: MapPlan.Update
        public var reason: String

        public init(update: MapPlan.Update, reason: String) {
            self.update = update
            self.reason = reason
        }
    }

    public var refused: [Refusal] = []
    /// `set`s of keys HAProxy did not hold ("entry not found."), though the bridge believed it
    /// did: they must be added, and the map compared again.
    public var missing: [MapPlan.Update] = []
    /// Keys whose `del` HAProxy acknowledged: HAProxy 3.3 removes one entry per call, so another
    /// writer's duplicates may remain.
    public var deleted: [MapKey] = []
    /// `set`s HAProxy answered with silence. On a typed-value map that proves nothing before 3.2
    /// (an unparsable value is ignored in silence): see ``unconfirmed(_:live:)``.
    public var silentSets: [MapPlan.Update] = []

    /// - Parameter answers: HAProxy's answer to each update, in order; empty for silence (success).
    public init(updates: [MapPlan.Update], answers: [String]) {
        precondition(updates.count == answers.count)
        for (update, answer) in zip(updates, answers) {
            switch (answer, update.value) {
            case ("", nil): deleted.append(update.key)
            case ("", _?): silentSets.append(update)
            case ("Key not found.", nil): continue  // a del of a key HAProxy did not hold: the outcome wanted.
            case ("entry not found.", _?): missing.append(update)
            default: refused.append(Refusal(update: update, reason: answer))
            }
        }
    }

    /// The silent `set`s whose value HAProxy does not hold, given its live map (the first entry of
    /// each key, the one lookups return): HAProxy did not take them.
    public static func unconfirmed(_ silentSets: [MapPlan.Update], live: [MapKey: String]) -> [MapPlan.Update] {
        silentSets.filter { live[$0.key] != $0.value }
    }
}
