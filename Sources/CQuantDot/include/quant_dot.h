#ifndef SWIFTDRAFT_QUANT_DOT_H
#define SWIFTDRAFT_QUANT_DOT_H
/*
 * Integer products of ggml block-quantized weights with 8-bit quantized activations (llama.cpp's way of running a
 * decode step), for the small-m products of inference: decode (one row per sequence) and speculative verification
 * (a few rows). Each activation row is quantized in blocks of 32: scale d = max|x| / 127, q = x / d rounded to
 * nearest (ties to even). A weight block's dot with it is then one integer dot product (AVX-512 VNNI `vpdpbusd`)
 * scaled once, where the exact path converts every weight to float.
 *
 * Every function except `sd_integer_dots_available` needs a CPU for which it returned true.
 */
#include <stdbool.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/**
 * How far ahead every fused kernel (these and the Swift exact ones) prefetches: the same block 8 rows on (two groups
 * of 4). A group's 4 rows are short streams (360 bytes for a 576-column Q4_1 row) read side by side, too short for the
 * hardware prefetcher to learn; without this, one thread read SmolLM2's weights at about 7 GB/s against 27 GB/s for a
 * plain read (layers' products per decode step on 2 threads, quant-bench: 6.0 ms without, 3.6 / 3.4 / 3.5 ms at
 * 4 / 8 / 16 rows).
 */
#define SD_PREFETCH_ROWS 8

/** A read prefetch into L1, for the Swift kernels (Swift has no prefetch of its own). */
static inline void sd_prefetch(const void *p) { __builtin_prefetch(p, 0, 3); }

/** Weight block types with an integer kernel (ggml's layouts, `ggml-common.h`). */
typedef enum {
    SD_WEIGHT_Q4_0 = 0, /**< 18-byte blocks: f16 d, 16 bytes of nibbles; value d * (q - 8). */
    SD_WEIGHT_Q4_1 = 1, /**< 20-byte blocks: f16 d, f16 m, 16 bytes of nibbles; value d * q + m. */
    SD_WEIGHT_Q8_0 = 2, /**< 34-byte blocks: f16 d, 32 signed bytes; value d * q. */
} sd_weight_type;

/** True when this CPU has AVX-512 F/BW/VL/VNNI, FMA and F16C (checked once, at run time). */
bool sd_integer_dots_available(void);

/**
 * Quantizes `blocks * 32` floats of `x` into `qs` (`blocks * 32` bytes), the block scales `d` and the blocks' sums
 * of quants `sums` (the integer corrections of Q4_0, Q4_1 and Q8_0 use them). An all-zero block gets d = 0.
 */
void sd_int8_quantize_row(const float *x, int64_t blocks, int8_t *qs, float *d, int32_t *sums);

/**
 * `y[i * y_stride + r]` = dot(weight row r, activation row i) for r in [row_begin, row_end) and i < m (1...4).
 * `w` is the matrix's first row, `row_bytes` apart; activation row i is `qs + i * blocks * 32`, `d + i * blocks`,
 * `sums + i * blocks` as written by `sd_int8_quantize_row`.
 */
void sd_int8_product(sd_weight_type type, const void *w, int64_t row_bytes, int64_t blocks,
                     int64_t row_begin, int64_t row_end, const int8_t *qs, const float *d, const int32_t *sums,
                     int m, float *y, int64_t y_stride);

/**
 * As `sd_int8_quantize_row` with 16-bit quants: d = max|x| / 32767. The error per element is 1/258 of the 8-bit
 * one, small enough that a model's greedy output matches the exact product's.
 */
void sd_int16_quantize_row(const float *x, int64_t blocks, int16_t *qs, float *d, int32_t *sums);

/** As `sd_int8_product` with 16-bit activations from `sd_int16_quantize_row` (`vpdpwssd`). */
void sd_int16_product(sd_weight_type type, const void *w, int64_t row_bytes, int64_t blocks,
                      int64_t row_begin, int64_t row_end, const int16_t *qs, const float *d, const int32_t *sums,
                      int m, float *y, int64_t y_stride);

/**
 * Copies `groups` groups of 16 weight rows (rows `16 * groups` of `w`, `row_bytes` apart) into `out` in the layout of
 * the interleaved products: per group and block, the 16 rows' scales d (halves), for Q4_1 their minimums m, then
 * chunks of 16 lanes of `lane_bytes` bytes whose lane r is the next `lane_bytes` of row r's quant bytes: 2 for
 * `sd_int16_interleaved_product` (a pair of 16-bit elements once widened), 4 for `sd_int8_interleaved_product` (4
 * bytes for one `vpdpbusd` lane). `out` holds exactly as many bytes as the rows (`16 * groups * row_bytes`). Plain
 * byte moves: any CPU runs it.
 */
void sd_interleave(sd_weight_type type, const void *w, int64_t row_bytes, int64_t blocks, int64_t groups,
                   int lane_bytes, void *out);

/**
 * The few-row product on interleaved weights (`sd_interleave` with 2-byte lanes): as `sd_int16_product`, for weight
 * rows [16 * group_begin, 16 * group_end) and any m (passes of 4 activation rows per group), from
 * `sd_int16_quantize_row`'s activations. Each `vpdpwssd` adds to 16 weight rows' sums, so m rows cost far less than m
 * times one row.
 */
void sd_int16_interleaved_product(sd_weight_type type, const void *packed, int64_t blocks, int64_t group_begin,
                                  int64_t group_end, const int16_t *qs, const float *d, const int32_t *sums, int64_t m,
                                  float *y, int64_t y_stride);

/** As `sd_int16_interleaved_product` with 8-bit activations (`sd_int8_quantize_row`) on 4-byte lanes (`vpdpbusd`). */
void sd_int8_interleaved_product(sd_weight_type type, const void *packed, int64_t blocks, int64_t group_begin,
                                 int64_t group_end, const int8_t *qs, const float *d, const int32_t *sums, int64_t m,
                                 float *y, int64_t y_stride);

/** Bytes of scratch one call of `sd_int16_gemm` needs (per thread) for rows of `blocks` blocks. */
int64_t sd_int16_gemm_scratch_bytes(int64_t blocks);

/**
 * The many-row product (prefill chunks, batches): as `sd_int16_product` for any `m`, activation row i at
 * `qs + i * blocks * 32`, `d + i * blocks`, `sums + i * blocks`. Weight rows are taken 32 at a time, widened and
 * transposed once into `scratch` (`sd_int16_gemm_scratch_bytes(blocks)` bytes, 64-byte aligned), then multiplied by
 * every activation row, so that each `vpdpwssd` adds to 16 different outputs. The results equal the row kernels' up
 * to the order of float additions.
 */
void sd_int16_gemm(sd_weight_type type, const void *w, int64_t row_bytes, int64_t blocks, int64_t row_begin,
                   int64_t row_end, const int16_t *qs, const float *d, const int32_t *sums, int64_t m, float *y,
                   int64_t y_stride, void *scratch);

#ifdef __cplusplus
}
#endif
#endif
