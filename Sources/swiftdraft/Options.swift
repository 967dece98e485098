import ArgumentParser
import DraftTraining

/// The backends `--device` names.
enum DeviceKind: String, CaseIterable, ExpressibleByArgument {
    case cpu, hpu
}

/// `--config F` and its `--set key=value` overrides, shared by the commands that read a run config.
struct ConfigOptions: ParsableArguments {
    @Option(help: "The run's YAML config.") var config: String
    @Option(name: .customLong("set"), help: "Overrides a config value, e.g. --set optimizer.lr=3e-4 (repeatable).")
    var overrides: [String] = []

    /// The config with the overrides applied and, when given, `--device` over `device.kind`.
    func load(device: DeviceOptions, requireData: Bool = true) throws -> TrainingConfig {
        var loaded = try TrainingConfig.load(path: config, overrides: overrides, requireData: requireData)
        if let kind = device.device { loaded.device.kind = kind.rawValue }
        return loaded
    }
}

/// `--device cpu|hpu`, overriding the config's `device.kind` (or choosing the backend where there is no config).
struct DeviceOptions: ParsableArguments {
    @Option(help: "cpu or hpu (overrides device.kind).") var device: DeviceKind?
}

/// `--model M` and `--device`, for the commands that run a trained or converted model (generate, score, speculate).
struct ModelOptions: ParsableArguments {
    @Option(help: "A model: a checkpoint (.h5), a GGUF file, or a Hugging Face safetensors directory.") var model: String
    @OptionGroup var device: DeviceOptions
}

/// `--resume auto|never|PATH`.
enum ResumeChoice: ExpressibleByArgument {
    case auto, never
    case path(String)

    init?(argument: String) {
        switch argument {
        case "auto": self = .auto
        case "never": self = .never
        case "": return nil
        default: self = .path(argument)
        }
    }

    var defaultValueDescription: String {
        switch self {
        case .auto: return "auto"
        case .never: return "never"
        case let .path(path): return path
        }
    }

    var option: TrainOptions.Resume {
        switch self {
        case .auto: return .auto
        case .never: return .never
        case let .path(path): return .path(path)
        }
    }
}
