import Foundation

/// DESIGN.md's speculative-decoding figures for one prompt set (or all of them), from the counts of the speculative
/// runs and the plain runs of the same prompts. The names are the table's, everywhere they are reported.
public struct SpeculationReport: Sendable {
    public var prompts: Int
    public var gamma: Int
    public var counts: SpeculationCounts
    /// Tokens and seconds of the target decoding the same prompts plainly, and that run's prefill
    /// (`SpeculationCounts.prefillSeconds` of the plain runs; each prompt's first token comes out of it).
    public var plainTokens: Int
    public var plainSeconds: Double
    public var plainPrefillSeconds: Double
    public var specTokens: Int
    public var specSeconds: Double
    /// c by parameters and by weight bytes as stored and run.
    public var parameterRatio: Double
    public var byteRatio: Double

    public init(prompts: Int, gamma: Int, counts: SpeculationCounts, plainTokens: Int, plainSeconds: Double,
                plainPrefillSeconds: Double, specTokens: Int, specSeconds: Double, parameterRatio: Double,
                byteRatio: Double) {
        self.prompts = prompts
        self.gamma = gamma
        self.counts = counts
        self.plainTokens = plainTokens
        self.plainSeconds = plainSeconds
        self.plainPrefillSeconds = plainPrefillSeconds
        self.specTokens = specTokens
        self.specSeconds = specSeconds
        self.parameterRatio = parameterRatio
        self.byteRatio = byteRatio
    }

    public var acceptanceRate: Double { counts.acceptanceRate }
    public var tau: Double { counts.tau }
    /// FastDraft's memory-bound speedup: tau / (gamma * c + 1).
    public var mbsu: Double { tau / (Double(gamma) * parameterRatio + 1) }
    public var mbsuBytes: Double { tau / (Double(gamma) * byteRatio + 1) }
    public var tokensPerSecondPlain: Double { plainSeconds > 0 ? Double(plainTokens) / plainSeconds : 0 }
    public var tokensPerSecondSpec: Double { specSeconds > 0 ? Double(specTokens) / specSeconds : 0 }
    public var speedup: Double { tokensPerSecondPlain > 0 ? tokensPerSecondSpec / tokensPerSecondPlain : 0 }

    /// Decoding alone, each run's prompt prefill left out (the same work with or without a draft; it dilutes the
    /// end-to-end `speedup` towards 1): plain tokens after each prompt's first (which its prefill gives) per second
    /// of the rest, and speculative tokens per second after the prefill.
    public var decodeTokensPerSecondPlain: Double {
        let seconds = plainSeconds - plainPrefillSeconds, tokens = plainTokens - prompts
        return seconds > 0 && tokens > 0 ? Double(tokens) / seconds : 0
    }
    public var decodeTokensPerSecondSpec: Double {
        let seconds = specSeconds - counts.prefillSeconds
        return seconds > 0 ? Double(specTokens) / seconds : 0
    }
    public var decodeSpeedup: Double {
        decodeTokensPerSecondPlain > 0 ? decodeTokensPerSecondSpec / decodeTokensPerSecondPlain : 0
    }
    /// One verification pass (prefill left out) and one plain decode step, in seconds, and the pass in steps: what
    /// MBSU assumes is 1 and the target's multi-row products make more.
    public var passSeconds: Double {
        counts.targetPasses > 0 ? (counts.targetSeconds - counts.prefillSeconds) / Double(counts.targetPasses) : 0
    }
    public var plainStepSeconds: Double { decodeTokensPerSecondPlain > 0 ? 1 / decodeTokensPerSecondPlain : 0 }
    public var passCostSteps: Double { plainStepSeconds > 0 ? passSeconds / plainStepSeconds : 0 }

    /// One draft decode step (a forward and its sampling), its reading of each prompt left out.
    public var draftStepSeconds: Double {
        counts.draftSteps > 0 ? (counts.draftSeconds - counts.draftPrefillSeconds) / Double(counts.draftSteps) : 0
    }

    /// The measured cost ratio c: one draft decode step's time over one plain target decode step's, both without
    /// their prompt prefills (which would otherwise weigh in by each set's prompt lengths).
    public var measuredCostRatio: Double {
        plainStepSeconds > 0 ? draftStepSeconds / plainStepSeconds : 0
    }

    /// The acceptance rate at which speculation breaks even at the measured cost ratio: the `a` with
    /// `tau(a) = (1 - a^(gamma+1)) / (1 - a)` equal to `gamma * c + 1` (nil when no acceptance below 1 can pay,
    /// i.e. `gamma * c + 1 >= gamma + 1`). It ignores the verification pass costing more than a plain step.
    public var breakEvenAcceptance: Double? {
        Self.breakEven(gamma: gamma, costRatio: measuredCostRatio)
    }

    /// The same with the verification pass at its measured cost (`passCostSteps` plain steps, not 1): the acceptance
    /// at which this run's draft and target, as timed, would decode as fast as the target alone.
    public var breakEvenAcceptanceMeasured: Double? {
        passCostSteps > 0 ? Self.breakEven(gamma: gamma, costRatio: measuredCostRatio, passCost: passCostSteps) : nil
    }

    /// The acceptance `a` (the same at every position) with `tau(a) = gamma * c + passCost`; nil when none below 1 gives it.
    public static func breakEven(gamma: Int, costRatio c: Double, passCost: Double = 1) -> Double? {
        let needed = Double(gamma) * c + passCost
        func tau(_ a: Double) -> Double { a >= 1 ? Double(gamma + 1) : (1 - pow(a, Double(gamma + 1))) / (1 - a) }
        guard needed < Double(gamma + 1) else { return nil }
        var low = 0.0, high = 1.0
        for _ in 0..<60 {
            let mid = (low + high) / 2
            if tau(mid) < needed { low = mid } else { high = mid }
        }
        return (low + high) / 2
    }

    /// The report as one JSON object with DESIGN.md's field names.
    public var json: [String: Any] {
        var object: [String: Any] = [
            "prompts": prompts, "gamma": gamma,
            "proposed": counts.proposed, "accepted": counts.accepted, "emitted": counts.emitted,
            "target_passes": counts.targetPasses,
            "acceptance_rate": acceptanceRate, "tau": tau, "per_position": counts.perPosition,
            "mbsu": mbsu, "mbsu_bytes": mbsuBytes, "c": parameterRatio, "c_bytes": byteRatio,
            "tokens_per_s_plain": tokensPerSecondPlain, "tokens_per_s_spec": tokensPerSecondSpec,
            "speedup": speedup, "draft_s": counts.draftSeconds, "target_s": counts.targetSeconds,
            "cost_ratio_measured": measuredCostRatio,
            "prefill_s_plain": plainPrefillSeconds, "prefill_s_spec": counts.prefillSeconds,
            "decode_tokens_per_s_plain": decodeTokensPerSecondPlain,
            "decode_tokens_per_s_spec": decodeTokensPerSecondSpec, "decode_speedup": decodeSpeedup,
            "pass_s": passSeconds, "plain_step_s": plainStepSeconds, "pass_cost_steps": passCostSteps,
            "draft_step_s": draftStepSeconds, "draft_prefill_s": counts.draftPrefillSeconds,
        ]
        object["break_even_acceptance"] = breakEvenAcceptance ?? NSNull()
        object["break_even_acceptance_measured"] = breakEvenAcceptanceMeasured ?? NSNull()
        return object
    }
}
