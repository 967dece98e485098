import DraftData
import DraftModel

/// What a stage with a distillation loss needs of the data: the teacher's top-K rows, aligned with a sample's
/// targets. `MixtureLoader` provides them from `distill --top-k-logits` sources.
public protocol TeacherRowSource: AnyObject {
    /// K of the teacher rows (every source that carries them has the same), nil when no source does.
    var teacherK: Int? { get }
    /// Whether source `index` (the loader's source order) carries teacher rows.
    func carriesTeacher(source index: Int) -> Bool
    /// `seqLen * teacherK` ids and log-probs for `sample`, row-aligned with `fill`'s targets; rows without a teacher
    /// (context positions) have ids -1.
    func fillTeacher(_ sample: SampleReference, ids: UnsafeMutablePointer<Int32>, logprobs: UnsafeMutablePointer<Float>)
}

/// Each stage's token loss, checked against the data: a distillation kind in a stage none of whose sources (with
/// weight above 0) carries the teacher's top-K is a config error naming the stage's key.
func stageLosses(_ config: TrainingConfig, loader: MixtureLoader,
                 teacher: any TeacherRowSource) throws -> [TokenLoss] {
    try config.schedule.stages.enumerated().map { index, stage in
        let loss = stage.loss?.tokenLoss ?? .crossEntropy
        guard loss != .crossEntropy else { return loss }
        let used = stage.mixture.filter { $0.value > 0 }.keys.sorted()
        let carrying = used.filter { name in
            guard let source = loader.sourceNames.firstIndex(of: name) else { return false }
            return teacher.carriesTeacher(source: source)
        }
        if carrying.isEmpty || teacher.teacherK == nil {
            throw ConfigError("schedule.stages[\(index)].loss.kind: '\(stage.loss?.kind ?? "")' (stage '\(stage.name)') expected a source with the target's top-K log-probs (distill --top-k-logits) in the stage's mixture; none of \(used.joined(separator: ", ")) has them")
        }
        return loss
    }
}

/// The loader serves the teacher rows of `distill --top-k-logits` sources (`MixtureLoader.teacherK`, `fillTeacher`).
extension MixtureLoader: TeacherRowSource {
    public func carriesTeacher(source index: Int) -> Bool { sources[index].teacher != nil }
}
