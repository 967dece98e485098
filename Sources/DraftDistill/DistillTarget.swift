import DraftDevice
import DraftErrors
import DraftInference
import DraftTokenizer
import Foundation

/// One response to make: a prompt's ids at one temperature with its own seed.
public struct DistillJob: Sendable {
    public var index: Int
    public var promptIDs: [Int32]
    public var temperature: Float
    public var seed: UInt64
}

/// What the target answered to a job.
public struct DistillAnswer: Sendable {
    public var index: Int
    public var text: String
    public var ids: [Int32]
    public var finishReason: FinishReason
    /// With top-K: row-major [rows][K], a row per response token plus one for the stop token when it ended on one.
    public var topKIDs: [Int32]?
    public var topKLogprobs: [Float]?
}

/// The model that writes the KD data: one SwiftDraft runs (`NativeTarget`) or an OpenAI-compatible server
/// (`CompletionsTarget`).
public protocol DistillTarget: AnyObject {
    /// What the manifest names as the target.
    var name: String { get }
    var tokenizer: any Tokenizer { get }
    /// Room for prompt tokens when responses may take `maxNewTokens`.
    func maxPromptTokens(maxNewTokens: Int) -> Int
    /// A prompt-file entry as the target reads it: raw text as is (BOS when the model adds it), a conversation
    /// through the chat template.
    func render(_ entry: PromptEntry) throws -> (text: String, ids: [Int32])
    /// The chat template's opening with the user turn left open (Magpie).
    func magpieOpening() throws -> (text: String, ids: [Int32])
    /// Answers every job, handing each answer over as soon as it is complete (any order).
    func answer(_ jobs: [DistillJob], maxNewTokens: Int, batch: Int, topK: Int?,
                completed: (DistillAnswer) throws -> Void) throws
}

/// A target SwiftDraft runs itself, batched through `BatchGenerator` (continuous batching, per-job seeds).
public final class NativeTarget: DistillTarget {
    public let model: LoadedModel
    public let device: any Device
    public var name: String { model.source }
    public var tokenizer: any Tokenizer { model.tokenizer }

    public init(model: LoadedModel, device: any Device) {
        self.model = model
        self.device = device
    }

    public func maxPromptTokens(maxNewTokens: Int) -> Int { max(0, model.config.contextLength - maxNewTokens) }

    public func render(_ entry: PromptEntry) throws -> (text: String, ids: [Int32]) {
        let ids = try model.promptTokens(entry, chat: false)
        switch entry.content {
        case .text(let text): return (text, ids)
        case .messages(let turns): return (try template().render(turns), ids)
        }
    }

    private func template() throws -> ChatTemplate {
        guard let source = model.chatTemplate else {
            throw InputError("--target \(model.source): has no chat template (conversations and --magpie need one)")
        }
        return try ChatTemplate(template: source, bosToken: model.config.bosTokenID.map { model.tokenizer.decode([$0]) })
    }

    public func magpieOpening() throws -> (text: String, ids: [Int32]) {
        let text = try template().openUserTurn()
        return (text, model.tokenizer.encode(text))
    }

    public func answer(_ jobs: [DistillJob], maxNewTokens: Int, batch: Int, topK: Int?,
                       completed: (DistillAnswer) throws -> Void) throws {
        guard !jobs.isEmpty else { return }
        let capacity = min(model.config.contextLength, (jobs.map(\.promptIDs.count).max() ?? 1) + maxNewTokens)
        let engine = try DecoderEngine(config: model.config, weights: model.weights, device: device)
        let generator = try BatchGenerator(engine: engine, batchSize: min(batch, jobs.count), capacity: capacity)
        let settings = GenerationSettings(sampling: SamplingParameters(), maxNewTokens: maxNewTokens,
                                          stopTokens: Set(model.config.eosTokenIDs))
        let sampling = jobs.map { SamplingParameters(temperature: $0.temperature, seed: $0.seed) }
        var rows = [TopKRows?](repeating: nil, count: topK == nil ? 0 : jobs.count)
        var selector = topK.map { TopKSelector(k: $0) }
        try generator.generate(prompts: jobs.map(\.promptIDs), settings: settings, sampling: sampling,
                               observe: topK == nil ? nil : { index, logits, _ in
                                   if rows[index] == nil { rows[index] = TopKRows() }
                                   selector!.append(logits, to: &rows[index]!)
                               }) { sequence in
            let job = jobs[sequence.index]
            var answer = DistillAnswer(index: job.index, text: model.tokenizer.decode(sequence.outputIDs),
                                       ids: sequence.outputIDs, finishReason: sequence.finishReason)
            if topK != nil, var r = rows[sequence.index] {
                // A sequence that ran out of tokens drew no stop token: its last row is that of a token it kept.
                let expected = sequence.outputIDs.count + (sequence.finishReason == .eos ? 1 : 0)
                r.truncate(rows: expected, k: topK!)
                answer.topKIDs = r.ids
                answer.topKLogprobs = r.logprobs
                rows[sequence.index] = nil
            }
            try completed(answer)
        }
    }
}

/// Top-K rows of one response as they are drawn.
struct TopKRows {
    var ids: [Int32] = []
    var logprobs: [Float] = []

    mutating func truncate(rows: Int, k: Int) {
        if ids.count > rows * k {
            ids.removeLast(ids.count - rows * k)
            logprobs.removeLast(logprobs.count - rows * k)
        }
    }
}

/// The K largest logits of a row as log-probabilities (log-softmax at temperature 1), most likely first; ties by
/// lower id.
struct TopKSelector {
    let k: Int
    private var heapIDs: [Int32]
    private var heapValues: [Float]

    init(k: Int) {
        self.k = k
        heapIDs = []
        heapValues = []
    }

    mutating func append(_ logits: UnsafeBufferPointer<Float>, to rows: inout TopKRows) {
        let vocab = logits.count
        let kk = min(k, vocab)
        var maximum = -Float.infinity
        for v in logits where v > maximum { maximum = v }
        var total: Double = 0
        for v in logits { total += Double(expf(v - maximum)) }
        let logZ = Float(Double(maximum) + log(total))
        // A running list of the kk best, kept sorted by insertion: K is small (<= a few dozen).
        heapIDs.removeAll(keepingCapacity: true)
        heapValues.removeAll(keepingCapacity: true)
        for i in 0..<vocab {
            let v = logits[i]
            if heapValues.count == kk, v <= heapValues[kk - 1] { continue }
            var at = heapValues.count
            while at > 0, heapValues[at - 1] < v { at -= 1 }
            heapValues.insert(v, at: at)
            heapIDs.insert(Int32(i), at: at)
            if heapValues.count > kk {
                heapValues.removeLast()
                heapIDs.removeLast()
            }
        }
        for j in 0..<k {
            if j < kk {
                rows.ids.append(heapIDs[j])
                rows.logprobs.append(heapValues[j] - logZ)
            } else {
                rows.ids.append(-1)
                rows.logprobs.append(0)
            }
        }
    }
}
