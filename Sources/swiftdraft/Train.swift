import ArgumentParser
import DraftDevice
import DraftDistributed
import DraftTraining
import Foundation

struct Train: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Train a draft model. Under mpirun every rank joins the world; alone, one process reproduces the configured world size by gradient accumulation.")

    @Option(help: "The run's YAML config.") var config: String
    @Option(help: "cpu or hpu (overrides device.kind).") var device: String?
    @Option(help: "auto (newest valid checkpoint, else fresh), never (fresh), or a checkpoint path.") var resume = "auto"
    @Option(name: .customLong("run-dir"), help: "Overrides run.dir.") var runDir: String?
    @Option(name: .customLong("set"), help: "Overrides a config value, e.g. --set optimizer.lr=3e-4 (repeatable).")
    var overrides: [String] = []
    @Option(name: .customLong("max-steps"), help: "Stop after this global optimizer step, counted from the start of the run.")
    var maxSteps: Int?
    @Flag(help: "Check for NaN/Inf and print per-phase timings.") var debug = false
    @Flag(help: "With --resume never, start over in a run directory that holds checkpoints.") var overwrite = false
    @Flag(help: "No progress lines on stdout.") var quiet = false

    func run() throws {
        var communicator: (any Communicator)?
        do {
            // Bad options are bad input like any other: exit 2 with one line, not ArgumentParser's usage text.
            if let device, !["cpu", "hpu"].contains(device) { throw ConfigError("--device: expected cpu or hpu, got '\(device)'") }
            if let maxSteps, maxSteps <= 0 { throw ConfigError("--max-steps: expected a positive integer, got \(maxSteps)") }
            communicator = try makeCommunicator()
            let world = communicator!
            var config = try TrainingConfig.load(path: self.config, overrides: overrides)
            if let device { config.device.kind = device }
            var options = TrainOptions()
            options.resume = resume == "auto" ? .auto : resume == "never" ? .never : .path(resume)
            options.runDirectory = runDir
            options.maxSteps = maxSteps
            options.debug = debug
            options.overwrite = overwrite
            options.quiet = quiet
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

/// The configured device: the CPU backend, or the HPU plugin on this rank's module.
func makeDevice(config: TrainingConfig, localRank: Int) throws -> any Device {
    switch config.device.kind {
    case "hpu": return try HPUDevice(pluginPath: config.device.plugin, module: nil)
    default: return CPUDevice()
    }
}
