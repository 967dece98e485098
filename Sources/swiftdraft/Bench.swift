import ArgumentParser
import DraftDevice
import DraftDistributed
import DraftTraining
import Foundation

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Training throughput of a config's model on synthetic tokens: tokens/s, model GFLOP/s, MFU, peak memory.")

    @OptionGroup var configuration: ConfigOptions
    @OptionGroup var deviceOptions: DeviceOptions
    @Option(help: "Timed steps (after one warm-up step).") var steps = 5
    @Flag(help: "One JSON object instead of text.") var json = false
    @Flag(help: "Also print time per kernel (each kernel synchronised, so the total is a little slower).") var profile = false

    func validate() throws {
        if steps <= 0 { throw ValidationError("--steps: expected a positive integer, got \(steps)") }
    }

    func run() throws {
        var communicator: (any Communicator)?
        do {
            let world = try makeCommunicator()
            communicator = world
            let config = try configuration.load(device: deviceOptions, requireData: false)
            let base = try makeDevice(config: config, localRank: world.localRank)
            let instrumented = profile ? InstrumentedDevice(wrapping: base, checkFinite: false) : nil
            let compute = instrumented ?? base
            let r = try runBenchmark(config: config, device: compute, steps: steps, communicator: world)
            defer { try? world.shutdown() }
            guard world.rank == 0 else { return }
            if let instrumented { print(instrumented.report()) }
            if json {
                print(String(format: "{\"tokens_per_s\":%.1f,\"model_gflops\":%.2f,\"sgemm_gflops\":%.2f,\"mfu\":%.4f,\"peak_rss_mb\":%.1f,\"median_step_s\":%.4f,\"parameters\":%d,\"ranks\":%d,\"allreduce_s\":%.4f,\"allreduce_exposed_s\":%.4f,\"allreduce_hidden_s\":%.4f,\"device\":\"%@\"}",
                             r.tokensPerSecond, r.modelGFLOPs, r.peakGFLOPs, r.mfu, Double(r.peakRSSBytes) / 1e6,
                             r.medianSecondsPerStep, r.parameters, r.ranks, r.allReduceSeconds, r.exposedSeconds, r.hiddenSeconds,
                             compute.name))
            } else {
                print("""
                    device        \(compute.name)
                    parameters    \(r.parameters.formatted())
                    tokens/step   \(r.tokensPerStep.formatted())
                    median step   \(String(format: "%.3f s", r.medianSecondsPerStep)) over \(r.steps) steps
                    tokens/s      \(String(format: "%.0f", r.tokensPerSecond))
                    model GFLOP/s \(String(format: "%.1f", r.modelGFLOPs)) (\(String(format: "%.1f", r.flopsPerToken / 1e6)) MFLOP/token)
                    sgemm GFLOP/s \(String(format: "%.1f", r.peakGFLOPs)) (measured)
                    MFU           \(String(format: "%.1f%%", r.mfu * 100))
                    peak RSS      \(String(format: "%.0f MB", Double(r.peakRSSBytes) / 1e6))
                    """)
                if r.ranks > 1 {
                    print(String(format: "ranks         %d (tokens/s above are per rank)\nall-reduce    %.3f s per step after backward; with overlap %.3f s exposed, %.3f s hidden",
                                 r.ranks, r.allReduceSeconds, r.exposedSeconds, r.hiddenSeconds))
                }
            }
        } catch {
            exitOnError(error, communicator: communicator)
        }
    }
}
