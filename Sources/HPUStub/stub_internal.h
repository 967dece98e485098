/* Internal interfaces of the stub plugin: the thread pool and the host kernels (host pointers, validated sizes). */
#ifndef SWIFTDRAFT_HPU_STUB_INTERNAL_H
#define SWIFTDRAFT_HPU_STUB_INTERNAL_H

#include <stdint.h>

#include "hpu_plugin.h"

/* Only hpuGetPluginApi is exported; everything here stays inside the library. */
#pragma GCC visibility push(hidden)

/* ---- Thread pool (pool.c) ----
 * Splits 0..<count into at most `threads` contiguous chunks of at least `grain` items, as the CPU backend does, so
 * that chunked reductions are deterministic for a given thread count. Not reentrant: kernels call it from the
 * launching thread only, under the plugin lock. */
typedef void (*hpu_chunk_fn)(void* context, int64_t chunk, int64_t begin, int64_t end);
void hpu_pool_start(int threads);
void hpu_pool_stop(void);
int hpu_pool_threads(void);
void hpu_parallel_chunks(int64_t count, int64_t grain, hpu_chunk_fn body, void* context);
/* How many chunks hpu_parallel_chunks would use, for kernels that keep per-chunk partial results. */
int64_t hpu_chunk_count(int64_t count, int64_t grain);

/* ---- Kernels (kernels.c) ----
 * Arguments are host pointers already validated against the allocation table, sizes already checked to be
 * non-negative and in range. Data-dependent failures return synKernelFailed with the detail set, before writing;
 * a kernel that needs host scratch it cannot get returns synOutOfHostMemory, also before writing. */
void hpu_fill(float* x, int64_t count, float value);
void hpu_scale(float* x, int64_t count, float alpha);
void hpu_axpy(const float* x, float* y, int64_t count, float alpha);
void hpu_add(const float* a, const float* b, float* out, int64_t count);
void hpu_sum_sq(const float* x, int64_t count, float* result);
void hpu_gemm(const HpuGemmParams* p, const float* a, const float* b, float* c);
synStatus hpu_embedding_fwd(const int32_t* tokens, const float* table, float* out, int64_t count, int64_t dim,
                            int64_t vocab);
synStatus hpu_embedding_bwd(const int32_t* tokens, const float* dOut, float* dTable, int64_t count, int64_t dim,
                            int64_t vocab);
void hpu_rms_norm_fwd(const float* x, const float* weight, float* out, float* rstd, int64_t rows, int64_t dim,
                      float eps);
void hpu_rms_norm_bwd(const float* dOut, const float* x, const float* weight, const float* rstd, float* dX,
                      float* dWeight, int64_t rows, int64_t dim);
void hpu_rope(float* x, const float* cosTable, const float* sinTable, const HpuRopeParams* p);
synStatus hpu_attention_fwd(const float* q, const float* k, const float* v, float* out, float* lse,
                            const HpuAttentionParams* p);
synStatus hpu_attention_bwd(const float* dOut, const float* q, const float* k, const float* v, const float* out,
                            const float* lse, float* dQ, float* dK, float* dV, const HpuAttentionParams* p);
void hpu_swiglu_fwd(const float* gate, const float* up, float* out, int64_t count);
void hpu_swiglu_bwd(const float* dOut, const float* gate, const float* up, float* dGate, float* dUp,
                    int64_t count);
synStatus hpu_cross_entropy(float* logits, const int32_t* targets, float* losses, int64_t rows, int64_t vocab,
                            float lossScale);
void hpu_adamw(float* params, const float* grads, float* m, float* v, const HpuAdamWParams* p);

/* ---- Distillation loss (distillation_kernels.c, ABI 1.2) ----
 * Validates the targets, teacher ids and log-probs (synKernelFailed, before writing). */
/* The ABI MINOR this library presents (HPU_STUB_ABI_MINOR; see stub.c): kernels keep an older MINOR's validation. */
int hpu_served_minor(void);
synStatus hpu_distillation_loss(float* logits, const int32_t* targets, const int32_t* ids, const float* logprobs,
                                float* losses, float* ceLosses, float* kdLosses, const HpuDistillationLossParams* p);

/* ---- Decode kernels (decode_kernels.c, ABI 1.1) ----
 * Tensors validated as above; the index tensors' values are checked here, before anything is written. */
synStatus hpu_rope_at_positions(float* x, const int32_t* positions, const float* cosTable, const float* sinTable,
                                const HpuRopeAtPositionsParams* p);
synStatus hpu_kv_cache_write(const float* rows, float* cache, const int32_t* slots, const int32_t* positions,
                             const HpuKvCacheWriteParams* p);
synStatus hpu_attention_over_cache(const float* q, const float* kCache, const float* vCache, float* out,
                                   const int32_t* slots, const int32_t* positions,
                                   const HpuAttentionOverCacheParams* p);
void hpu_add_bias(float* x, const float* bias, int64_t rows, int64_t width);

/* ---- Errors (stub.c) ----
 * Records the thread-local detail returned by hpuGetLastErrorDetail and returns `status`. */
synStatus hpu_fail(synStatus status, const char* format, ...) __attribute__((format(printf, 2, 3)));

#pragma GCC visibility pop

#endif /* SWIFTDRAFT_HPU_STUB_INTERNAL_H */
