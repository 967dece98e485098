import DraftDevice
import DraftFormats
import Foundation
import XCTest

/// The CPU backend's quantized products and embedding lookup against a scalar reference dequantizer written here
/// from ggml's block layouts (and, where the test venv exists, against `gguf.quants.dequantize`).
final class QuantizedKernelTests: XCTestCase {
    static let types: [GGMLType] = [.f32, .f16, .bf16, .q8_0, .q4_0, .q4_1, .q5_0, .q5_1, .q4_K, .q5_K, .q6_K]

    // MARK: Random blocks

    /// `rows` rows of `columns` random weights of `type`: random quant bits, half scales of sane size.
    static func randomMatrix(_ type: GGMLType, rows: Int, columns: Int, seed: UInt64) -> [UInt8] {
        var rng = SplitMix(seed)
        let blocks = rows * columns / type.blockElements
        var bytes = [UInt8](repeating: 0, count: blocks * type.blockBytes)
        for i in bytes.indices { bytes[i] = UInt8(truncatingIfNeeded: rng.next()) }
        func putHalf(_ offset: Int, _ value: Float) {
            let bits = Float16(value).bitPattern
            bytes[offset] = UInt8(bits & 0xFF)
            bytes[offset + 1] = UInt8(bits >> 8)
        }
        func scale(_ range: ClosedRange<Float>) -> Float { range.lowerBound + (range.upperBound - range.lowerBound) * rng.unit() }
        switch type {
        case .f32:
            for i in 0..<(blocks) {
                let v = (rng.unit() - 0.5) * 2
                withUnsafeBytes(of: v.bitPattern.littleEndian) { for k in 0..<4 { bytes[i * 4 + k] = $0[k] } }
            }
        case .f16:
            for i in 0..<blocks { putHalf(2 * i, (rng.unit() - 0.5) * 2) }
        case .bf16:
            for i in 0..<blocks {
                let bits = ((rng.unit() - 0.5) * 2).bitPattern >> 16
                bytes[2 * i] = UInt8(bits & 0xFF)
                bytes[2 * i + 1] = UInt8(bits >> 8)
            }
        case .q4_0, .q5_0, .q8_0:
            for b in 0..<blocks { putHalf(b * type.blockBytes, scale(0.001...0.05)) }
        case .q4_1, .q5_1:
            for b in 0..<blocks {
                putHalf(b * type.blockBytes, scale(0.001...0.05))
                putHalf(b * type.blockBytes + 2, scale(-0.4...0.1))
            }
        case .q4_K, .q5_K:
            for b in 0..<blocks {
                putHalf(b * type.blockBytes, scale(0.0005...0.005))
                putHalf(b * type.blockBytes + 2, scale(0.0005...0.005))
            }
        case .q6_K:
            for b in 0..<blocks { putHalf(b * type.blockBytes + 208, scale(0.0005...0.005)) }
        }
        return bytes
    }

    // MARK: Reference dequantizer (scalar, element by element, ggml's formulas and order of operations)

    static func reference(_ type: GGMLType, _ bytes: [UInt8], elements: Int) -> [Float] {
        func u8(_ i: Int) -> Int { Int(bytes[i]) }
        func i8(_ i: Int) -> Int { Int(Int8(bitPattern: bytes[i])) }
        func half(_ i: Int) -> Float { Float(Float16(bitPattern: UInt16(bytes[i]) | UInt16(bytes[i + 1]) << 8)) }
        var out = [Float](repeating: 0, count: elements)
        let n = type.blockElements, size = type.blockBytes
        for e in 0..<elements {
            let b = (e / n) * size, j = e % n
            switch type {
            case .f32:
                out[e] = Float(bitPattern: UInt32(u8(4 * e)) | UInt32(u8(4 * e + 1)) << 8
                               | UInt32(u8(4 * e + 2)) << 16 | UInt32(u8(4 * e + 3)) << 24)
            case .f16: out[e] = half(2 * e)
            case .bf16: out[e] = Float(bitPattern: (UInt32(u8(2 * e)) | UInt32(u8(2 * e + 1)) << 8) << 16)
            case .q8_0: out[e] = Float(i8(b + 2 + j)) * half(b)
            case .q4_0:
                let q = j < 16 ? u8(b + 2 + j) & 15 : u8(b + 2 + j - 16) >> 4
                out[e] = Float(q - 8) * half(b)
            case .q4_1:
                let q = j < 16 ? u8(b + 4 + j) & 15 : u8(b + 4 + j - 16) >> 4
                out[e] = Float(q) * half(b) + half(b + 2)
            case .q5_0, .q5_1:
                let base = type == .q5_1 ? b + 4 : b + 2
                let qh = u8(base) | u8(base + 1) << 8 | u8(base + 2) << 16 | u8(base + 3) << 24
                let low = j < 16 ? u8(base + 4 + j) & 15 : u8(base + 4 + j - 16) >> 4
                let q = low | ((qh >> j) & 1) << 4
                out[e] = type == .q5_1 ? Float(q) * half(b) + half(b + 2) : Float(q - 16) * half(b)
            case .q4_K, .q5_K:
                let sub = j / 32                       // sub-block of 32 with its own scale and minimum
                let sc = b + 4
                let (s, m): (Int, Int) = sub < 4
                    ? (u8(sc + sub) & 63, u8(sc + sub + 4) & 63)
                    : ((u8(sc + sub + 4) & 15) | (u8(sc + sub - 4) >> 6) << 4,
                       (u8(sc + sub + 4) >> 4) | (u8(sc + sub) >> 6) << 4)
                let qs = b + (type == .q5_K ? 48 : 16)
                let l = j % 32, chunk = j / 64         // 64 elements share 32 bytes: low then high nibbles
                let byte = u8(qs + chunk * 32 + l)
                var q = sub % 2 == 0 ? byte & 15 : byte >> 4
                if type == .q5_K { q += ((u8(b + 16 + l) >> sub) & 1) << 4 }
                out[e] = half(b) * Float(s) * Float(q) - half(b + 2) * Float(m)
            case .q6_K:
                let half128 = j / 128, r = j % 128, quarter = r / 32, l = r % 32
                let ql = u8(b + half128 * 64 + (quarter % 2) * 32 + l)
                let low = quarter < 2 ? ql & 15 : ql >> 4
                let high = (u8(b + 128 + half128 * 32 + l) >> (2 * quarter)) & 3
                let scale = i8(b + 192 + half128 * 8 + l / 16 + 2 * quarter)
                out[e] = half(b + 208) * Float(scale) * Float((low | high << 4) - 32)
            }
        }
        return out
    }

    // MARK: Helpers

    let device = CPUDevice(threads: 2, quantizedActivations: .exact)

    func upload(_ values: [Float]) throws -> DevicePointer<Float> {
        let p = try device.allocate(Float.self, count: values.count)
        try values.withUnsafeBufferPointer { try device.copyToDevice($0, p) }
        return p
    }

    func download(_ p: DevicePointer<Float>, count: Int) throws -> [Float] {
        var out = [Float](repeating: 0, count: count)
        try out.withUnsafeMutableBufferPointer { try device.copyToHost(p, $0) }
        return out
    }

    func columnsFor(_ type: GGMLType) -> [Int] {
        type.blockElements == 256 ? [512, 768] : type.blockElements == 32 ? [96, 576] : [40, 576]
    }

    // MARK: Tests

    func testEmbeddingMatchesReferenceExactly() throws {
        for type in Self.types {
            let rows = 7, columns = columnsFor(type)[0]
            let bytes = Self.randomMatrix(type, rows: rows, columns: columns, seed: 11 + UInt64(type.rawValue))
            let ref = Self.reference(type, bytes, elements: rows * columns)
            let tokens: [Int32] = [3, 0, 6, 3]
            let ids = try device.allocate(Int32.self, count: tokens.count)
            try tokens.withUnsafeBufferPointer { try device.copyToDevice($0, ids) }
            let out = try device.allocate(Float.self, count: tokens.count * columns)
            try bytes.withUnsafeBytes { raw in
                let table = QuantizedMatrix(type: type, rows: rows, columns: columns, data: raw.baseAddress!)
                try device.quantizedEmbedding(tokens: ids, table: table, out: out, count: tokens.count)
            }
            let got = try download(out, count: tokens.count * columns)
            for (i, t) in tokens.enumerated() {
                for c in 0..<columns where got[i * columns + c] != ref[Int(t) * columns + c] {
                    XCTFail("\(type.name): embedding row \(t) column \(c): \(got[i * columns + c]) != \(ref[Int(t) * columns + c])")
                    break
                }
            }
            device.free(ids); device.free(out)
        }
    }

    func testLinearMatchesDequantizedFloat64Product() throws {
        for type in Self.types {
            for columns in columnsFor(type) {
                // 13 rows: three groups of 4 for the fused kernels and a tail row; 130 rows: split over both threads.
                for rows in [13, 130] {
                    let bytes = Self.randomMatrix(type, rows: rows, columns: columns, seed: UInt64(rows * columns) + UInt64(type.rawValue))
                    let w = Self.reference(type, bytes, elements: rows * columns)
                    for m in [1, 3, 17, 64] {
                        var rng = SplitMix(UInt64(m * 7 + rows))
                        let x = (0..<(m * columns)).map { _ in (rng.unit() - 0.5) * 2 }
                        let xp = try upload(x)
                        let yp = try device.allocate(Float.self, count: m * rows)
                        try bytes.withUnsafeBytes { raw in
                            let matrix = QuantizedMatrix(type: type, rows: rows, columns: columns, data: raw.baseAddress!)
                            try device.quantizedLinear(x: xp, weight: matrix, y: yp, m: m)
                        }
                        let y = try download(yp, count: m * rows)
                        var worst = 0.0
                        for i in 0..<m {
                            for r in 0..<rows {
                                var exact = 0.0, magnitude = 0.0
                                for c in 0..<columns {
                                    let p = Double(w[r * columns + c]) * Double(x[i * columns + c])
                                    exact += p
                                    magnitude += abs(p)
                                }
                                worst = max(worst, abs(Double(y[i * rows + r]) - exact) / max(magnitude, 1e-30))
                            }
                        }
                        XCTAssertLessThan(worst, 2e-6, "\(type.name) \(rows)x\(columns) m=\(m): error / sum|w x| = \(worst)")
                        device.free(xp); device.free(yp)
                    }
                }
            }
        }
    }

    /// Matrices taller than one fp32 panel (about 1 MiB of rows), with a partial last panel.
    func testLinearAcrossSeveralPanels() throws {
        for (type, rows, columns) in [(GGMLType.q4_1, 1000, 576), (.q6_K, 700, 768)] {
            let bytes = Self.randomMatrix(type, rows: rows, columns: columns, seed: 77)
            let w = Self.reference(type, bytes, elements: rows * columns)
            let m = 17
            var rng = SplitMix(3)
            let x = (0..<(m * columns)).map { _ in (rng.unit() - 0.5) * 2 }
            let xp = try upload(x)
            let yp = try device.allocate(Float.self, count: m * rows)
            try bytes.withUnsafeBytes { raw in
                let matrix = QuantizedMatrix(type: type, rows: rows, columns: columns, data: raw.baseAddress!)
                try device.quantizedLinear(x: xp, weight: matrix, y: yp, m: m)
            }
            let y = try download(yp, count: m * rows)
            var worst = 0.0
            for i in 0..<m {
                for r in 0..<rows {
                    var exact = 0.0, magnitude = 0.0
                    for c in 0..<columns {
                        let p = Double(w[r * columns + c]) * Double(x[i * columns + c])
                        exact += p
                        magnitude += abs(p)
                    }
                    worst = max(worst, abs(Double(y[i * rows + r]) - exact) / magnitude)
                }
            }
            XCTAssertLessThan(worst, 2e-6, "\(type.name) \(rows)x\(columns) m=\(m)")
            device.free(xp); device.free(yp)
        }
    }

    /// The integer products (`.int8`, `.int16`) against a reference written here: activations quantized per block of
    /// 32 (d = max|x| / 127 or / 32767, q rounded to nearest-even), integer dots of the weights' quants, scaled in
    /// double. Also bounds the distance to the exact product by what the quantized activations can lose (half a step
    /// of d per element), and checks that the threads' split leaves every result bit-identical.
    func testIntegerLinearMatchesIntegerReference() throws {
        guard integerKernelsAvailable else { throw XCTSkip("this CPU has no AVX-512 VNNI: the products stay exact") }
        for (mode, levels) in [(QuantizedActivations.int8, Float(127)), (.int16, 32767)] {
            try checkIntegerLinear(mode, levels: levels)
        }
    }

    private func checkIntegerLinear(_ mode: QuantizedActivations, levels: Float) throws {
        let device2 = CPUDevice(threads: 2, quantizedActivations: mode)
        let serial = CPUDevice(threads: 1, quantizedActivations: mode)
        XCTAssertEqual(device2.quantizedActivations, mode)
        func u8(_ b: [UInt8], _ i: Int) -> Int { Int(b[i]) }
        func half(_ b: [UInt8], _ i: Int) -> Double {
            Double(Float(Float16(bitPattern: UInt16(b[i]) | UInt16(b[i + 1]) << 8)))
        }
        for type in [GGMLType.q4_0, .q4_1, .q8_0] {
            for columns in [96, 576] {
                // 130 rows prepared: 8 interleaved groups of 16 and 2 rows the row kernels take; 13: no group.
                for rows in [13, 130] {
                  for prepare in [false, true] {
                    let bytes = Self.randomMatrix(type, rows: rows, columns: columns, seed: UInt64(rows + columns))
                    let w = Self.reference(type, bytes, elements: rows * columns)
                    let rowBytes = columns / 32 * type.blockBytes
                    let groups = try bytes.withUnsafeBytes { raw in
                        try device2.prepareForProducts(QuantizedMatrix(type: type, rows: rows, columns: columns,
                                                                       data: raw.baseAddress!)).matrix.interleaved?.groups
                    }
                    XCTAssertEqual(groups, rows >= 16 ? rows / 16 : nil, "\(mode) \(type.name) \(rows) rows")
                    if prepare && groups == nil { continue }  // the same product as unprepared
                    // m = 7 runs a group of 4 rows and one of 3; from m = 16 the 16-bit GEMM runs whatever the
                    // mode (on interleaved weights from m = 64), its tiles of 32 weight rows ending part-full (13
                    // and 130 rows), with 1 row past the groups of 4 activation rows (17, 37, 65).
                    for m in [1, 2, 3, 4, 7, 17, 37] + (prepare ? [65] : []) {
                        let levels: Float = m >= (prepare ? 64 : 16) ? 32767 : levels
                        var rng = SplitMix(UInt64(m * 31 + rows))
                        var x = (0..<(m * columns)).map { _ in (rng.unit() - 0.5) * 2 }
                        for c in 0..<32 { x[c] = 0 }  // an all-zero block: d = 0
                        let xp = try upload(x)
                        let yp = try device2.allocate(Float.self, count: m * rows)
                        let ys = try serial.allocate(Float.self, count: m * rows)
                        try bytes.withUnsafeBytes { raw in
                            let plain = QuantizedMatrix(type: type, rows: rows, columns: columns, data: raw.baseAddress!)
                            let (matrix, owner) = prepare ? try device2.prepareForProducts(plain) : (plain, nil)
                            try withExtendedLifetime(owner) {
                                try device2.quantizedLinear(x: xp, weight: matrix, y: yp, m: m)
                                try serial.quantizedLinear(x: xp, weight: matrix, y: ys, m: m)
                            }
                        }
                        let y = try download(yp, count: m * rows), ySerial = try download(ys, count: m * rows)
                        XCTAssertEqual(y, ySerial, "\(mode) \(type.name) m=\(m): 1 and 2 threads differ")
                        var worstReference = 0.0, worstBound = 0.0
                        for i in 0..<m {
                            // The activation row's blocks as the kernel quantizes them.
                            var q = [Int](repeating: 0, count: columns), d = [Double](repeating: 0, count: columns / 32)
                            for b in 0..<(columns / 32) {
                                let block = x[(i * columns + b * 32)..<(i * columns + b * 32 + 32)]
                                let top = block.map { abs($0) }.max()!
                                let inverse: Float = top > 0 ? levels / top : 0
                                d[b] = Double(top / levels)
                                for (k, v) in block.enumerated() { q[b * 32 + k] = Int((v * inverse).rounded(.toNearestOrEven)) }
                            }
                            for r in 0..<rows {
                                var reference = 0.0, magnitude = 0.0, exact = 0.0, loss = 0.0
                                for b in 0..<(columns / 32) {
                                    let p = r * rowBytes + b * type.blockBytes
                                    var dot = 0, sum = 0
                                    for j in 0..<32 {
                                        let wq: Int
                                        switch type {
                                        case .q8_0: wq = Int(Int8(bitPattern: bytes[p + 2 + j]))
                                        case .q4_0: wq = (j < 16 ? u8(bytes, p + 2 + j) & 15 : u8(bytes, p + 2 + j - 16) >> 4) - 8
                                        default: wq = j < 16 ? u8(bytes, p + 4 + j) & 15 : u8(bytes, p + 4 + j - 16) >> 4
                                        }
                                        dot += wq * q[b * 32 + j]
                                        sum += q[b * 32 + j]
                                        let c = b * 32 + j
                                        let product = Double(w[r * columns + c]) * Double(x[i * columns + c])
                                        exact += product
                                        magnitude += abs(product)
                                        loss += abs(Double(w[r * columns + c])) * d[b] / 2
                                    }
                                    reference += half(bytes, p) * d[b] * Double(dot)
                                    if type == .q4_1 { reference += half(bytes, p + 2) * d[b] * Double(sum) }
                                }
                                let got = Double(y[i * rows + r])
                                worstReference = max(worstReference, abs(got - reference) / max(magnitude, 1e-30))
                                worstBound = max(worstBound, abs(got - exact) / (loss + 1e-6 * magnitude))
                            }
                        }
                        let what = "\(mode) \(type.name) \(rows)x\(columns) m=\(m)\(prepare ? " interleaved" : "")"
                        XCTAssertLessThan(worstReference, 1e-6, "\(what): against its reference")
                        XCTAssertLessThanOrEqual(worstBound, 1, "\(what): past the quantization bound")
                        device2.free(xp); device2.free(yp); serial.free(ys)
                    }
                  }
                }
            }
        }
    }

    /// Rows of an interleaved matrix (a fused qkv's q, k and v): a slice that starts on a group keeps the groups it
    /// covers and takes its other rows from the plain layout (the whole product's rows exactly), one that does not
    /// falls back to the row kernels (the same sums in another order).
    func testInterleavedRowSlicesMatchTheWholeProduct() throws {
        guard integerKernelsAvailable else { throw XCTSkip("this CPU has no AVX-512 VNNI: nothing is interleaved") }
        for mode in [QuantizedActivations.int16, .int8] {
            try checkInterleavedRowSlices(CPUDevice(threads: 2, quantizedActivations: mode))
        }
    }

    private func checkInterleavedRowSlices(_ device: CPUDevice) throws {
        let rows = 72, columns = 64, m = 3
        let bytes = Self.randomMatrix(.q4_1, rows: rows, columns: columns, seed: 11)
        var rng = SplitMix(7)
        let xp = try upload((0..<(m * columns)).map { _ in rng.unit() - 0.5 })
        try bytes.withUnsafeBytes { raw in
            let plain = QuantizedMatrix(type: .q4_1, rows: rows, columns: columns, data: raw.baseAddress!)
            let (whole, owner) = try device.prepareForProducts(plain)
            defer { withExtendedLifetime(owner) {} }
            XCTAssertEqual(whole.interleaved?.groups, 4)
            let yp = try device.allocate(Float.self, count: m * rows)
            try device.quantizedLinear(x: xp, weight: whole, y: yp, m: m)
            let y = try download(yp, count: m * rows)
            // (range, interleaved groups the slice keeps)
            for (range, groups) in [(16..<48, 2), (32..<72, 2), (64..<72, nil), (8..<40, nil), (0..<72, 4)] as [(Range<Int>, Int?)] {
                let slice = whole.rows(range)
                XCTAssertEqual(slice.interleaved?.groups, groups, "\(device.quantizedActivations) rows \(range)")
                let sp = try device.allocate(Float.self, count: m * range.count)
                try device.quantizedLinear(x: xp, weight: slice, y: sp, m: m)
                let got = try download(sp, count: m * range.count)
                for i in 0..<m {
                    let sliced = Array(got[(i * range.count)..<((i + 1) * range.count)])
                    let expected = Array(y[(i * rows + range.lowerBound)..<(i * rows + range.upperBound)])
                    if groups != nil {
                        XCTAssertEqual(sliced, expected, "rows \(range), row \(i)")
                    } else {
                        for (a, b) in zip(sliced, expected) {
                            XCTAssertEqual(a, b, accuracy: 1e-5 * max(1, abs(b)), "rows \(range), row \(i)")
                        }
                    }
                }
                device.free(sp)
            }
            device.free(yp)
        }
        device.free(xp)
    }

    func testOutOfRangeTokenIsAnError() throws {
        let bytes = Self.randomMatrix(.q4_1, rows: 4, columns: 64, seed: 5)
        let out = try device.allocate(Float.self, count: 2 * 64)
        for bad: Int32 in [4, -1] {
            let ids = try device.allocate(Int32.self, count: 2)
            try [0, bad].withUnsafeBufferPointer { try device.copyToDevice($0, ids) }
            try bytes.withUnsafeBytes { raw in
                let table = QuantizedMatrix(type: .q4_1, rows: 4, columns: 64, data: raw.baseAddress!)
                XCTAssertThrowsError(try device.quantizedEmbedding(tokens: ids, table: table, out: out, count: 2)) {
                    XCTAssertTrue("\($0)".contains("token \(bad) at position 1"), "\($0)")
                }
            }
            device.free(ids)
        }
        device.free(out)
    }

    func testColumnsNotWholeBlocksAreAnError() throws {
        let bytes = [UInt8](repeating: 0, count: 4096)
        let x = try device.allocate(Float.self, count: 100)
        let y = try device.allocate(Float.self, count: 4)
        try bytes.withUnsafeBytes { raw in
            let matrix = QuantizedMatrix(type: .q4_K, rows: 1, columns: 100, data: raw.baseAddress!)
            XCTAssertThrowsError(try device.quantizedLinear(x: x, weight: matrix, y: y, m: 1)) {
                XCTAssertTrue("\($0)".contains("multiple of the block size 256"), "\($0)")
            }
        }
        device.free(x); device.free(y)
    }

    /// Our dequantizer (through the embedding lookup) against `gguf.quants.dequantize`, for every quantized type.
    func testDequantizationMatchesGGUFPython() throws {
        let python = try LoaderFixtures.python.get()
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("quant-\(getpid())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let rows = 3
        var expected: [(GGMLType, Int, [UInt8])] = []
        for type in Self.types where type != .f32 {
            let columns = columnsFor(type)[0]
            let bytes = Self.randomMatrix(type, rows: rows, columns: columns, seed: 99 + UInt64(type.rawValue))
            try Data(bytes).write(to: dir.appendingPathComponent("\(type.rawValue).bin"))
            expected.append((type, columns, bytes))
        }
        let script = """
            import sys, numpy as np
            from gguf import quants, GGMLQuantizationType
            d = sys.argv[1]
            for t in sys.argv[2:]:
                raw = np.fromfile(f"{d}/{t}.bin", dtype=np.uint8)
                quants.dequantize(raw, GGMLQuantizationType(int(t))).astype(np.float32).tofile(f"{d}/{t}.f32")
            """
        _ = try LoaderFixtures.execute(python, ["-c", script, dir.path] + expected.map { "\($0.0.rawValue)" })
        for (type, columns, bytes) in expected {
            let data = try Data(contentsOf: dir.appendingPathComponent("\(type.rawValue).f32"))
            let theirs = data.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
            XCTAssertEqual(theirs.count, rows * columns, type.name)
            let ids = try device.allocate(Int32.self, count: rows)
            try [0, 1, 2].withUnsafeBufferPointer { try device.copyToDevice($0, ids) }
            let out = try device.allocate(Float.self, count: rows * columns)
            try bytes.withUnsafeBytes { raw in
                let table = QuantizedMatrix(type: type, rows: rows, columns: columns, data: raw.baseAddress!)
                try device.quantizedEmbedding(tokens: ids, table: table, out: out, count: rows)
            }
            let ours = try download(out, count: rows * columns)
            let ref = Self.reference(type, bytes, elements: rows * columns)
            var mismatches = 0
            for i in 0..<min(ours.count, theirs.count) where abs(ours[i] - theirs[i]) > 1e-6 * max(1, abs(theirs[i])) {
                mismatches += 1
            }
            XCTAssertEqual(mismatches, 0, "\(type.name): \(mismatches) values differ from gguf.quants.dequantize")
            XCTAssertEqual(ours, ref, "\(type.name): the test's reference disagrees with the kernels")
            device.free(ids); device.free(out)
        }
    }
}

/// A small deterministic generator (SplitMix64) so failures reproduce.
struct SplitMix {
    var state: UInt64
    init(_ seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    mutating func unit() -> Float { Float(next() >> 40) / Float(1 << 24) }
}
