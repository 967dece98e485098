/*
 * The stub's token-level distillation loss (HPU_GUID_DISTILLATION_LOSS, ABI 1.2; absent entries since 1.3), on host memory. The arithmetic
 * follows the CPU backend's (Sources/DraftDevice/CPU/CPUDistillationLoss.swift) step for step: float passes over
 * the vocabulary with the shared exp polynomial, per-row scalars in double, so the two backends agree to rounding.
 */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "stub_internal.h"
#include "stub_vector.h"

/* q_rest's floor, and how far above 0 a teacher log-prob may round. */
#define TINY_MASS ((double)FLT_MIN)
#define LOGPROB_SLACK 1e-3f

typedef struct Distillation {
    float* logits;
    const int32_t* targets;
    const int32_t* ids;
    const float* logprobs;
    float *losses, *ce_losses, *kd_losses;
    int64_t vocab, top_k;
    uint32_t divergence;
    double kd_weight;
    float loss_scale;
    /* Per chunk: top_k logits, q and gradients. */
    double* scratch;
} Distillation;

static float sum_of(const float* row, int64_t length) {
    v8f acc = splat8(0.0f);
    int64_t j = 0;
    for (; j + 8 <= length; j += 8) acc += load8(row + j);
    float tail = 0.0f;
    for (; j < length; j++) tail += row[j];
    return sum8(acc) + tail;
}

static double sign_of(double x) { return x > 0 ? 1.0 : (x < 0 ? -1.0 : 0.0); }

static void distillation_chunk(void* context, int64_t chunk, int64_t begin, int64_t end) {
    const Distillation* c = context;
    const int64_t V = c->vocab, K = c->top_k;
    const double w_kd = c->kd_weight, w_ce = 1.0 - c->kd_weight;
    double* logit = c->scratch + chunk * 3 * K;
    double* q = logit + K;
    double* gradient = q + K;
    for (int64_t r = begin; r < end; r++) {
        float* row = c->logits + r * V;
        const int32_t* ids = c->ids + r * K;
        const float* lp = c->logprobs + r * K;
        int32_t target = c->targets[r];
        if (target < 0) {
            c->losses[r] = c->ce_losses[r] = c->kd_losses[r] = 0.0f;
            memset(row, 0, (size_t)V * sizeof *row);
            continue;
        }
        float target_logit = row[target];
        float max = max_of(row, V);
        /* An absent entry (id -1, since ABI 1.3) is teacher mass in the rest bucket; a row without a present one
         * has no teacher. */
        int has_teacher = 0;
        for (int64_t i = 0; i < K; i++) {
            if (ids[i] < 0) continue;
            logit[i] = row[ids[i]];
            has_teacher = 1;
        }
        float sum = exp_in_place(row, V, max);
        double log_sum = (double)logf(sum) + (double)max;
        double ce = log_sum - (double)target_logit;
        if (!has_teacher) {
            c->losses[r] = c->ce_losses[r] = (float)ce;
            c->kd_losses[r] = 0.0f;
            scale_in_place(row, V, c->loss_scale / sum);
            row[target] -= c->loss_scale;
            continue;
        }
        for (int64_t i = 0; i < K; i++) {
            if (ids[i] < 0) continue;
            q[i] = (double)(row[ids[i]] / sum);
            row[ids[i]] = 0.0f;
        }
        double complement = (double)(sum_of(row, V) / sum);
        double p_sum = 0.0;
        for (int64_t i = 0; i < K; i++) {
            if (ids[i] >= 0) p_sum += exp((double)lp[i]);
        }
        double p_rest = p_sum < 1.0 ? 1.0 - p_sum : 0.0;
        int live = complement > TINY_MASS;
        double q_rest = live ? complement : TINY_MASS;
        double kd = 0.0, h_sum = 0.0, g_rest = 0.0;
        if (c->divergence == HPU_DIVERGENCE_KL) {
            for (int64_t i = 0; i < K; i++) {
                if (ids[i] < 0) continue;
                double l = (double)lp[i], p = exp(l);
                if (p > 0) kd += p * (l - (logit[i] - log_sum));
                gradient[i] = -p;
                h_sum -= p;
            }
            if (p_rest > 0) kd += p_rest * (log(p_rest) - log(q_rest));
            g_rest = live ? -p_rest / q_rest : 0.0;
        } else {
            double abs_sum = 0.0;
            for (int64_t i = 0; i < K; i++) {
                if (ids[i] < 0) continue;
                double p = exp((double)lp[i]);
                abs_sum += fabs(p - q[i]);
                double h = q[i] * 0.5 * sign_of(q[i] - p);
                gradient[i] = h;
                h_sum += h;
            }
            kd = 0.5 * (abs_sum + fabs(p_rest - q_rest));
            g_rest = live ? 0.5 * sign_of(q_rest - p_rest) : 0.0;
        }
        double gq = w_kd * (h_sum + g_rest * complement) - w_ce;
        c->losses[r] = (float)(w_ce * ce + w_kd * kd);
        c->ce_losses[r] = (float)ce;
        c->kd_losses[r] = (float)kd;
        scale_in_place(row, V, c->loss_scale * (float)(w_kd * g_rest - gq) / sum);
        for (int64_t i = 0; i < K; i++) {
            if (ids[i] >= 0) row[ids[i]] = c->loss_scale * (float)(w_kd * gradient[i] - q[i] * gq);
        }
        row[target] -= c->loss_scale * (float)w_ce;
    }
}

/* What is wrong with row r's inputs: fails (before anything is written) naming the row and the value. */
static synStatus check_row(const int32_t* targets, const int32_t* ids, const float* logprobs, int64_t r, int64_t V,
                           int64_t K) {
    const char* guid = HPU_GUID_DISTILLATION_LOSS;
    if (targets[r] >= V) {
        return hpu_fail(synKernelFailed, "%s: target %d at row %lld is outside the vocabulary of %lld", guid,
                        targets[r], (long long)r, (long long)V);
    }
    const int32_t* row = ids + r * K;
    const float* lp = logprobs + r * K;
    if (hpu_served_minor() < HPU_PLUGIN_ABI_MINOR_ABSENT_TEACHER_IDS && row[0] < 0) {
        for (int64_t i = 0; i < K; i++) {
            if (row[i] != -1) {
                return hpu_fail(synKernelFailed, "%s: row %lld: teacher ids must be all -1 or all in [0, %lld) in "
                                "ABI 1.%d, got %d at %lld with -1 at 0 (absent entries beside present ones need 1.%d)",
                                guid, (long long)r, (long long)V, hpu_served_minor(), row[i], (long long)i,
                                HPU_PLUGIN_ABI_MINOR_ABSENT_TEACHER_IDS);
            }
        }
        return synSuccess;
    }
    for (int64_t i = 0; i < K; i++) {
        if (row[i] == -1) {
            if (hpu_served_minor() < HPU_PLUGIN_ABI_MINOR_ABSENT_TEACHER_IDS) {
                return hpu_fail(synKernelFailed, "%s: row %lld: teacher id -1 at %lld beside present ones: ABI 1.%d "
                                "takes none (absent entries need 1.%d)", guid, (long long)r, (long long)i,
                                hpu_served_minor(), HPU_PLUGIN_ABI_MINOR_ABSENT_TEACHER_IDS);
            }
            continue; /* absent */
        }
        if (row[i] < 0 || row[i] >= V) {
            return hpu_fail(synKernelFailed, "%s: row %lld: teacher id %d at %lld is neither -1 (absent) nor in the "
                            "vocabulary of %lld", guid, (long long)r, row[i], (long long)i, (long long)V);
        }
        for (int64_t j = 0; j < i; j++) {
            if (row[j] == row[i]) {
                return hpu_fail(synKernelFailed, "%s: row %lld: teacher id %d appears at %lld and %lld", guid,
                                (long long)r, row[i], (long long)j, (long long)i);
            }
        }
        if (isnan(lp[i]) || lp[i] > LOGPROB_SLACK) {
            return hpu_fail(synKernelFailed, "%s: row %lld: teacher log-prob %g at %lld is not a log-probability",
                            guid, (long long)r, (double)lp[i], (long long)i);
        }
    }
    return synSuccess;
}

synStatus hpu_distillation_loss(float* logits, const int32_t* targets, const int32_t* ids, const float* logprobs,
                                float* losses, float* ceLosses, float* kdLosses, const HpuDistillationLossParams* p) {
    for (int64_t r = 0; r < p->rows; r++) {
        synStatus status = check_row(targets, ids, logprobs, r, p->vocab, p->topK);
        if (status != synSuccess) return status;
    }
    int64_t chunks = hpu_chunk_count(p->rows, 1);
    double* scratch = malloc((size_t)(chunks > 0 ? chunks : 1) * 3 * (size_t)p->topK * sizeof *scratch);
    if (!scratch) {
        return hpu_fail(synOutOfHostMemory, "%s: no host scratch for %lld rows of top-%lld", HPU_GUID_DISTILLATION_LOSS,
                        (long long)p->rows, (long long)p->topK);
    }
    Distillation context = {logits, targets, ids, logprobs, losses, ceLosses, kdLosses, p->vocab, p->topK,
                            p->divergence, (double)p->kdWeight, p->lossScale, scratch};
    hpu_parallel_chunks(p->rows, 1, distillation_chunk, &context);
    free(scratch);
    return synSuccess;
}
