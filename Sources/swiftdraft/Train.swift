import ArgumentParser
import DraftDevice
import DraftDistributed
import DraftTraining
import Foundation

struct Train: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Train a draft model. Under mpirun every rank joins the world; alone, one process reproduces the configured world size by gradient accumulation.")

    @OptionGroup var configuration: ConfigOptions
    @OptionGroup var deviceOptions: DeviceOptions
    @Option(help: "auto (newest valid checkpoint, else fresh), never (fresh), or a checkpoint path.")
    var resume: ResumeChoice = .auto
    @Option(name: .customLong("run-dir"), help: "Overrides run.dir.") var runDir: String?
    @Option(name: .customLong("max-steps"), help: "Stop after this global optimizer step, counted from the start of the run.")
    var maxSteps: Int?
    @Flag(help: "Check for NaN/Inf and print per-phase timings.") var debug = false
    @Flag(help: "With --resume never, start over in a run directory that holds checkpoints.") var overwrite = false
    @Flag(help: "No progress lines on stdout.") var quiet = false
    @Option(name: .customLong("init-from"), help: "Start a fresh run from a Llama-architecture model's weights: a Hugging Face directory, a .gguf or a checkpoint .h5 (shapes must match the config).")
    var initFrom: String?

    func validate() throws {
        if let maxSteps, maxSteps <= 0 { throw ValidationError("--max-steps: expected a positive integer, got \(maxSteps)") }
    }

    func run() throws {
        var communicator: (any Communicator)?
        do {
            communicator = try makeCommunicator()
            let world = communicator!
            let config = try configuration.load(device: deviceOptions)
            var options = TrainOptions()
            options.resume = resume.option
            options.runDirectory = runDir
            options.maxSteps = maxSteps
            options.debug = debug
            options.overwrite = overwrite
            options.quiet = quiet
            options.initFrom = initFrom
            let base = try makeDevice(config: config, localRank: world.localRank)
            let compute = debug ? InstrumentedDevice(wrapping: base, checkFinite: true) : base
            let trainer = try Trainer(config: config, options: options, communicator: world, device: compute)
            let summary = try trainer.run()
            if world.rank == 0, !quiet {
                let validation = summary.validationLoss.keys.sorted()
                    .map { String(format: ", validation %@ %.4f", $0, summary.validationLoss[$0]!) }.joined()
                print(String(format: "done: %d steps, last loss %.4f, %.0f tokens/s", summary.steps, summary.lastLoss,
                             summary.tokensPerSecond) + validation)
            }
            try world.shutdown()
        } catch {
            exitOnError(error, communicator: communicator)
        }
    }
}

/// The configured device: the CPU backend, or the HPU plugin on the module of this rank's local rank (the
/// communicator's, so every launcher spreads a host's ranks over its modules).
func makeDevice(config: TrainingConfig, localRank: Int) throws -> any Device {
    switch config.device.kind {
    case "hpu": return try HPUDevice(pluginPath: config.device.plugin, localRank: localRank)
    case "cpu": return CPUDevice(quantizedActivations: try .fromEnvironment())
    default: throw ConfigError("device.kind: expected cpu or hpu, got '\(config.device.kind)'")
    }
}
