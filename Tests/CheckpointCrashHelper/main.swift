// Test helper: saves one checkpoint in its own process so a test can SIGKILL it mid-write
// (with SWIFTDRAFT_TEST_CHECKPOINT_PAUSE_S set, `save` announces the pause on stderr and sleeps).
// Usage: checkpoint-crash-helper DIR STEP KEEP_LAST TENSORS ELEMENTS
import DraftCheckpoint
import Foundation

let arguments = CommandLine.arguments
guard arguments.count == 6, let step = Int(arguments[2]), let keepLast = Int(arguments[3]),
      let tensorCount = Int(arguments[4]), let elements = Int(arguments[5]) else {
    FileHandle.standardError.write(Data("usage: checkpoint-crash-helper DIR STEP KEEP_LAST TENSORS ELEMENTS\n".utf8))
    exit(2)
}
let store = CheckpointStore(directory: URL(fileURLWithPath: arguments[1]), keepLast: keepLast)
let values = [Float](unsafeUninitializedCapacity: elements) { buffer, count in
    for i in 0..<elements { buffer[i] = Float(step) + Float(i) * 1e-3 }
    count = elements
}
do {
    let saved = try values.withUnsafeBufferPointer { buffer in
        try store.save(step: step, expectedTensorCount: tensorCount) { writer in
            try writer.setAttributes(["format_version": .int(1), "step": .int(Int64(step))])
            for t in 0..<tensorCount {
                try writer.write(TensorSource(name: "tensor.\(t)", shape: [elements], values: buffer), to: .model)
            }
        }
    }
    print(saved.url.path)
} catch {
    FileHandle.standardError.write(Data("\(error)\n".utf8))
    exit(2)
}
