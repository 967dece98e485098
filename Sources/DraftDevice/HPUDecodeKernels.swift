import HPUPluginABI

/// The fp32 decode kernels on the HPU backend, launched by the GUIDs of ABI 1.1 (`hpu_plugin.h`, "Decode kernels").
///
/// A plugin of ABI 1.0 still trains, but has none of these GUIDs: each call below then throws
/// `DeviceError(.plugin)` naming the plugin, its version and the version inference needs, before anything is
/// launched. The quantized products keep `DecodeKernels`' defaults (CPU only, `.unsupported`).
extension HPUDevice {
    public func rotaryEmbedding(x: DevicePointer<Float>, positions: DevicePointer<Int32>, cos: DevicePointer<Float>,
                                sin: DevicePointer<Float>, rows: Int, heads: Int, headDim: Int, maxPositions: Int) throws {
        try requireDecodeKernels()
        let params = HpuRopeAtPositionsParams(rows: Int64(rows), heads: Int64(heads), headDim: Int64(headDim),
                                              maxPositions: Int64(maxPositions))
        try launch(HPU_GUID_ROPE_AT_POSITIONS, params, x.address, positions.address, cos.address, sin.address)
    }

    public func kvCacheWrite(rows: DevicePointer<Float>, cache: DevicePointer<Float>, slots: DevicePointer<Int32>,
                             positions: DevicePointer<Int32>, count: Int, width: Int, capacity: Int,
                             slotCount: Int) throws {
        try requireDecodeKernels()
        let params = HpuKvCacheWriteParams(count: Int64(count), width: Int64(width), capacity: Int64(capacity),
                                           slotCount: Int64(slotCount))
        try launch(HPU_GUID_KV_CACHE_WRITE, params, rows.address, cache.address, slots.address, positions.address)
    }

    public func attentionOverCache(q: DevicePointer<Float>, kCache: DevicePointer<Float>, vCache: DevicePointer<Float>,
                                   out: DevicePointer<Float>, slots: DevicePointer<Int32>,
                                   positions: DevicePointer<Int32>, rows: Int, heads: Int, kvHeads: Int, headDim: Int,
                                   capacity: Int, slotCount: Int) throws {
        try requireDecodeKernels()
        let params = HpuAttentionOverCacheParams(rows: Int64(rows), heads: Int64(heads), kvHeads: Int64(kvHeads),
                                                 headDim: Int64(headDim), capacity: Int64(capacity),
                                                 slotCount: Int64(slotCount))
        try launch(HPU_GUID_ATTENTION_OVER_CACHE, params, q.address, kCache.address, vCache.address, out.address,
                   slots.address, positions.address)
    }

    public func addBias(x: DevicePointer<Float>, bias: DevicePointer<Float>, rows: Int, width: Int) throws {
        try requireDecodeKernels()
        try launch(HPU_GUID_ADD_BIAS, HpuAddBiasParams(rows: Int64(rows), width: Int64(width)), x.address,
                   bias.address)
    }

    /// Throws unless the plugin has the decode GUIDs: on an older plugin the launch would fail with an "unknown
    /// GUID" that does not say what to do, so the refusal names both versions instead.
    private func requireDecodeKernels() throws {
        guard plugin.implementsDecodeKernels else {
            throw DeviceError(.plugin, "hpu:\(module): plugin \(plugin.path) implements HPU ABI "
                                  + "\(HPUPlugin.versionString(plugin.abiVersion)); inference needs "
                                  + "\(HPUPlugin.versionString(HPUPlugin.inferenceABIVersion)) (its decode kernels)")
        }
    }
}
