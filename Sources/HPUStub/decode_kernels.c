/*
 * The stub's decode kernels (ABI 1.1): rotary embedding at per-row positions, KV-cache writes, attention of new rows
 * over the cache, and bias rows. Semantics are the header's and the DecodeKernels protocol's doc comments
 * (Sources/DraftDevice/DecodeKernels.swift).
 *
 * Every kernel first checks the values of its index tensors against the params, and only then writes: a bad slot or
 * position fails the launch with nothing changed, like a bad token id in the embedding.
 */
#include <stdlib.h>
#include <string.h>

#include "stub_internal.h"
#include "stub_vector.h"

/* Every values[i] in [0, limit), else synKernelFailed naming the tensor, the row and the value. */
static synStatus check_indices(const int32_t* values, int64_t count, int64_t limit, const char* guid,
                               const char* tensor, const char* bound) {
    for (int64_t i = 0; i < count; i++) {
        if (values[i] < 0 || values[i] >= limit) {
            return hpu_fail(synKernelFailed, "%s: %s[%lld] = %d is outside [0, %s = %lld)", guid, tensor, (long long)i,
                            values[i], bound, (long long)limit);
        }
    }
    return synSuccess;
}

/* ------------------------------------------------------------------------------------------------------------- */
/* Rotary embedding at positions                                                                                  */
/* ------------------------------------------------------------------------------------------------------------- */

typedef struct RopeAt {
    float* x;
    const int32_t* positions;
    const float *cos, *sin;
    int64_t heads, half;
} RopeAt;

static void rope_at_chunk(void* context, int64_t chunk, int64_t begin, int64_t end) {
    (void)chunk;
    const RopeAt* c = context;
    const int64_t heads = c->heads, half = c->half;
    for (int64_t row = begin; row < end; row++) {
        const int64_t t = c->positions[row];
        const float *cr = c->cos + t * half, *sr = c->sin + t * half;
        for (int64_t h = 0; h < heads; h++) {
            float* v = c->x + (row * heads + h) * 2 * half;
            for (int64_t i = 0; i < half; i++) {
                float x1 = v[i], x2 = v[i + half];
                v[i] = x1 * cr[i] - x2 * sr[i];
                v[i + half] = x2 * cr[i] + x1 * sr[i];
            }
        }
    }
}

synStatus hpu_rope_at_positions(float* x, const int32_t* positions, const float* cosTable, const float* sinTable,
                                const HpuRopeAtPositionsParams* p) {
    synStatus status = check_indices(positions, p->rows, p->maxPositions, HPU_GUID_ROPE_AT_POSITIONS, "positions",
                                     "maxPositions");
    if (status != synSuccess) return status;
    RopeAt context = {x, positions, cosTable, sinTable, p->heads, p->headDim / 2};
    /* A decode step has a handful of rows: keep those on the calling thread, where waking the pool would cost more
     * than the rotation. */
    int64_t per_row = p->heads * p->headDim;
    int64_t grain = per_row > 0 && per_row < 4096 ? 4096 / per_row : 1;
    hpu_parallel_chunks(p->rows, grain, rope_at_chunk, &context);
    return synSuccess;
}

/* ------------------------------------------------------------------------------------------------------------- */
/* KV-cache write                                                                                                 */
/* ------------------------------------------------------------------------------------------------------------- */

synStatus hpu_kv_cache_write(const float* rows, float* cache, const int32_t* slots, const int32_t* positions,
                             const HpuKvCacheWriteParams* p) {
    synStatus status = check_indices(slots, p->count, p->slotCount, HPU_GUID_KV_CACHE_WRITE, "slots", "slotCount");
    if (status == synSuccess) {
        status = check_indices(positions, p->count, p->capacity, HPU_GUID_KV_CACHE_WRITE, "positions", "capacity");
    }
    if (status != synSuccess) return status;
    /* In row order on one thread: a repeated (slot, position) keeps the last row, as the header promises, and the
     * copies are memory-bound anyway. */
    const size_t bytes = (size_t)p->width * sizeof *rows;
    for (int64_t r = 0; r < p->count; r++) {
        float* destination = cache + ((int64_t)slots[r] * p->capacity + positions[r]) * p->width;
        memcpy(destination, rows + r * p->width, bytes);
    }
    return synSuccess;
}

/* ------------------------------------------------------------------------------------------------------------- */
/* Attention over the cache                                                                                       */
/* ------------------------------------------------------------------------------------------------------------- */

typedef struct CacheAttention {
    const float *q, *k, *v;
    float* out;
    const int32_t *slots, *positions;
    const HpuAttentionOverCacheParams* p;
    float* scratch; /* per chunk: scratch + chunk * keys_max */
    int64_t keys_max;
} CacheAttention;

/* (row, query head) pairs [begin, end): each owns its output row, so chunks never race. */
static void cache_attention_chunk(void* context, int64_t chunk, int64_t begin, int64_t end) {
    const CacheAttention* c = context;
    const int64_t H = c->p->heads, KV = c->p->kvHeads, D = c->p->headDim, capacity = c->p->capacity;
    const int64_t group = H / KV, stride = KV * D;
    const float scale = 1.0f / sqrtf((float)D);
    float* scores = c->scratch + chunk * c->keys_max;
    for (int64_t task = begin; task < end; task++) {
        const int64_t r = task / H, h = task % H, kvh = h / group;
        const int64_t keys = (int64_t)c->positions[r] + 1;
        const int64_t base = ((int64_t)c->slots[r] * capacity * KV + kvh) * D;
        const float *kb = c->k + base, *vb = c->v + base;
        const float* qr = c->q + (r * H + h) * D;
        float* o = c->out + (r * H + h) * D;

        for (int64_t t = 0; t < keys; t++) scores[t] = scale * dot8(qr, kb + t * stride, D);
        float max = max_of(scores, keys);
        float inverse_sum = 1.0f / exp_in_place(scores, keys, max);

        memset(o, 0, (size_t)D * sizeof *o);
        for (int64_t t = 0; t < keys; t++) {
            const float weight = scores[t];
            const float* vt = vb + t * stride;
            for (int64_t d = 0; d < D; d++) o[d] += weight * vt[d];
        }
        scale_in_place(o, D, inverse_sum);
    }
}

synStatus hpu_attention_over_cache(const float* q, const float* kCache, const float* vCache, float* out,
                                   const int32_t* slots, const int32_t* positions,
                                   const HpuAttentionOverCacheParams* p) {
    synStatus status = check_indices(slots, p->rows, p->slotCount, HPU_GUID_ATTENTION_OVER_CACHE, "slots",
                                     "slotCount");
    if (status == synSuccess) {
        status = check_indices(positions, p->rows, p->capacity, HPU_GUID_ATTENTION_OVER_CACHE, "positions",
                               "capacity");
    }
    if (status != synSuccess) return status;

    int64_t keys_max = 1, keys_total = 0;
    for (int64_t r = 0; r < p->rows; r++) {
        int64_t keys = (int64_t)positions[r] + 1;
        keys_max = keys > keys_max ? keys : keys_max;
        keys_total += keys;
    }
    const int64_t tasks = p->rows * p->heads;
    /* At least ~32K multiply-adds (q.k and p.v) per chunk, so a short decode step stays on the calling thread. */
    const double work = 2.0 * (double)keys_total * (double)p->heads * (double)p->headDim;
    const double per_task = work / (double)tasks;
    int64_t grain = per_task >= 32768.0 ? 1 : (int64_t)(32768.0 / (per_task > 1.0 ? per_task : 1.0));
    if (grain > tasks) grain = tasks;
    if (grain < 1) grain = 1;

    /* Scratch for every chunk up front: a host out of memory fails the launch before anything is written. */
    const int64_t chunks = hpu_chunk_count(tasks, grain);
    CacheAttention context = {.q = q, .k = kCache, .v = vCache, .out = out, .slots = slots, .positions = positions,
                              .p = p, .keys_max = keys_max};
    context.scratch = malloc((size_t)chunks * (size_t)keys_max * sizeof(float));
    if (!context.scratch) {
        return hpu_fail(synOutOfHostMemory, "%s: no host memory for %lld x %lld floats of scratch",
                        HPU_GUID_ATTENTION_OVER_CACHE, (long long)chunks, (long long)keys_max);
    }
    hpu_parallel_chunks(tasks, grain, cache_attention_chunk, &context);
    free(context.scratch);
    return synSuccess;
}

/* ------------------------------------------------------------------------------------------------------------- */
/* Bias                                                                                                           */
/* ------------------------------------------------------------------------------------------------------------- */

typedef struct Bias {
    float* x;
    const float* bias;
    int64_t width;
} Bias;

static void bias_chunk(void* context, int64_t chunk, int64_t begin, int64_t end) {
    (void)chunk;
    const Bias* c = context;
    const int64_t width = c->width;
    for (int64_t r = begin; r < end; r++) {
        float* row = c->x + r * width;
        for (int64_t j = 0; j < width; j++) row[j] += c->bias[j];
    }
}

void hpu_add_bias(float* x, const float* bias, int64_t rows, int64_t width) {
    Bias context = {x, bias, width};
    int64_t grain = width > 0 && width < 65536 ? 65536 / width : 1;
    hpu_parallel_chunks(rows, grain, bias_chunk, &context);
}
