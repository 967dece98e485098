import ArgumentParser
import DraftErrors
import DraftExport
import Foundation

/// `swiftdraft export`: a trained draft for the runtimes users serve targets with.
struct Export: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Export a draft as a Hugging Face directory (transformers, vLLM, TGI) or a GGUF file (llama.cpp -md).",
        discussion: "The output is written to a temporary directory and renamed into place when complete. GGUF exports copy the tokenizer metadata of --target (the target's .gguf), or of the draft's own tokenizer when it is a GGUF.")

    @Option(help: "A checkpoint (.h5) or a run directory (its checkpoints/latest).") var checkpoint: String
    @Option(help: "hf or gguf.") var format: String
    @Option(help: "Weights: f32, f16 or bf16 (hf); f32, f16 or q8_0 (gguf).") var dtype = "f32"
    @Option(help: "The output directory.") var output: String
    @Option(help: "The target's .gguf, whose tokenizer metadata a GGUF export copies.") var target: String?
    @Flag(help: "Replace an output directory that exists and is not empty.") var overwrite = false

    func run() throws {
        do {
            switch format {
            case "hf":
                guard let type = HuggingFaceDType(rawValue: dtype) else {
                    throw InputError("--dtype \(dtype): expected f32, f16 or bf16 for --format hf")
                }
                let source = try ExportSource(checkpointPath: checkpoint)
                try exportHuggingFace(source, dtype: type, output: output, overwrite: overwrite)
                print("exported \(source.checkpoint.url.lastPathComponent) to \(output) (Hugging Face, \(dtype))")
            case "gguf":
                guard let type = GGUFExportType(rawValue: dtype) else {
                    throw InputError("--dtype \(dtype): expected f32, f16 or q8_0 for --format gguf")
                }
                let source = try ExportSource(checkpointPath: checkpoint)
                let file = try exportGGUF(source, type: type, tokenizerGGUF: target, output: output, overwrite: overwrite)
                print("exported \(source.checkpoint.url.lastPathComponent) to \(file.path) (GGUF, \(dtype))")
            default:
                throw InputError("--format \(format): expected hf or gguf")
            }
        } catch {
            exitOnError(error)
        }
    }
}
