import Foundation
import Yams

/// The shape of a config file: which keys exist and what type each value has.
///
/// Checked on the user's YAML before defaults are merged, so that an unknown key (a typo such as `micro_bach`) or a
/// wrong type is reported with its full key path instead of being silently ignored or failing deep inside a run.
indirect enum ConfigSchema {
    case integer, number, boolean, string, optionalString
    case numberList(count: Int)
    /// A mapping with fixed keys.
    case section([String: ConfigSchema])
    /// A mapping whose keys the user chooses (source names), all of one shape.
    case table(ConfigSchema)
    case list(ConfigSchema)

    static let root: ConfigSchema = .section([
        "run": .section(["name": .string, "dir": .optionalString, "seed": .integer, "time_budget_hours": .number]),
        "model": .section(["arch": .string, "vocab_size": .integer, "dim": .integer, "layers": .integer,
                           "heads": .integer, "kv_heads": .integer, "ffn_dim": .integer, "max_seq_len": .integer,
                           "rope_theta": .number, "norm_eps": .number, "tie_embeddings": .boolean,
                           "head_vocab": .integer, "head_vocab_source": .string]),
        "tokenizer": .string,
        "data": .section(["seq_len": .integer, "sources": .table(.section(["path": .string]))]),
        "schedule": .section(["global_batch_tokens": .integer, "micro_batch": .integer,
                              "stages": .list(.section(["name": .string, "tokens": .number,
                                                        "mixture": .table(.number), "lr_scale": .number,
                                                        "loss": .section(["kind": .string, "kd_weight": .number])]))]),
        "optimizer": .section(["name": .string, "lr": .number, "min_lr": .number, "betas": .numberList(count: 2),
                               "eps": .number, "weight_decay": .number, "grad_clip": .number]),
        "lr_schedule": .section(["kind": .string, "warmup_tokens": .number, "decay_fraction": .number]),
        "distributed": .section(["world_size": .integer, "bucket_mb": .number, "overlap": .boolean,
                                 "zero_stage": .integer]),
        "device": .section(["kind": .string, "plugin": .optionalString]),
        "checkpoint": .section(["every_steps": .integer, "keep_last": .integer, "max_bad_steps": .integer]),
        "log": .section(["every_steps": .integer, "eval_every_steps": .integer, "eval_sequences": .integer,
                          "tensorboard": .boolean]),
    ])

    func check(_ node: Node, path: String, source: String) throws {
        func fail(_ expected: String) -> ConfigError {
            let got = node.scalar.map { "'\($0.string)'" } ?? (node.mapping != nil ? "a mapping" : "a list")
            return ConfigError("\(source): \(path.isEmpty ? "top level" : path): expected \(expected), got \(got)")
        }
        switch self {
        case .integer:
            guard let text = node.scalar?.string, Int(text.replacingOccurrences(of: "_", with: "")) != nil
                    || (Double(text).map { $0 == $0.rounded() && abs($0) < 9e15 } ?? false)
            else { throw fail("an integer") }
        case .number:
            guard let text = node.scalar?.string, Double(text.replacingOccurrences(of: "_", with: "")) != nil
            else { throw fail("a number") }
        case .boolean:
            guard let text = node.scalar?.string, ["true", "false", "yes", "no", "on", "off"].contains(text.lowercased())
            else { throw fail("true or false") }
        case .string:
            guard let scalar = node.scalar, !["null", "~", ""].contains(scalar.string) || scalar.style != .plain
            else { throw fail("a string") }
        case .optionalString:
            guard node.scalar != nil else { throw fail("a string or null") }
        case let .numberList(count):
            guard let items = node.sequence, items.count == count else { throw fail("a list of \(count) numbers") }
            for (i, item) in items.enumerated() { try ConfigSchema.number.check(item, path: "\(path)[\(i)]", source: source) }
        case let .section(keys):
            guard let mapping = node.mapping else { throw fail("a mapping") }
            for (keyNode, value) in mapping {
                let key = keyNode.string ?? ""
                let childPath = path.isEmpty ? key : "\(path).\(key)"
                guard let schema = keys[key] else {
                    throw ConfigError("\(source): \(childPath): unknown key (expected one of \(keys.keys.sorted().joined(separator: ", ")))")
                }
                try schema.check(value, path: childPath, source: source)
            }
        case let .table(schema):
            guard let mapping = node.mapping else { throw fail("a mapping") }
            for (keyNode, value) in mapping {
                try schema.check(value, path: "\(path).\(keyNode.string ?? "")", source: source)
            }
        case let .list(schema):
            guard let items = node.sequence else { throw fail("a list") }
            for (i, item) in items.enumerated() { try schema.check(item, path: "\(path)[\(i)]", source: source) }
        }
    }
}
