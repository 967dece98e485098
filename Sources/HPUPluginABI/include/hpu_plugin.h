/*
 * SwiftDraft HPU plugin ABI.
 *
 * The seam where an accelerator runtime plugs into SwiftDraft. A plugin is a shared library loaded with dlopen()
 * that exports exactly one symbol, hpuGetPluginApi(), returning a table of function pointers. The functions follow
 * Intel Gaudi's Synapse API in names and semantics (device acquire by module id, device malloc with uint64_t device
 * addresses, streams, asynchronous DMA copies, events), plus one kernel launch by GUID standing for Gaudi's TPC
 * kernels: one GUID per kernel of SwiftDraft's `Device` protocol (Sources/DraftDevice/Device.swift), whose doc
 * comments are the normative semantics of each kernel; this header fixes the memory layout of their arguments.
 *
 * Sections: versioning, status, handles, device, memory, stream, copy, event, kernels, the API table.
 *
 * General contracts (apply to every function below unless it says otherwise)
 * - Errors are values: every call returns a synStatus and never terminates the process. A plugin must validate
 *   every device address and range it is given against its live allocations; an address that is out of range,
 *   freed, on another device, misaligned, or given in the wrong direction of a copy fails with
 *   synInvalidDeviceAddress and changes nothing. After a failure, hpuGetLastErrorDetail() on the same thread
 *   gives a human-readable explanation.
 * - Host memory cannot be validated by a plugin: host pointers (copy endpoints, `params`, `tensors`, `guid`) must be
 *   valid for the sizes given, as for memcpy. Only device addresses and handles are checked.
 * - Output pointers (synDeviceId*, uint64_t*, handles) must be non-null; on failure their contents are unspecified.
 * - Thread-safety: every function may be called from any thread. Calls on one stream must be issued from one
 *   thread at a time, or ordered by the caller, since the order in which they return is the stream order.
 * - Device addresses are uint64_t values in the plugin's own address space. They are NOT host pointers and must
 *   never be dereferenced by the host. Arithmetic on them is allowed within an allocation (a tensor may start
 *   anywhere inside an allocation, as long as the whole range it covers stays inside that one allocation).
 * - Alignment: allocations start at a multiple of HPU_DEVICE_ALIGNMENT. Every kernel tensor must be aligned to
 *   its element size (4 bytes for f32 and i32). Copies have no alignment requirement.
 * - Host memory given to synMemCopyAsync is owned by the caller and must stay valid (and, for HOST_TO_DRAM,
 *   unmodified; for DRAM_TO_HOST, unread) until the copy is known complete (synStreamSynchronize, or
 *   synEventSynchronize on an event recorded after it). The kernel `params` and `tensors` arrays are copied
 *   during synLaunchKernel and may be reused as soon as it returns.
 */
#ifndef SWIFTDRAFT_HPU_PLUGIN_H
#define SWIFTDRAFT_HPU_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------------------------------------------------------
 * Versioning
 *
 * abi_version = (MAJOR << 16) | MINOR.
 * - MINOR bumps for compatible growth: a function appended at the end of HpuPluginApi, a new kernel GUID, a new
 *   synStatus value (hosts treat unknown values as failures). A host built for 1.m works with a plugin of 1.n for
 *   any n, using only the fields that fit in the plugin's struct_size.
 * - MAJOR bumps for anything that breaks a compiled peer: a field removed, reordered or retyped, a changed params
 *   struct layout, a changed kernel semantic (for example overwrite vs accumulate), a renumbered status.
 *
 * History
 * - 1.0: the training kernels.
 * - 1.1: the decode kernels (rotary at positions, KV-cache write, attention over the cache, bias): four new GUIDs.
 *   HpuPluginApi did not grow (kernels are launched by GUID), so its struct_size is still 1.0's; a host tells a 1.0
 *   plugin by abi_version alone and must not launch a 1.1 GUID on it (a 1.0 plugin answers synUnsupported).
 * - 1.2: the token-level distillation loss (one new GUID); struct_size still 1.0's.
 * - 1.3: the distillation loss takes absent teacher entries (id -1 beside present ones: a subset LM head's student
 *   cannot score them, so their mass joins the rest bucket). Input 1.2 refused is now defined; valid 1.2 input means
 *   what it did. A 1.2 plugin refuses such rows itself (synKernelFailed, naming the row).
 * ------------------------------------------------------------------------------------------------------------- */
#define HPU_PLUGIN_ABI_MAJOR 1
#define HPU_PLUGIN_ABI_MINOR 3
/* The first MINOR with the decode kernels: what inference needs of a plugin, whatever MINOR the host has. */
#define HPU_PLUGIN_ABI_MINOR_DECODE 1
/* The first MINOR with the distillation loss: what a stage with a KD loss needs of a plugin. */
#define HPU_PLUGIN_ABI_MINOR_DISTILLATION 2
/* The first MINOR whose distillation loss takes absent teacher entries (id -1 beside present ones). */
#define HPU_PLUGIN_ABI_MINOR_ABSENT_TEACHER_IDS 3
#define HPU_PLUGIN_ABI_VERSION ((HPU_PLUGIN_ABI_MAJOR << 16) | HPU_PLUGIN_ABI_MINOR)
#define HPU_PLUGIN_ABI_VERSION_MAJOR(version) (((uint32_t)(version)) >> 16)
#define HPU_PLUGIN_ABI_VERSION_MINOR(version) (((uint32_t)(version)) & 0xFFFFu)

/* The one exported symbol, as a string for dlsym(). */
#define HPU_PLUGIN_ENTRY_SYMBOL "hpuGetPluginApi"

/* Allocation alignment guaranteed by synDeviceMalloc, in bytes. */
#define HPU_DEVICE_ALIGNMENT 256

/* ---------------------------------------------------------------------------------------------------------------
 * Status
 * ------------------------------------------------------------------------------------------------------------- */
typedef enum synStatus {
    synSuccess = 0,
    synInvalidArgument = 1,          /* a null output, a bad size, a params struct of the wrong size, ... */
    synOutOfHostMemory = 3,
    synOutOfDeviceMemory = 4,
    synObjectAlreadyInitialized = 5, /* synInitialize called twice without synDestroy */
    synObjectNotInitialized = 6,     /* a call before synInitialize */
    synNoDeviceFound = 8,            /* module id outside [0, synDeviceGetCount) */
    synDeviceAlreadyAcquired = 16,
    synDeviceNotAcquired = 17,       /* a device id that is not acquired, or a handle of a released device */
    synInvalidDeviceAddress = 18,    /* device address or range not inside one live allocation of this device */
    synInvalidHandle = 19,           /* a stream or event handle that is not live */
    synUnsupported = 26,             /* unknown kernel GUID, unsupported flag or reqAddr */
    synKernelFailed = 27,            /* a kernel rejected its data (e.g. a token id outside the vocabulary) */
    synFail = 32
} synStatus;

/* ---------------------------------------------------------------------------------------------------------------
 * Handles
 * ------------------------------------------------------------------------------------------------------------- */
typedef uint32_t synDeviceId;
typedef uint32_t synModuleId;
/* Opaque; owned by the plugin, created and destroyed only through the functions below. */
typedef struct synStreamHandle_t* synStreamHandle;
typedef struct synEventHandle_t* synEventHandle;

typedef enum synDmaDir {
    HOST_TO_DRAM = 0, /* src is a host pointer (cast to uint64_t), dst a device address */
    DRAM_TO_HOST = 1, /* src a device address, dst a host pointer */
    DRAM_TO_DRAM = 2  /* both device addresses on the stream's device; ranges may overlap (memmove semantics) */
} synDmaDir;

/* synDeviceMalloc flags. */
#define HPU_MALLOC_ZERO 0x1u /* zero-fill the allocation before it is returned (otherwise contents unspecified) */

/* ---------------------------------------------------------------------------------------------------------------
 * Function types, by object. All are synchronous unless marked ASYNC.
 * ------------------------------------------------------------------------------------------------------------- */

/* Library. synInitialize must precede every other call except synStatusGetBriefDescription and
 * hpuGetLastErrorDetail; a second call returns synObjectAlreadyInitialized (harmless: hosts may treat it as
 * success). synDestroy releases every device, stream, event and allocation of the process. */
typedef synStatus (*synInitialize_fn)(void);
typedef synStatus (*synDestroy_fn)(void);
/* Writes a NUL-terminated short description of `status` into `description` (at most `length` bytes). */
typedef synStatus (*synStatusGetBriefDescription_fn)(synStatus status, char* description, size_t length);
/* Plugin extension: the detail of the last failing call on the calling thread (thread-local; overwritten by the
 * next failure, not cleared by successes). NUL-terminated, truncated to `length` bytes. */
typedef synStatus (*hpuGetLastErrorDetail_fn)(char* detail, size_t length);

/* Device. A module is a physical accelerator; acquiring it gives a synDeviceId valid until synDeviceRelease.
 * A module may be acquired once at a time. Releasing a device waits for its work, then destroys its streams and
 * events and frees its allocations. */
typedef synStatus (*synDeviceGetCount_fn)(uint32_t* count);
typedef synStatus (*synDeviceAcquireByModuleId_fn)(synDeviceId* deviceId, synModuleId moduleId);
typedef synStatus (*synDeviceRelease_fn)(synDeviceId deviceId);

/* Memory. `free` is what synDeviceMalloc could still return right now (fragmentation aside), `total` the
 * device's capacity. synDeviceMalloc: `reqAddr` must be 0 (any address), `flags` a set of HPU_MALLOC_* bits;
 * failure to fit is synOutOfDeviceMemory (the detail names the bytes asked and free). The caller owns the
 * allocation until synDeviceFree; freeing while work that uses it is in flight is undefined at the device level
 * (the caller synchronises first), but must not crash the host. Device addresses are never reused by a plugin
 * that wants freed addresses to be rejected (the stub does this). */
typedef synStatus (*synDeviceGetMemoryInfo_fn)(synDeviceId deviceId, uint64_t* free, uint64_t* total);
typedef synStatus (*synDeviceMalloc_fn)(synDeviceId deviceId, uint64_t size, uint64_t reqAddr, uint32_t flags,
                                        uint64_t* buffer);
typedef synStatus (*synDeviceFree_fn)(synDeviceId deviceId, uint64_t buffer, uint32_t flags);

/* Stream: an in-order queue of copies and kernels on one device. `flags` must be 0.
 * synStreamSynchronize blocks until all work issued on the stream is complete; it also reports (once) a
 * data-dependent kernel failure that a plugin detected after the launch returned. Destroying a stream waits for
 * its work first. */
typedef synStatus (*synStreamCreateGeneric_fn)(synStreamHandle* stream, synDeviceId deviceId, uint32_t flags);
typedef synStatus (*synStreamDestroy_fn)(synStreamHandle stream);
typedef synStatus (*synStreamSynchronize_fn)(synStreamHandle stream);

/* Copy, ASYNC: enqueues a copy of `size` bytes in stream order and may return before it runs. Address validation
 * happens before return; a rejected copy enqueues nothing. `size` 0 is a no-op. */
typedef synStatus (*synMemCopyAsync_fn)(synStreamHandle stream, uint64_t src, uint64_t size, uint64_t dst,
                                        synDmaDir direction);

/* Event: a marker in a stream. synEventRecord is ASYNC: the event completes, and takes its timestamp, when the
 * stream reaches it. synEventElapsedTime gives the nanoseconds between two completed events of one device;
 * an event never recorded is synInvalidArgument. `flags` must be 0. */
typedef synStatus (*synEventCreate_fn)(synEventHandle* event, synDeviceId deviceId, uint32_t flags);
typedef synStatus (*synEventRecord_fn)(synEventHandle event, synStreamHandle stream);
typedef synStatus (*synEventSynchronize_fn)(synEventHandle event);
typedef synStatus (*synEventElapsedTime_fn)(uint64_t* nanoseconds, synEventHandle start, synEventHandle end);
typedef synStatus (*synEventDestroy_fn)(synEventHandle event);

/* Kernel launch, ASYNC: enqueues kernel `guid` (one of the HPU_GUID_* strings) with `params` (the GUID's params
 * struct below, `paramsSize` must equal its sizeof) and `numTensors` device addresses in the order the GUID lists.
 * Before returning, the plugin checks the GUID, the params size and values (negative sizes are rejected), and that
 * each tensor's whole extent, computed from the params, lies in one live allocation of the stream's device and is
 * 4-byte aligned: a failure enqueues nothing. Tensors with an extent of 0 elements are not checked. A
 * data-dependent failure (synKernelFailed) is returned by the launch when the plugin runs kernels at launch (the
 * stub does) or else by the next synStreamSynchronize; the kernel then writes none of its outputs. A kernel that
 * needs host-side scratch it cannot get returns synOutOfHostMemory, also without writing. */
typedef synStatus (*synLaunchKernel_fn)(synStreamHandle stream, const char* guid, const void* params,
                                        size_t paramsSize, const uint64_t* tensors, uint32_t numTensors);

/* ---------------------------------------------------------------------------------------------------------------
 * Kernels: GUIDs, params and tensor lists
 *
 * Every struct is packed by construction (fields ordered so there is no padding; explicit `reserved` fields, which
 * must be 0, fill the tail to a multiple of 8). Sizes are int64_t element counts; tensors are f32 unless marked
 * i32. Shapes use the Device protocol's names. "overwrite" and "+=" below are normative.
 * ------------------------------------------------------------------------------------------------------------- */

/* x[i] = value. Tensors: x (count). */
#define HPU_GUID_FILL "fill_f32"
typedef struct HpuFillParams { int64_t count; float value; uint32_t reserved; } HpuFillParams;

/* x[i] *= alpha. Tensors: x (count). */
#define HPU_GUID_SCALE "scale_f32"
typedef struct HpuScaleParams { int64_t count; float alpha; uint32_t reserved; } HpuScaleParams;

/* y[i] += alpha * x[i]. Tensors: x (count), y (count). */
#define HPU_GUID_AXPY "axpy_f32"
typedef struct HpuAxpyParams { int64_t count; float alpha; uint32_t reserved; } HpuAxpyParams;

/* out[i] = a[i] + b[i]; out may alias a or b. Tensors: a, b, out (count each). */
#define HPU_GUID_ADD "add_f32"
typedef struct HpuAddParams { int64_t count; } HpuAddParams;

/* result[0] = sum(x[i]^2), accumulated in double; NaN/Inf propagate. Tensors: x (count), result (1). */
#define HPU_GUID_SUM_SQ "sum_sq_f32"
typedef struct HpuSumSqParams { int64_t count; } HpuSumSqParams;

/* C = alpha * op(A) * op(B) + beta * C, row-major; op(A) is m x k, op(B) k x n; transA/transB are 0 or 1.
 * Leading dimensions must be at least the stored row length. Tensors: a, b, c with extents
 * a: (transA ? k : m) rows of lda, b: (transB ? n : k) rows of ldb, c: m rows of ldc (last row: its length only). */
#define HPU_GUID_GEMM "gemm_f32"
typedef struct HpuGemmParams {
    int64_t m, n, k, lda, ldb, ldc;
    float alpha, beta;
    uint32_t transA, transB;
} HpuGemmParams;

/* out[i, :] = table[tokens[i], :]; an id outside [0, vocab) is synKernelFailed.
 * Tensors: tokens (i32, count), table (vocab * dim), out (count * dim). */
#define HPU_GUID_EMBEDDING_FWD "embedding_fwd_f32"
/* dTable[tokens[i], :] += dOut[i, :] (repeated ids accumulate); an id outside [0, vocab) is synKernelFailed.
 * Tensors: tokens (i32, count), dOut (count * dim), dTable (vocab * dim). */
#define HPU_GUID_EMBEDDING_BWD "embedding_bwd_f32"
typedef struct HpuEmbeddingParams { int64_t count, dim, vocab; } HpuEmbeddingParams;

/* out = x * rstd * weight over rows of dim, rstd[r] = 1 / sqrt(mean(x[r]^2) + eps) (saved).
 * Tensors: x (rows * dim), weight (dim), out (rows * dim), rstd (rows). */
#define HPU_GUID_RMS_NORM_FWD "rms_norm_fwd_f32"
typedef struct HpuRmsNormFwdParams { int64_t rows, dim; float eps; uint32_t reserved; } HpuRmsNormFwdParams;

/* dX += d(out)/dx . dOut, dWeight += sum over rows of dOut * x * rstd (both accumulate).
 * Tensors: dOut (rows * dim), x (rows * dim), weight (dim), rstd (rows), dX (rows * dim), dWeight (dim). */
#define HPU_GUID_RMS_NORM_BWD "rms_norm_bwd_f32"
typedef struct HpuRmsNormBwdParams { int64_t rows, dim; } HpuRmsNormBwdParams;

/* Rotary embedding in place, Hugging Face half-split pairs (i, i + headDim/2), position t; inverse (0 or 1)
 * rotates by the negative angle. headDim must be even.
 * Tensors: x (batch * seqLen * heads * headDim), cos (seqLen * headDim/2), sin (seqLen * headDim/2). */
#define HPU_GUID_ROPE "rope_f32"
typedef struct HpuRopeParams {
    int64_t batch, seqLen, heads, headDim;
    uint32_t inverse, reserved;
} HpuRopeParams;

/* Causal scaled-dot-product attention (scale 1/sqrt(headDim)) with grouped KV heads: query head h reads KV head
 * h / (heads / kvHeads); heads must be a multiple of kvHeads.
 * Forward tensors: q (batch * seqLen * heads * headDim), k, v (batch * seqLen * kvHeads * headDim),
 *   out (as q), lse (batch * heads * seqLen: row log-sum-exp of the scaled scores, saved).
 * Backward overwrites dQ, dK, dV, recomputing the probabilities from lse.
 *   Tensors: dOut, q, k, v, out, lse, dQ (as q), dK, dV (as k). */
#define HPU_GUID_ATTENTION_FWD "attention_fwd_f32"
#define HPU_GUID_ATTENTION_BWD "attention_bwd_f32"
typedef struct HpuAttentionParams { int64_t batch, seqLen, heads, kvHeads, headDim; } HpuAttentionParams;

/* out = silu(gate) * up. Tensors: gate, up, out (count each). */
#define HPU_GUID_SWIGLU_FWD "swiglu_fwd_f32"
/* Overwrites dGate and dUp. Tensors: dOut, gate, up, dGate, dUp (count each). */
#define HPU_GUID_SWIGLU_BWD "swiglu_bwd_f32"
typedef struct HpuSwigluParams { int64_t count; } HpuSwigluParams;

/* Fused softmax cross-entropy, in place: losses[r] = logsumexp(logits[r]) - logits[r, target], then
 * logits[r] = lossScale * (softmax - onehot(target)). A negative target is ignored (loss 0, gradient row 0); a
 * target >= vocab is synKernelFailed. Tensors: logits (rows * vocab), targets (i32, rows), losses (rows). */
#define HPU_GUID_CROSS_ENTROPY "cross_entropy_f32"
typedef struct HpuCrossEntropyParams { int64_t rows, vocab; float lossScale; uint32_t reserved; } HpuCrossEntropyParams;

/* Fused token-level distillation loss (since ABI 1.2), in place as HPU_GUID_CROSS_ENTROPY. Row r: data target
 * targets[r], teacher top-K ids t_i = teacherIds[r, i] with log-probs l_i, p_i = exp(l_i),
 * p_rest = max(0, 1 - sum p_i); student q = softmax(logits[r]), q_i = q[t_i], q_rest = max(sum of q outside the
 * top-K, FLT_MIN). divergence HPU_DIVERGENCE_KL: kd = sum_i p_i (l_i - log q_i) + p_rest (log p_rest - log q_rest)
 * (0 log 0 = 0); HPU_DIVERGENCE_TVD: kd = 1/2 (sum_i |p_i - q_i| + |p_rest - q_rest|). ce = the cross-entropy on
 * the target; losses[r] = (1 - kdWeight) ce + kdWeight kd, ceLosses[r] = ce, kdLosses[r] = kd, and logits[r] is
 * overwritten by lossScale * d(losses[r])/d(logits[r]). An id of -1 marks an absent entry (since 1.3): it is left out
 * of the sums over i, so its teacher mass is in p_rest; a row whose ids are all -1 has no teacher: ce alone
 * (kdLosses 0). A negative target ignores the row (zeros). Validated before anything is written (synKernelFailed):
 * target < vocab; each id -1 or in [0, vocab), present ids distinct; present log-probs not NaN and <= 1e-3. Params: topK >= 1,
 * kdWeight in [0, 1], divergence one of the two.
 * Tensors: logits (rows * vocab), targets (i32, rows), teacherIds (i32, rows * topK), teacherLogprobs
 * (rows * topK), losses, ceLosses, kdLosses (rows each). */
#define HPU_GUID_DISTILLATION_LOSS "distillation_loss_f32"
#define HPU_DIVERGENCE_KL 1u
#define HPU_DIVERGENCE_TVD 2u
typedef struct HpuDistillationLossParams {
    int64_t rows, vocab, topK;
    uint32_t divergence;
    float kdWeight, lossScale;
    uint32_t reserved;
} HpuDistillationLossParams;

/* One AdamW step in PyTorch's form (step is 1-based): p -= lr * weightDecay * p; m = beta1 m + (1 - beta1) g;
 * v = beta2 v + (1 - beta2) g^2; p -= lr * (m / (1 - beta1^step)) / (sqrt(v / (1 - beta2^step)) + eps).
 * Tensors: params, grads, m, v (count each). */
#define HPU_GUID_ADAMW "adamw_f32"
typedef struct HpuAdamWParams {
    int64_t count, step;
    float lr, beta1, beta2, eps, weightDecay;
    uint32_t reserved;
} HpuAdamWParams;

/* ---------------------------------------------------------------------------------------------------------------
 * Decode kernels (since ABI 1.1)
 *
 * Inference: new rows (one per sequence and token) at their own positions, and a KV cache. A KV cache tensor is
 * (slotCount, capacity, width) with width = kvHeads * headDim: slot s holds one sequence, position p its p-th token.
 * Index tensors (slots, positions) are i32 device arrays like every other tensor (extent and alignment checked at
 * launch); their *values* are checked against the params before anything is written: a value out of range is
 * synKernelFailed (the detail names the tensor, the row and the value) and the kernel writes nothing. An output
 * must not overlap an input of the same launch unless the kernel says so (the result is then unspecified, never a
 * crash).
 * ------------------------------------------------------------------------------------------------------------- */

/* Rotary embedding in place, half-split pairs (i, i + headDim/2), as HPU_GUID_ROPE (forward angle) but row r at
 * position positions[r] instead of its index in a sequence: x[r, h, :] uses row positions[r] of the tables.
 * Validated: headDim even; every 0 <= positions[r] < maxPositions.
 * Tensors: x (rows * heads * headDim, read and overwritten), positions (i32, rows),
 *   cos (maxPositions * headDim/2), sin (maxPositions * headDim/2). */
#define HPU_GUID_ROPE_AT_POSITIONS "rope_at_positions_f32"
typedef struct HpuRopeAtPositionsParams { int64_t rows, heads, headDim, maxPositions; } HpuRopeAtPositionsParams;

/* cache[slots[r], positions[r], :] = rows[r, :] for r in 0..<count, overwrite, in row order (a repeated
 * (slot, position) keeps the last row); every other cache entry is left as it was.
 * Validated: every 0 <= slots[r] < slotCount and 0 <= positions[r] < capacity.
 * Tensors: rows (count * width, read), cache (slotCount * capacity * width, written), slots (i32, count),
 *   positions (i32, count). */
#define HPU_GUID_KV_CACHE_WRITE "kv_cache_write_f32"
typedef struct HpuKvCacheWriteParams { int64_t count, width, capacity, slotCount; } HpuKvCacheWriteParams;

/* Causal attention of query rows over a KV cache, scale 1/sqrt(headDim), grouped KV heads (query head h reads KV
 * head h / (heads / kvHeads)): out[r, h, :] = softmax_t(scale * q[r, h, :] . k[s, t, kvh, :]) . v[s, t, kvh, :]
 * over t in 0...positions[r], s = slots[r] (overwrite). The key and value at positions[r] itself must already be in
 * the cache (the plugin cannot check contents).
 * Validated: heads a multiple of kvHeads, kvHeads > 0 when heads > 0; every 0 <= slots[r] < slotCount and
 * 0 <= positions[r] < capacity.
 * Tensors: q (rows * heads * headDim, read), kCache, vCache (slotCount * capacity * kvHeads * headDim, read),
 *   out (rows * heads * headDim, written; must not overlap q or the caches), slots (i32, rows),
 *   positions (i32, rows). */
#define HPU_GUID_ATTENTION_OVER_CACHE "attention_over_cache_f32"
typedef struct HpuAttentionOverCacheParams {
    int64_t rows, heads, kvHeads, headDim, capacity, slotCount;
} HpuAttentionOverCacheParams;

/* x[r, :] += bias[:] over rows of width. Tensors: x (rows * width, read and overwritten), bias (width, read). */
#define HPU_GUID_ADD_BIAS "add_bias_f32"
typedef struct HpuAddBiasParams { int64_t rows, width; } HpuAddBiasParams;

/* ---------------------------------------------------------------------------------------------------------------
 * The API table
 *
 * Returned by hpuGetPluginApi; owned by the plugin, valid (and immutable) until the library is unloaded. It only
 * ever grows at the end. struct_size is offsetof + sizeof of the last field the plugin fills, so a host reads a
 * field only if it lies below struct_size; every function field of the plugin's version is non-null.
 * ------------------------------------------------------------------------------------------------------------- */
typedef struct HpuPluginApi {
    size_t struct_size;
    uint32_t abi_version;
    uint32_t reserved; /* 0; keeps the function pointers 8-byte aligned explicitly */

    /* ABI 1.0 (1.1 added no function: its additions are kernel GUIDs) */
    synInitialize_fn synInitialize;
    synDestroy_fn synDestroy;
    synStatusGetBriefDescription_fn synStatusGetBriefDescription;
    hpuGetLastErrorDetail_fn hpuGetLastErrorDetail;
    synDeviceGetCount_fn synDeviceGetCount;
    synDeviceAcquireByModuleId_fn synDeviceAcquireByModuleId;
    synDeviceRelease_fn synDeviceRelease;
    synDeviceGetMemoryInfo_fn synDeviceGetMemoryInfo;
    synDeviceMalloc_fn synDeviceMalloc;
    synDeviceFree_fn synDeviceFree;
    synStreamCreateGeneric_fn synStreamCreateGeneric;
    synStreamDestroy_fn synStreamDestroy;
    synStreamSynchronize_fn synStreamSynchronize;
    synMemCopyAsync_fn synMemCopyAsync;
    synEventCreate_fn synEventCreate;
    synEventRecord_fn synEventRecord;
    synEventSynchronize_fn synEventSynchronize;
    synEventElapsedTime_fn synEventElapsedTime;
    synEventDestroy_fn synEventDestroy;
    synLaunchKernel_fn synLaunchKernel;
} HpuPluginApi;

#define HPU_PLUGIN_API_STRUCT_SIZE(last_field) \
    (offsetof(HpuPluginApi, last_field) + sizeof(((HpuPluginApi*)0)->last_field))
/* What a 1.0 host needs. A later MINOR that appends a function redefines HPU_PLUGIN_API_STRUCT_SIZE_CURRENT with its
 * own last field; 1.1 and 1.2 appended none, so their table is 1.0's. */
#define HPU_PLUGIN_API_STRUCT_SIZE_1_0 HPU_PLUGIN_API_STRUCT_SIZE(synLaunchKernel)
#define HPU_PLUGIN_API_STRUCT_SIZE_CURRENT HPU_PLUGIN_API_STRUCT_SIZE_1_0

/* The entry point. `abi_version` is the HPU_PLUGIN_ABI_VERSION the host was built with; a plugin returns NULL if
 * it cannot serve that MAJOR, else its table (whose abi_version and struct_size the host must still check).
 * Thread-safe, no side effects: it does not initialise anything (synInitialize does). */
typedef const HpuPluginApi* (*hpuGetPluginApi_fn)(uint32_t abi_version);
const HpuPluginApi* hpuGetPluginApi(uint32_t abi_version);

/* Layout checks: a change here is a MAJOR bump. */
#ifdef __cplusplus
#define HPU_STATIC_ASSERT(condition, message) static_assert((condition), message)
#else
#define HPU_STATIC_ASSERT(condition, message) _Static_assert((condition), message)
#endif
HPU_STATIC_ASSERT(sizeof(void*) == 8 && sizeof(size_t) == 8, "the ABI is defined for LP64 targets only");
HPU_STATIC_ASSERT(sizeof(synStatus) == 4, "synStatus must be 32-bit");
HPU_STATIC_ASSERT(sizeof(synDmaDir) == 4, "synDmaDir must be 32-bit");
HPU_STATIC_ASSERT(offsetof(HpuPluginApi, struct_size) == 0, "struct_size first");
HPU_STATIC_ASSERT(offsetof(HpuPluginApi, abi_version) == 8, "abi_version second");
HPU_STATIC_ASSERT(offsetof(HpuPluginApi, synInitialize) == 16, "function table starts at 16");
HPU_STATIC_ASSERT(HPU_PLUGIN_API_STRUCT_SIZE_1_0 == 16 + 20 * sizeof(void*), "ABI 1.0 has 20 functions");
HPU_STATIC_ASSERT(sizeof(HpuFillParams) == 16, "HpuFillParams layout");
HPU_STATIC_ASSERT(sizeof(HpuScaleParams) == 16, "HpuScaleParams layout");
HPU_STATIC_ASSERT(sizeof(HpuAxpyParams) == 16, "HpuAxpyParams layout");
HPU_STATIC_ASSERT(sizeof(HpuAddParams) == 8, "HpuAddParams layout");
HPU_STATIC_ASSERT(sizeof(HpuSumSqParams) == 8, "HpuSumSqParams layout");
HPU_STATIC_ASSERT(sizeof(HpuGemmParams) == 64, "HpuGemmParams layout");
HPU_STATIC_ASSERT(sizeof(HpuEmbeddingParams) == 24, "HpuEmbeddingParams layout");
HPU_STATIC_ASSERT(sizeof(HpuRmsNormFwdParams) == 24, "HpuRmsNormFwdParams layout");
HPU_STATIC_ASSERT(sizeof(HpuRmsNormBwdParams) == 16, "HpuRmsNormBwdParams layout");
HPU_STATIC_ASSERT(sizeof(HpuRopeParams) == 40, "HpuRopeParams layout");
HPU_STATIC_ASSERT(sizeof(HpuAttentionParams) == 40, "HpuAttentionParams layout");
HPU_STATIC_ASSERT(sizeof(HpuSwigluParams) == 8, "HpuSwigluParams layout");
HPU_STATIC_ASSERT(sizeof(HpuCrossEntropyParams) == 24, "HpuCrossEntropyParams layout");
HPU_STATIC_ASSERT(sizeof(HpuAdamWParams) == 40, "HpuAdamWParams layout");
HPU_STATIC_ASSERT(sizeof(HpuDistillationLossParams) == 40, "HpuDistillationLossParams layout");
HPU_STATIC_ASSERT(sizeof(HpuRopeAtPositionsParams) == 32, "HpuRopeAtPositionsParams layout");
HPU_STATIC_ASSERT(sizeof(HpuKvCacheWriteParams) == 32, "HpuKvCacheWriteParams layout");
HPU_STATIC_ASSERT(sizeof(HpuAttentionOverCacheParams) == 48, "HpuAttentionOverCacheParams layout");
HPU_STATIC_ASSERT(sizeof(HpuAddBiasParams) == 16, "HpuAddBiasParams layout");
HPU_STATIC_ASSERT(HPU_PLUGIN_API_STRUCT_SIZE_CURRENT == HPU_PLUGIN_API_STRUCT_SIZE_1_0, "1.1 and 1.2 appended no function");

#ifdef __cplusplus
}
#endif

#endif /* SWIFTDRAFT_HPU_PLUGIN_H */
