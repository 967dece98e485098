/*
 * The stub's kernels, on host memory. Semantics are those of the Device protocol's doc comments
 * (Sources/DraftDevice/Device.swift); the arithmetic follows the CPU backend's formulas and its exp polynomial, so
 * the two backends agree to rounding. Loops are written plainly so clang's vectoriser handles them at -O2.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

#include "stub_internal.h"
#include "stub_vector.h"

/* ------------------------------------------------------------------------------------------------------------- */
/* Elementwise and reductions                                                                                     */
/* ------------------------------------------------------------------------------------------------------------- */

void hpu_fill(float* x, int64_t count, float value) {
    if (value == 0.0f) {
        memset(x, 0, (size_t)count * sizeof *x);
        return;
    }
    for (int64_t i = 0; i < count; i++) x[i] = value;
}

void hpu_scale(float* x, int64_t count, float alpha) {
    for (int64_t i = 0; i < count; i++) x[i] *= alpha;
}

void hpu_axpy(const float* x, float* y, int64_t count, float alpha) {
    for (int64_t i = 0; i < count; i++) y[i] += alpha * x[i];
}

void hpu_add(const float* a, const float* b, float* out, int64_t count) {
    for (int64_t i = 0; i < count; i++) out[i] = a[i] + b[i];
}

void hpu_sum_sq(const float* x, int64_t count, float* result) {
    /* Float partial sums over short runs folded into a double: as exact as a double loop for gradient norms, at
     * float speed (the inner loop vectorises; a double accumulator would not without reassociation). */
    double total = 0.0;
    for (int64_t start = 0; start < count; start += 4096) {
        int64_t end = start + 4096 < count ? start + 4096 : count;
        v8f acc = splat8(0.0f);
        int64_t i = start;
        for (; i + 8 <= end; i += 8) {
            v8f v = load8(x + i);
            acc += v * v;
        }
        float tail = 0.0f;
        for (; i < end; i++) tail += x[i] * x[i];
        total += (double)sum8(acc) + (double)tail;
    }
    *result = (float)total;
}

/* ------------------------------------------------------------------------------------------------------------- */
/* Matrix product                                                                                                 */
/* ------------------------------------------------------------------------------------------------------------- */

void hpu_gemm(const HpuGemmParams* p, const float* a, const float* b, float* c) {
    if (p->k == 0) {
        /* No product to add: OpenBLAS would still want valid A and B pointers, which a 0-extent bind leaves null. */
        for (int64_t r = 0; r < p->m; r++) {
            float* row = c + r * p->ldc;
            for (int64_t j = 0; j < p->n; j++) row[j] = p->beta == 0.0f ? 0.0f : p->beta * row[j];
        }
        return;
    }
    cblas_sgemm(CblasRowMajor, p->transA ? CblasTrans : CblasNoTrans, p->transB ? CblasTrans : CblasNoTrans,
                (int)p->m, (int)p->n, (int)p->k, p->alpha, a, (int)p->lda, b, (int)p->ldb, p->beta, c, (int)p->ldc);
}

/* ------------------------------------------------------------------------------------------------------------- */
/* Embedding                                                                                                      */
/* ------------------------------------------------------------------------------------------------------------- */

static synStatus check_tokens(const int32_t* tokens, int64_t count, int64_t vocab, const char* guid) {
    for (int64_t i = 0; i < count; i++) {
        if (tokens[i] < 0 || tokens[i] >= vocab) {
            return hpu_fail(synKernelFailed, "%s: token id %d at position %lld is outside the vocabulary of %lld", guid,
                            tokens[i], (long long)i, (long long)vocab);
        }
    }
    return synSuccess;
}

synStatus hpu_embedding_fwd(const int32_t* tokens, const float* table, float* out, int64_t count, int64_t dim,
                            int64_t vocab) {
    synStatus status = check_tokens(tokens, count, vocab, HPU_GUID_EMBEDDING_FWD);
    if (status != synSuccess) return status;
    for (int64_t i = 0; i < count; i++) {
        memcpy(out + i * dim, table + (int64_t)tokens[i] * dim, (size_t)dim * sizeof *out);
    }
    return synSuccess;
}

synStatus hpu_embedding_bwd(const int32_t* tokens, const float* dOut, float* dTable, int64_t count, int64_t dim,
                            int64_t vocab) {
    synStatus status = check_tokens(tokens, count, vocab, HPU_GUID_EMBEDDING_BWD);
    if (status != synSuccess) return status;
    /* In token order, so repeated ids accumulate in the same order as on the CPU backend. */
    for (int64_t i = 0; i < count; i++) {
        const float* src = dOut + i * dim;
        float* dst = dTable + (int64_t)tokens[i] * dim;
        for (int64_t c = 0; c < dim; c++) dst[c] += src[c];
    }
    return synSuccess;
}

/* ------------------------------------------------------------------------------------------------------------- */
/* RMSNorm                                                                                                        */
/* ------------------------------------------------------------------------------------------------------------- */

typedef struct RmsFwd {
    const float *x, *w;
    float *out, *rstd;
    int64_t dim;
    float eps;
} RmsFwd;

static void rms_fwd_chunk(void* context, int64_t chunk, int64_t begin, int64_t end) {
    (void)chunk;
    const RmsFwd* c = context;
    for (int64_t r = begin; r < end; r++) {
        const float* xr = c->x + r * c->dim;
        float* yr = c->out + r * c->dim;
        float s = 1.0f / sqrtf(dot8(xr, xr, c->dim) / (float)c->dim + c->eps);
        c->rstd[r] = s;
        for (int64_t i = 0; i < c->dim; i++) yr[i] = xr[i] * s * c->w[i];
    }
}

void hpu_rms_norm_fwd(const float* x, const float* weight, float* out, float* rstd, int64_t rows, int64_t dim,
                      float eps) {
    RmsFwd context = {x, weight, out, rstd, dim, eps};
    hpu_parallel_chunks(rows, 16, rms_fwd_chunk, &context);
}

typedef struct RmsBwd {
    const float *dy, *x, *w, *rstd;
    float *dx, *partial;
    int64_t dim;
} RmsBwd;

static void rms_bwd_chunk(void* context, int64_t chunk, int64_t begin, int64_t end) {
    const RmsBwd* c = context;
    const int64_t dim = c->dim;
    float* dwc = c->partial + chunk * dim;
    for (int64_t r = begin; r < end; r++) {
        const float *xr = c->x + r * dim, *dyr = c->dy + r * dim;
        float* dxr = c->dx + r * dim;
        float s = c->rstd[r];
        /* dx = s * (w*dy - xhat * mean(xhat * w*dy)), xhat = x*s */
        v8f acc = splat8(0.0f);
        int64_t i = 0;
        for (; i + 8 <= dim; i += 8) acc += load8(dyr + i) * load8(c->w + i) * load8(xr + i);
        float tail = 0.0f;
        for (; i < dim; i++) tail += dyr[i] * c->w[i] * xr[i];
        float mean_term = (sum8(acc) + tail) * s * s / (float)dim;
        for (i = 0; i < dim; i++) {
            dxr[i] = dxr[i] + s * (dyr[i] * c->w[i] - xr[i] * mean_term);
            dwc[i] = dwc[i] + dyr[i] * xr[i] * s;
        }
    }
}

void hpu_rms_norm_bwd(const float* dOut, const float* x, const float* weight, const float* rstd, float* dX,
                      float* dWeight, int64_t rows, int64_t dim) {
    /* Each chunk sums its rows' weight gradient privately; partials are added in chunk order (deterministic). */
    int64_t chunks = hpu_chunk_count(rows, 16);
    float* partial = calloc((size_t)(chunks * dim), sizeof *partial);
    RmsBwd context = {dOut, x, weight, rstd, dX, partial, dim};
    if (!partial) {
        /* No scratch: one serial chunk accumulating straight into dWeight is still correct. */
        context.partial = dWeight;
        rms_bwd_chunk(&context, 0, 0, rows);
        return;
    }
    hpu_parallel_chunks(rows, 16, rms_bwd_chunk, &context);
    for (int64_t chunk = 0; chunk < chunks; chunk++) {
        const float* dwc = partial + chunk * dim;
        for (int64_t i = 0; i < dim; i++) dWeight[i] += dwc[i];
    }
    free(partial);
}

/* ------------------------------------------------------------------------------------------------------------- */
/* Rotary embedding                                                                                               */
/* ------------------------------------------------------------------------------------------------------------- */

typedef struct Rope {
    float* x;
    const float *cos, *sin;
    const HpuRopeParams* p;
} Rope;

static void rope_chunk(void* context, int64_t chunk, int64_t begin, int64_t end) {
    (void)chunk;
    const Rope* c = context;
    const int64_t heads = c->p->heads, head_dim = c->p->headDim, half = head_dim / 2, seq = c->p->seqLen;
    const float sign = c->p->inverse ? -1.0f : 1.0f;
    for (int64_t row = begin; row < end; row++) {
        int64_t t = row % seq;
        const float *cr = c->cos + t * half, *sr = c->sin + t * half;
        for (int64_t h = 0; h < heads; h++) {
            float* v = c->x + (row * heads + h) * head_dim;
            for (int64_t i = 0; i < half; i++) {
                float x1 = v[i], x2 = v[i + half], si = sign * sr[i];
                v[i] = x1 * cr[i] - x2 * si;
                v[i + half] = x2 * cr[i] + x1 * si;
            }
        }
    }
}

void hpu_rope(float* x, const float* cosTable, const float* sinTable, const HpuRopeParams* p) {
    Rope context = {x, cosTable, sinTable, p};
    hpu_parallel_chunks(p->batch * p->seqLen, 32, rope_chunk, &context);
}

/* ------------------------------------------------------------------------------------------------------------- */
/* Attention                                                                                                      */
/* ------------------------------------------------------------------------------------------------------------- */

/* Query rows per block: a block's scores need only the keys up to its last row, which skips most of the masked
 * upper triangle while keeping each product large enough for sgemm to run at speed. */
#define ATTENTION_BLOCK 64

typedef struct Attention {
    const float *dOut, *q, *k, *v, *out, *lse;
    float *o, *lse_out, *dQ, *dK, *dV;
    const HpuAttentionParams* p;
    float* scratch;          /* per chunk: scratch + chunk * scratch_per_chunk */
    size_t scratch_per_chunk;
} Attention;

/* Forward for (b, h) pairs [begin, end). */
static void attention_fwd_chunk(void* context, int64_t chunk, int64_t begin, int64_t end) {
    const Attention* c = context;
    const int64_t T = c->p->seqLen, H = c->p->heads, KV = c->p->kvHeads, D = c->p->headDim;
    const int64_t group = H / KV;
    const float scale = 1.0f / sqrtf((float)D);
    float* scores = c->scratch + (size_t)chunk * c->scratch_per_chunk;
    for (int64_t bh = begin; bh < end; bh++) {
        int64_t b = bh / H, h = bh % H, kvh = h / group;
        const float* qb = c->q + (b * T * H + h) * D;
        const float* kb = c->k + (b * T * KV + kvh) * D;
        const float* vb = c->v + (b * T * KV + kvh) * D;
        float* ob = c->o + (b * T * H + h) * D;
        float* lse = c->lse_out + (b * H + h) * T;
        for (int64_t t0 = 0; t0 < T; t0 += ATTENTION_BLOCK) {
            int64_t rows = T - t0 < ATTENTION_BLOCK ? T - t0 : ATTENTION_BLOCK;
            int64_t keys = t0 + rows;
            /* S = scale * Q[t0:t0+rows] K[0:keys]^T, leading dimension `keys` */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)rows, (int)keys, (int)D, scale,
                        qb + t0 * H * D, (int)(H * D), kb, (int)(KV * D), 0.0f, scores, (int)keys);
            for (int64_t i = 0; i < rows; i++) {
                int64_t t = t0 + i;
                float* s = scores + i * keys;
                float max = max_of(s, t + 1);
                float sum = exp_in_place(s, t + 1, max);
                scale_in_place(s, t + 1, 1.0f / sum);
                memset(s + t + 1, 0, (size_t)(keys - t - 1) * sizeof *s);
                lse[t] = max + logf(sum);
            }
            /* O[t0:t0+rows] = P V[0:keys] */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)rows, (int)D, (int)keys, 1.0f, scores,
                        (int)keys, vb, (int)(KV * D), 0.0f, ob + t0 * H * D, (int)(H * D));
        }
    }
}

/* Backward for (b, kv head) groups [begin, end): a group owns its dK and dV rows, so chunks never race. */
static void attention_bwd_chunk(void* context, int64_t chunk, int64_t begin, int64_t end) {
    const Attention* c = context;
    const int64_t T = c->p->seqLen, H = c->p->heads, KV = c->p->kvHeads, D = c->p->headDim;
    const int64_t group = H / KV;
    const float scale = 1.0f / sqrtf((float)D);
    float* probabilities = c->scratch + (size_t)chunk * c->scratch_per_chunk;
    float* dScores = probabilities + ATTENTION_BLOCK * T;
    for (int64_t bk = begin; bk < end; bk++) {
        int64_t b = bk / KV, kvh = bk % KV;
        const float* kb = c->k + (b * T * KV + kvh) * D;
        const float* vb = c->v + (b * T * KV + kvh) * D;
        float* dkb = c->dK + (b * T * KV + kvh) * D;
        float* dvb = c->dV + (b * T * KV + kvh) * D;
        for (int64_t t = 0; t < T; t++) {
            memset(dkb + t * KV * D, 0, (size_t)D * sizeof *dkb);
            memset(dvb + t * KV * D, 0, (size_t)D * sizeof *dvb);
        }
        for (int64_t h = kvh * group; h < (kvh + 1) * group; h++) {
            const float* qb = c->q + (b * T * H + h) * D;
            const float* ob = c->out + (b * T * H + h) * D;
            const float* dob = c->dOut + (b * T * H + h) * D;
            float* dqb = c->dQ + (b * T * H + h) * D;
            const float* lse = c->lse + (b * H + h) * T;
            for (int64_t t0 = 0; t0 < T; t0 += ATTENTION_BLOCK) {
                int64_t rows = T - t0 < ATTENTION_BLOCK ? T - t0 : ATTENTION_BLOCK;
                int64_t keys = t0 + rows;
                float* P = probabilities;
                float* dS = dScores;
                /* Recompute P = exp(scale * Q K^T - lse) from the saved log-sum-exp. */
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)rows, (int)keys, (int)D, scale,
                            qb + t0 * H * D, (int)(H * D), kb, (int)(KV * D), 0.0f, P, (int)keys);
                /* dP = dO V^T */
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)rows, (int)keys, (int)D, 1.0f,
                            dob + t0 * H * D, (int)(H * D), vb, (int)(KV * D), 0.0f, dS, (int)keys);
                for (int64_t i = 0; i < rows; i++) {
                    int64_t t = t0 + i;
                    float* pr = P + i * keys;
                    float* dsr = dS + i * keys;
                    /* sum_j P_j dP_j = dO . O, cheaper than the row sum and exact up to rounding */
                    float delta = dot8(dob + t * H * D, ob + t * H * D, D);
                    (void)exp_in_place(pr, t + 1, lse[t]);
                    for (int64_t j = 0; j <= t; j++) dsr[j] = pr[j] * (dsr[j] - delta);
                    memset(pr + t + 1, 0, (size_t)(keys - t - 1) * sizeof *pr);
                    memset(dsr + t + 1, 0, (size_t)(keys - t - 1) * sizeof *dsr);
                }
                /* dV += P^T dO; dQ = scale * dS K; dK += scale * dS^T Q */
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)keys, (int)D, (int)rows, 1.0f, P,
                            (int)keys, dob + t0 * H * D, (int)(H * D), 1.0f, dvb, (int)(KV * D));
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)rows, (int)D, (int)keys, scale, dS,
                            (int)keys, kb, (int)(KV * D), 0.0f, dqb + t0 * H * D, (int)(H * D));
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)keys, (int)D, (int)rows, scale, dS,
                            (int)keys, qb + t0 * H * D, (int)(H * D), 1.0f, dkb, (int)(KV * D));
            }
        }
    }
}

/* The pool splits over heads; BLAS inside each chunk stays on its chunk's thread, so the two do not fight.
 * Scratch for every chunk is taken up front, so a host out of memory fails the launch before anything is written. */
static synStatus run_attention(Attention* context, int64_t tasks, size_t floats_per_chunk, hpu_chunk_fn body,
                               const char* guid) {
    int64_t chunks = hpu_chunk_count(tasks, 1);
    context->scratch_per_chunk = floats_per_chunk;
    context->scratch = malloc((size_t)chunks * floats_per_chunk * sizeof(float));
    if (!context->scratch) {
        return hpu_fail(synOutOfHostMemory, "%s: no host memory for %lld x %zu floats of scratch", guid,
                        (long long)chunks, floats_per_chunk);
    }
    int previous = openblas_get_num_threads();
    int serial = chunks > 1 && previous != 1;
    if (serial) openblas_set_num_threads(1);
    hpu_parallel_chunks(tasks, 1, body, context);
    if (serial) openblas_set_num_threads(previous);
    free(context->scratch);
    return synSuccess;
}

synStatus hpu_attention_fwd(const float* q, const float* k, const float* v, float* out, float* lse,
                            const HpuAttentionParams* p) {
    Attention context = {.q = q, .k = k, .v = v, .o = out, .lse_out = lse, .p = p};
    return run_attention(&context, p->batch * p->heads, (size_t)(ATTENTION_BLOCK * p->seqLen), attention_fwd_chunk,
                         HPU_GUID_ATTENTION_FWD);
}

synStatus hpu_attention_bwd(const float* dOut, const float* q, const float* k, const float* v, const float* out,
                            const float* lse, float* dQ, float* dK, float* dV, const HpuAttentionParams* p) {
    Attention context = {.dOut = dOut, .q = q, .k = k, .v = v, .out = out, .lse = lse, .dQ = dQ, .dK = dK, .dV = dV,
                         .p = p};
    return run_attention(&context, p->batch * p->kvHeads, (size_t)(2 * ATTENTION_BLOCK * p->seqLen),
                         attention_bwd_chunk, HPU_GUID_ATTENTION_BWD);
}

/* ------------------------------------------------------------------------------------------------------------- */
/* SwiGLU                                                                                                         */
/* ------------------------------------------------------------------------------------------------------------- */

typedef struct Swiglu {
    const float *dy, *g, *u;
    float *out, *dg, *du;
} Swiglu;

static void swiglu_fwd_chunk(void* context, int64_t chunk, int64_t begin, int64_t end) {
    (void)chunk;
    const Swiglu* c = context;
    int64_t i = begin;
    for (; i + 8 <= end; i += 8) {
        v8f g = load8(c->g + i);
        store8(c->out + i, g * sigmoid8(g) * load8(c->u + i));
    }
    for (; i < end; i++) {
        float g = c->g[i];
        c->out[i] = g * fast_sigmoid(g) * c->u[i];
    }
}

static void swiglu_bwd_chunk(void* context, int64_t chunk, int64_t begin, int64_t end) {
    (void)chunk;
    const Swiglu* c = context;
    int64_t i = begin;
    for (; i + 8 <= end; i += 8) {
        v8f g = load8(c->g + i), dy = load8(c->dy + i);
        v8f s = sigmoid8(g);
        store8(c->du + i, dy * g * s);
        store8(c->dg + i, dy * load8(c->u + i) * s * (1.0f + g * (1.0f - s)));
    }
    for (; i < end; i++) {
        float g = c->g[i], dy = c->dy[i];
        float s = fast_sigmoid(g);
        c->du[i] = dy * g * s;
        c->dg[i] = dy * c->u[i] * s * (1.0f + g * (1.0f - s));
    }
}

void hpu_swiglu_fwd(const float* gate, const float* up, float* out, int64_t count) {
    Swiglu context = {.g = gate, .u = up, .out = out};
    hpu_parallel_chunks(count, 1 << 14, swiglu_fwd_chunk, &context);
}

void hpu_swiglu_bwd(const float* dOut, const float* gate, const float* up, float* dGate, float* dUp,
                    int64_t count) {
    Swiglu context = {.dy = dOut, .g = gate, .u = up, .dg = dGate, .du = dUp};
    hpu_parallel_chunks(count, 1 << 14, swiglu_bwd_chunk, &context);
}

/* ------------------------------------------------------------------------------------------------------------- */
/* Cross-entropy                                                                                                  */
/* ------------------------------------------------------------------------------------------------------------- */

typedef struct CrossEntropy {
    float* logits;
    const int32_t* targets;
    float* losses;
    int64_t vocab;
    float loss_scale;
} CrossEntropy;

static void cross_entropy_chunk(void* context, int64_t chunk, int64_t begin, int64_t end) {
    (void)chunk;
    const CrossEntropy* c = context;
    const int64_t V = c->vocab;
    for (int64_t r = begin; r < end; r++) {
        float* row = c->logits + r * V;
        int32_t target = c->targets[r];
        if (target < 0) {
            c->losses[r] = 0.0f;
            memset(row, 0, (size_t)V * sizeof *row);
            continue;
        }
        float target_logit = row[target];
        float max = max_of(row, V);
        float sum = exp_in_place(row, V, max);
        c->losses[r] = logf(sum) + max - target_logit;
        scale_in_place(row, V, c->loss_scale / sum);
        row[target] -= c->loss_scale;
    }
}

synStatus hpu_cross_entropy(float* logits, const int32_t* targets, float* losses, int64_t rows, int64_t vocab,
                            float lossScale) {
    /* Checked up front so a bad target leaves every row untouched. */
    for (int64_t r = 0; r < rows; r++) {
        if (targets[r] >= vocab) {
            return hpu_fail(synKernelFailed, "%s: target %d at row %lld is outside the vocabulary of %lld",
                            HPU_GUID_CROSS_ENTROPY, targets[r], (long long)r, (long long)vocab);
        }
    }
    CrossEntropy context = {logits, targets, losses, vocab, lossScale};
    hpu_parallel_chunks(rows, 1, cross_entropy_chunk, &context);
    return synSuccess;
}

/* ------------------------------------------------------------------------------------------------------------- */
/* AdamW                                                                                                          */
/* ------------------------------------------------------------------------------------------------------------- */

typedef struct AdamW {
    float *p, *m, *v;
    const float* g;
    float decay, step_size, correction2_sqrt, beta2, one_minus_beta1, one_minus_beta2, eps;
} AdamW;

static void adamw_chunk(void* context, int64_t chunk, int64_t begin, int64_t end) {
    (void)chunk;
    const AdamW* c = context;
    int64_t i = begin;
    /* Explicit vectors: sqrtf may set errno, so clang will not vectorise the scalar loop by itself. */
    for (; i + 8 <= end; i += 8) {
        v8f g = load8(c->g + i), m = load8(c->m + i);
        m += c->one_minus_beta1 * (g - m);
        v8f v = load8(c->v + i) * c->beta2 + c->one_minus_beta2 * g * g;
        v8f denominator = SQRT8(v) / c->correction2_sqrt + c->eps;
        store8(c->m + i, m);
        store8(c->v + i, v);
        store8(c->p + i, load8(c->p + i) * c->decay - c->step_size * m / denominator);
    }
    for (; i < end; i++) {
        float g = c->g[i];
        float m = c->m[i] + c->one_minus_beta1 * (g - c->m[i]);
        float v = c->v[i] * c->beta2 + c->one_minus_beta2 * g * g;
        c->m[i] = m;
        c->v[i] = v;
        c->p[i] = c->p[i] * c->decay - c->step_size * m / (sqrtf(v) / c->correction2_sqrt + c->eps);
    }
}

void hpu_adamw(float* params, const float* grads, float* m, float* v, const HpuAdamWParams* p) {
    /* torch.optim.AdamW's single-tensor order: decay, lerp of m, then step_size * m / (sqrt(v) / sqrt(bc2) + eps),
     * bias corrections in double as Python computes them. */
    double correction1 = 1.0 - pow((double)p->beta1, (double)p->step);
    double correction2 = 1.0 - pow((double)p->beta2, (double)p->step);
    AdamW context = {
        .p = params, .m = m, .v = v, .g = grads,
        .decay = 1.0f - p->lr * p->weightDecay,
        .step_size = (float)((double)p->lr / correction1),
        .correction2_sqrt = (float)sqrt(correction2),
        .beta2 = p->beta2,
        .one_minus_beta1 = 1.0f - p->beta1,
        .one_minus_beta2 = 1.0f - p->beta2,
        .eps = p->eps,
    };
    hpu_parallel_chunks(p->count, 1 << 15, adamw_chunk, &context);
}
