// Throughput of the CPU quantized products over a real GGUF model's weight matrices (memory-mapped, never expanded):
// one "decode step" is every layer's q/k/v/o/gate/up/down product plus the LM head for one activation row; prompt
// processing runs the layers on `--prompt` rows and the LM head on the last row (as llama-bench's pp test does);
// batched generation runs everything on `--batch` rows. Prints one JSON object per run (scripts/bench-inference.sh).
//   quant-bench MODEL.gguf [--threads N] [--decode-steps N] [--prompt N] [--batch N] [--reps N] [--sweep]
import DraftDevice
import DraftFormats
import Foundation

struct Options {
    var model = ""
    var threads = 2
    var decodeSteps = 128
    var prompt = 512
    var batch = 64
    var reps = 3
    var sweep = false
}

func parse() -> Options {
    var o = Options()
    var args = CommandLine.arguments.dropFirst()
    func number(_ flag: String) -> Int {
        guard let v = args.popFirst(), let n = Int(v), n > 0 else {
            FileHandle.standardError.write("quant-bench: \(flag) expects a positive integer\n".data(using: .utf8)!)
            exit(2)
        }
        return n
    }
    while let a = args.popFirst() {
        switch a {
        case "--threads": o.threads = number(a)
        case "--decode-steps": o.decodeSteps = number(a)
        case "--prompt": o.prompt = number(a)
        case "--batch": o.batch = number(a)
        case "--reps": o.reps = number(a)
        case "--sweep": o.sweep = true
        default: o.model = a
        }
    }
    if o.model.isEmpty {
        FileHandle.standardError.write("usage: quant-bench MODEL.gguf [--threads N] ...\n".data(using: .utf8)!)
        exit(2)
    }
    return o
}

func now() -> Double { Double(DispatchTime.now().uptimeNanoseconds) / 1e9 }

let options = parse()
let file: GGUFFile
do { file = try GGUFFile(path: options.model) } catch {
    FileHandle.standardError.write("quant-bench: \(error)\n".data(using: .utf8)!)
    exit(2)
}
func matrix(_ name: String) -> QuantizedMatrix? {
    guard let info = file.tensor(named: name), info.dimensions.count == 2 else { return nil }
    return QuantizedMatrix(type: info.type, rows: info.rows, columns: info.columns, data: file.data(info).baseAddress!)
}
var layers: [QuantizedMatrix] = []
var layer = 0
while matrix("blk.\(layer).attn_q.weight") != nil {
    for part in ["attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"] {
        if let m = matrix("blk.\(layer).\(part).weight") { layers.append(m) }
    }
    layer += 1
}
guard var head = matrix("output.weight") ?? matrix("token_embd.weight"), !layers.isEmpty else {
    FileHandle.standardError.write("quant-bench: \(options.model): expected blk.N.attn_q.weight and token_embd.weight\n".data(using: .utf8)!)
    exit(2)
}
let device = CPUDevice(threads: options.threads)
// As an engine runs them: each matrix with its backend layout (the interleaved rows of the int16 few-row products).
var preparedMemory: [AnyObject?] = []
do {
    layers = try layers.map {
        let (matrix, owner) = try device.prepareForProducts($0)
        preparedMemory.append(owner)
        return matrix
    }
    let (matrix, owner) = try device.prepareForProducts(head)
    head = matrix
    preparedMemory.append(owner)
} catch {
    FileHandle.standardError.write("quant-bench: \(error)\n".data(using: .utf8)!)
    exit(2)
}
let widest = (layers + [head]).map { max($0.rows, $0.columns) }.max()!
let maxRows = max(options.prompt, options.batch)
let x = try device.allocate(Float.self, count: maxRows * widest)
let y = try device.allocate(Float.self, count: maxRows * widest)
do {
    var rng = SystemRandomNumberGenerator()
    let values = (0..<(maxRows * widest)).map { _ in Float.random(in: -1...1, using: &rng) }
    try values.withUnsafeBufferPointer { try device.copyToDevice($0, x) }
}

/// One pass over the model's products: `m` rows through the layers, `headRows` through the LM head.
func step(_ m: Int, headRows: Int) throws {
    for w in layers { try device.quantizedLinear(x: x, weight: w, y: y, m: m) }
    try device.quantizedLinear(x: x, weight: head, y: y, m: headRows)
}

func median(_ v: [Double]) -> Double { let s = v.sorted(); return s[s.count / 2] }

let weightBytes = (layers + [head]).reduce(0) { $0 + $1.rows * $1.rowBytes }
let macsPerRow = (layers + [head]).reduce(0) { $0 + $1.rows * $1.columns }
let layerMacs = layers.reduce(0) { $0 + $1.rows * $1.columns }
try step(1, headRows: 1)  // touch the mapping once

var decode: [Double] = [], prompt: [Double] = [], batched: [Double] = []
for _ in 0..<options.reps {
    var t = now()
    for _ in 0..<options.decodeSteps { try step(1, headRows: 1) }
    decode.append(Double(options.decodeSteps) / (now() - t))
    t = now()
    try step(options.prompt, headRows: 1)
    prompt.append(Double(options.prompt) / (now() - t))
    t = now()
    try step(options.batch, headRows: options.batch)
    batched.append(Double(options.batch) / (now() - t))
}
/// Streaming read bandwidth with the same threads (sum of a 512 MiB buffer, best of 3): the decode ceiling.
func readBandwidth() -> Double {
    let count = 512 << 20 / 4
    let buffer = UnsafeMutablePointer<Float>.allocate(capacity: count)
    defer { buffer.deallocate() }
    buffer.initialize(repeating: 1, count: count)
    var best = 0.0
    let chunks = options.threads
    var sink = [Float](repeating: 0, count: chunks)
    for _ in 0..<3 {
        let t = now()
        sink.withUnsafeMutableBufferPointer { sink in
            DispatchQueue.concurrentPerform(iterations: chunks) { c in
                let raw = UnsafeRawPointer(buffer + count / chunks * c)
                var a = SIMD16<Float>(), b = SIMD16<Float>()
                var i = 0
                while i < count / chunks * 4 {
                    a += raw.load(fromByteOffset: i, as: SIMD16<Float>.self)
                    b += raw.load(fromByteOffset: i + 64, as: SIMD16<Float>.self)
                    i += 128
                }
                sink[c] = (a + b).sum()
            }
        }
        best = max(best, Double(count * 4) / (now() - t) / 1e9)
    }
    return best
}

/// Milliseconds of one m = 1 pass over the layers and over the LM head, apart (medians of 9).
func decodeSplit() throws -> (Double, Double) {
    var layerTimes: [Double] = [], headTimes: [Double] = []
    for _ in 0..<9 {
        var t = now()
        for w in layers { try device.quantizedLinear(x: x, weight: w, y: y, m: 1) }
        layerTimes.append((now() - t) * 1e3)
        t = now()
        try device.quantizedLinear(x: x, weight: head, y: y, m: 1)
        headTimes.append((now() - t) * 1e3)
    }
    return (median(layerTimes), median(headTimes))
}

let (layersMs, headMs) = try decodeSplit()
let bandwidth = readBandwidth()
var result: [String: Any] = [
    "read_gbps": bandwidth,
    "decode_layers_ms": layersMs,
    "decode_head_ms": headMs,
    "head_type": head.type.name,
    "decode_bandwidth_limit_tps": bandwidth * 1e9 / Double(weightBytes),
    "threads": options.threads,
    "activations": device.quantizedActivations.rawValue,
    "weight_mib": Double(weightBytes) / 1048576,
    "decode_tps": median(decode),
    "decode_gbps": median(decode) * Double(weightBytes) / 1e9,
    "prompt_tps": median(prompt),
    "prompt_gflops": median(prompt) * 2 * Double(layerMacs) / 1e9,
    "batch": options.batch,
    "batch_tps": median(batched),
    "batch_gflops": median(batched) * 2 * Double(macsPerRow) / 1e9,
]
if options.sweep {
    // Seconds per row of the layer products at each m, to place the fused/panel crossover.
    var sweep: [String: Double] = [:]
    for m in [1, 2, 4, 8, 12, 16, 24, 32, 64, 96, 128, 256] where m <= maxRows {
        var times: [Double] = []
        for _ in 0..<3 {
            let t = now()
            for w in layers { try device.quantizedLinear(x: x, weight: w, y: y, m: m) }
            times.append((now() - t) / Double(m))
        }
        sweep["\(m)"] = median(times) * 1e3
    }
    result["ms_per_row_by_m"] = sweep
}
let json = try JSONSerialization.data(withJSONObject: result, options: [.sortedKeys])
print(String(decoding: json, as: UTF8.self))
