import ArgumentParser
import DraftTraining
import Foundation

struct Plan: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "The schedule's arithmetic: steps and tokens per stage, FLOPs per token, memory per device, the tokens/s each device must sustain for the time budget, ETA. Exits 1 when it does not fit.")

    @OptionGroup var configuration: ConfigOptions
    @Option(help: "Devices (ranks); default: distributed.world_size.") var devices: Int?
    @Option(name: .customLong("tokens-per-second"), help: "Measured or expected training tokens/s per device.")
    var tokensPerSecond: Double?
    @Option(name: .customLong("device-memory-gb"), help: "Memory per device; default 96 (Gaudi 2 HBM) for hpu, RAM / devices for cpu.")
    var deviceMemoryGB: Double?
    @OptionGroup var deviceOptions: DeviceOptions
    @Flag(help: "One JSON object (stages with their first and last global step), for scripts.") var json = false

    func validate() throws {
        if let devices, devices <= 0 { throw ValidationError("--devices: expected a positive integer, got \(devices)") }
        if let tokensPerSecond, !(tokensPerSecond > 0) {
            throw ValidationError("--tokens-per-second: expected a positive number, got \(tokensPerSecond)")
        }
        if let deviceMemoryGB, !(deviceMemoryGB > 0) {
            throw ValidationError("--device-memory-gb: expected a positive number, got \(deviceMemoryGB)")
        }
    }

    func run() throws {
        do {
            let config = try configuration.load(device: deviceOptions, requireData: false)
            let n = devices ?? config.distributed.worldSize
            guard n > 0, config.sequencesPerStep % (n * config.schedule.microBatch) == 0 else {
                throw ConfigError("\(configuration.config): schedule: \(config.sequencesPerStep) sequences per step cannot be split over \(n) devices x micro_batch \(config.schedule.microBatch)")
            }
            let memory: Double
            if let deviceMemoryGB {
                memory = deviceMemoryGB * 1e9
            } else if config.device.kind == "hpu" {
                // The stub plugin's per-module limit when it is the plugin in use; else a Gaudi 2's 96 GB.
                let stub = ProcessInfo.processInfo.environment["HPU_STUB_MEMORY_MB"].flatMap(Double.init)
                memory = stub.map { $0 * 1_048_576 } ?? 96e9
            } else {
                memory = Double(ProcessInfo.processInfo.physicalMemory) / Double(n)
            }
            let plan = TrainingPlan(config: config, devices: n, tokensPerSecond: tokensPerSecond,
                                    deviceMemoryBytes: Int(memory))
            if json {
                let data = try JSONSerialization.data(withJSONObject: plan.json, options: [.sortedKeys])
                FileHandle.standardOutput.write(data + Data("\n".utf8))
            } else {
                print(plan.report)
            }
            if !plan.fitsMemory {
                FileHandle.standardError.write(Data("warning: \(configuration.config): needs \(plan.totalBytesPerDevice) bytes per device, the device has \(Int(memory))\n".utf8))
            }
            if !(plan.fitsMemory && plan.fitsTime) { throw ExitCode(1) }
        } catch let exit as ExitCode {
            throw exit
        } catch {
            exitOnError(error)
        }
    }
}
