// Writing one checkpoint file: attributes, float32 tensors straight from the caller's memory, int64 arrays.
// A writer exists only inside `CheckpointStore.save`, which owns the file's lifetime (temp name, flush, rename).
import CHDF5
import Foundation

/// A float32 tensor to write: borrowed memory, no copy (50M-parameter models with AdamW moments are ~600 MB).
/// `values` must stay valid for the duration of the `write` call that takes it, and nothing longer.
public struct TensorSource {
    /// The dataset name inside its group, e.g. `model.layers.0.self_attn.q_proj.weight` (no `/`).
    public let name: String
    /// Dimensions, outermost first (row-major, as PyTorch and h5py see them); empty for a scalar.
    public let shape: [Int]
    /// The data, `shape.reduce(1, *)` elements.
    public let values: UnsafeBufferPointer<Float>

    public init(name: String, shape: [Int], values: UnsafeBufferPointer<Float>) {
        self.name = name
        self.shape = shape
        self.values = values
    }
}

/// Fills one checkpoint file, handed to the build closure of `CheckpointStore.save`.
///
/// Layout: root attributes; groups `/model` and `/optimizer` holding float32 datasets (contiguous, uncompressed, one
/// `H5Dwrite` each from the caller's buffer); `/data` and `/rng` holding int64 arrays; attributes on any group.
/// Every dataset carries `checksum_xxh64` (see `CheckpointChecksum`). The writer stores `format` and
/// `format_version` itself; the caller adds `step`, `tokens_seen`, `stage`, `world_size`, `config_yaml`,
/// `tokenizer_sha256` and whatever else it needs to resume.
public struct CheckpointWriter {
    /// The temporary file being written (`step-XXXXXXXX.h5.tmp`).
    public let url: URL
    /// Float32 tensors written so far.
    public private(set) var tensorCount = 0
    /// Bytes of dataset payload written so far (tensors and int64 arrays).
    public private(set) var payloadBytes = 0

    let file: hid_t
    private let ctx: HDF5Context
    private let pause: (seconds: Double, afterTensor: Int)?

    /// Creates (truncating) the file and its four groups. Call under `withHDF5`.
    init(creating url: URL, pause: (seconds: Double, afterTensor: Int)?) throws {
        let ctx = HDF5Context(path: url.path)
        // Creation order is tracked so h5dump, h5py and `inspect` list tensors in the order the model has them.
        let order = UInt32(H5P_CRT_ORDER_TRACKED | H5P_CRT_ORDER_INDEXED)
        let fcpl = try ctx.id(H5Pcreate(swd_h5p_file_create()), "expected to create a file property list")
        defer { H5ID.close(plist: fcpl) }
        try ctx.ok(H5Pset_link_creation_order(fcpl, order), "expected to track link creation order")
        try ctx.ok(H5Pset_attr_creation_order(fcpl, order), "expected to track attribute creation order")
        let fapl = try makeFileAccess(ctx)
        defer { H5ID.close(plist: fapl) }
        let file = try ctx.id(H5Fcreate(url.path, swd_h5f_acc_trunc(), fcpl, fapl), "expected to create the file")
        self.url = url
        self.file = file
        self.ctx = ctx
        self.pause = pause
        do {
            let gcpl = try ctx.id(H5Pcreate(swd_h5p_group_create()), "expected to create a group property list")
            defer { H5ID.close(plist: gcpl) }
            try ctx.ok(H5Pset_link_creation_order(gcpl, order), "expected to track link creation order")
            try ctx.ok(H5Pset_attr_creation_order(gcpl, order), "expected to track attribute creation order")
            for group in CheckpointGroup.allCases {
                let id = try ctx.id(H5Gcreate2(file, group.path, swd_h5p_default(), gcpl, swd_h5p_default()),
                                    "expected to create group \(group.path)")
                _ = H5Gclose(id)
            }
            try writeAttribute("format", .string(CheckpointFormat.name), on: file, where: "/", ctx)
            try writeAttribute("format_version", .int(CheckpointFormat.version), on: file, where: "/", ctx)
        } catch {
            _ = H5Fclose(file)
            throw error
        }
    }

    /// Sets (or replaces) an attribute on the root (`group` nil) or on one of the four groups.
    public mutating func setAttribute(_ name: String, _ value: CheckpointAttribute,
                                      in group: CheckpointGroup? = nil) throws {
        try withHDF5 {
            try checkName(name, what: "attribute name")
            let location = group?.path ?? "/"
            let object = try ctx.id(H5Oopen(file, location, swd_h5p_default()), "expected to open \(location)")
            defer { H5ID.close(object: object) }
            try writeAttribute(name, value, on: object, where: location, ctx)
        }
    }

    /// Sets several attributes at once, in the order given.
    public mutating func setAttributes(_ attributes: KeyValuePairs<String, CheckpointAttribute>,
                                       in group: CheckpointGroup? = nil) throws {
        for (name, value) in attributes { try setAttribute(name, value, in: group) }
    }

    /// Writes one float32 tensor with a single `H5Dwrite` from its borrowed buffer, plus its checksum.
    public mutating func write(_ tensor: TensorSource, to group: CheckpointGroup) throws {
        try withHDF5 {
            try checkName(tensor.name, what: "tensor name")
            let path = group.path + "/" + tensor.name
            guard tensor.shape.allSatisfy({ $0 >= 0 }), tensor.shape.reduce(1, *) == tensor.values.count else {
                throw CheckpointError(path: url.path, reason: "expected tensor \(path) of shape \(tensor.shape) "
                                      + "to have \(tensor.shape.reduce(1, *)) values, got \(tensor.values.count)")
            }
            try writeDataset(path: path, shape: tensor.shape, fileType: swd_h5t_ieee_f32le(),
                             memoryType: swd_h5t_native_float(), bytes: UnsafeRawBufferPointer(tensor.values))
            tensorCount += 1
            if let pause, tensorCount == pause.afterTensor { try pauseForCrashTest(pause.seconds) }
        }
    }

    /// Writes several tensors into one group, in order.
    public mutating func write(_ tensors: [TensorSource], to group: CheckpointGroup) throws {
        for tensor in tensors { try write(tensor, to: group) }
    }

    /// Writes a 1-D int64 array (a sampler cursor, RNG state) with its checksum.
    public mutating func writeInt64s(_ name: String, _ values: [Int64], to group: CheckpointGroup) throws {
        try withHDF5 {
            try checkName(name, what: "array name")
            try values.withUnsafeBytes { bytes in
                try writeDataset(path: group.path + "/" + name, shape: [values.count], fileType: swd_h5t_std_i64le(),
                                 memoryType: swd_h5t_native_int64(), bytes: bytes)
            }
        }
    }

    private func checkName(_ name: String, what: String) throws {
        guard !name.isEmpty, name != ".", !name.contains("/"), !name.utf8.contains(0) else {
            throw CheckpointError(path: url.path, reason: "expected a \(what) without '/' or NUL, got \"\(name)\"")
        }
    }

    private mutating func writeDataset(path: String, shape: [Int], fileType: hid_t, memoryType: hid_t,
                                       bytes: UnsafeRawBufferPointer) throws {
        guard H5Lexists(file, path, swd_h5p_default()) <= 0 else {
            throw CheckpointError(path: url.path, reason: "expected one dataset named \(path), got it twice")
        }
        var dims = shape.map { hsize_t($0) }
        let space = try ctx.id(shape.isEmpty ? H5Screate(H5S_SCALAR) : H5Screate_simple(Int32(shape.count), &dims, nil),
                               "expected to create the dataspace of \(path)")
        defer { H5ID.close(dataspace: space) }
        let dcpl = try ctx.id(H5Pcreate(swd_h5p_dataset_create()), "expected to create a dataset property list")
        defer { H5ID.close(plist: dcpl) }
        // Contiguous and never pre-filled: the data goes to disk once, in one write, straight from the caller.
        try ctx.ok(H5Pset_layout(dcpl, H5D_CONTIGUOUS), "expected contiguous layout for \(path)")
        try ctx.ok(H5Pset_fill_time(dcpl, H5D_FILL_TIME_NEVER), "expected no fill for \(path)")
        let dataset = try ctx.id(H5Dcreate2(file, path, fileType, space, swd_h5p_default(), dcpl, swd_h5p_default()),
                                 "expected to create dataset \(path)")
        defer { H5ID.close(dataset: dataset) }
        if let base = bytes.baseAddress, bytes.count > 0 {
            try ctx.ok(H5Dwrite(dataset, memoryType, swd_h5s_all(), swd_h5s_all(), swd_h5p_default(), base),
                       "expected to write \(bytes.count) bytes of \(path)")
        }
        try writeChecksum(CheckpointChecksum.xxh64(bytes), on: dataset, where: path, ctx)
        payloadBytes += bytes.count
    }

    /// Test hook (`SWIFTDRAFT_TEST_CHECKPOINT_PAUSE_S`): flush what is written so far, announce the pause on stderr
    /// (a test waits for this line before sending SIGKILL), then sleep with the temporary file half written.
    private func pauseForCrashTest(_ seconds: Double) throws {
        try ctx.ok(H5Fflush(file, H5F_SCOPE_GLOBAL), "expected to flush the file")
        let line = "swiftdraft: checkpoint write paused for \(seconds) s after \(tensorCount) tensors: \(url.path)\n"
        FileHandle.standardError.write(Data(line.utf8))
        Thread.sleep(forTimeInterval: seconds)
    }

    /// Flushes and closes the file; after this the writer must not be used.
    func finish() throws {
        try ctx.ok(H5Fflush(file, H5F_SCOPE_GLOBAL), "expected to flush the file")
        try ctx.ok(H5Fclose(file), "expected to close the file")
    }

    /// Closes the file after a failure, ignoring errors (the caller removes it and reports the first error).
    func abandon() {
        _ = H5Fclose(file)
        _ = H5Eclear2(swd_h5e_default())
    }
}
