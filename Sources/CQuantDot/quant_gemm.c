/*
 * The many-row integer product (quant_dot.h, `sd_int16_gemm`): prefill chunks and batches of sequences, where the
 * products are bound by arithmetic, not by reading the weights.
 *
 * The row kernels (quant_dot.c) keep each block's 16 lanes apart and scale them with one broadcast factor, which costs
 * a conversion and a multiply-add per `vpdpwssd`: fine when memory is the limit, a third of the work when it is not.
 * Here the lanes are 16 different weight rows instead. 32 weight rows are widened once to 16 bits and transposed into
 * a tile whose vector p holds elements (2p, 2p + 1) of each row. `vpdpwssd` of that vector with a broadcast pair of
 * one activation row's elements then adds to 16 (row, column) sums at once, and a block of 32 needs 16 of them per 16
 * columns before one conversion and one scaling. That is 32 multiply-adds per instruction, twice an fp32 FMA's 16,
 * with the scaling's 5 extra instructions per 16 `vpdpwssd`.
 */
#include "quant_dot.h"
#include "quant_internal.h"

/* Columns (weight rows) per tile: two vectors of 16 lanes, so 4 activation rows take 8 integer and 8 float
 * accumulators, with registers left for the tile's two vectors and the broadcasts. 5 or 6 rows were slower (quant-bench
 * --batch 64: 181-209 GFLOP/s against 246). */
#define SD_TILE_COLUMNS 32
#define SD_GEMM_ROWS 4

int64_t sd_int16_gemm_scratch_bytes(int64_t blocks) {
    /* The transposed quants (blocks x 16 pairs x 32 columns of int32), then d and m per block and column. */
    return blocks * (16 * SD_TILE_COLUMNS * 4 + 2 * SD_TILE_COLUMNS * 4);
}

#if defined(__x86_64__)

/*
 * In-register transpose of a 16 x 16 matrix of int32: r[c] holds row c on entry, r[e] holds column e on exit.
 * 4 x 4 transposes inside each 128-bit lane (unpacks), then a 4 x 4 transpose of the lanes themselves (shuffles).
 */
SD_INLINE void sd_transpose16x16(__m512i r[16]) {
    __m512i u[16];
    for (int g = 0; g < 4; g++) {
        const __m512i *a = r + 4 * g;
        const __m512i t0 = _mm512_unpacklo_epi32(a[0], a[1]), t1 = _mm512_unpackhi_epi32(a[0], a[1]);
        const __m512i t2 = _mm512_unpacklo_epi32(a[2], a[3]), t3 = _mm512_unpackhi_epi32(a[2], a[3]);
        /* u[4g + k], lane L: element 4L + k of rows 4g...4g+3. */
        u[4 * g + 0] = _mm512_unpacklo_epi64(t0, t2);
        u[4 * g + 1] = _mm512_unpackhi_epi64(t0, t2);
        u[4 * g + 2] = _mm512_unpacklo_epi64(t1, t3);
        u[4 * g + 3] = _mm512_unpackhi_epi64(t1, t3);
    }
    for (int k = 0; k < 4; k++) {
        const __m512i v0 = _mm512_shuffle_i32x4(u[k], u[4 + k], 0x44), v1 = _mm512_shuffle_i32x4(u[k], u[4 + k], 0xEE);
        const __m512i v2 = _mm512_shuffle_i32x4(u[8 + k], u[12 + k], 0x44);
        const __m512i v3 = _mm512_shuffle_i32x4(u[8 + k], u[12 + k], 0xEE);
        r[0 + k] = _mm512_shuffle_i32x4(v0, v2, 0x88);
        r[4 + k] = _mm512_shuffle_i32x4(v0, v2, 0xDD);
        r[8 + k] = _mm512_shuffle_i32x4(v1, v3, 0x88);
        r[12 + k] = _mm512_shuffle_i32x4(v1, v3, 0xDD);
    }
}

/*
 * Weight rows [r0, r0 + count), count <= 32, into the tile: quants at `tile + (b * 16 + p) * 32 + c` (the pair
 * (2p, 2p + 1) of block b of row r0 + c, as one int32), then per block the 32 scales d and (Q4_1) minimums m.
 * Missing rows are zeros, so a partial tile computes zeros in its unused lanes.
 */
SD_INLINE void sd_pack_tile(sd_weight_type type, const uint8_t *w, int64_t row_bytes, int64_t blocks, int64_t r0,
                            int count, int32_t *tile, float *scales, float *minimums) {
    const int64_t block_bytes = sd_block_bytes(type);
    for (int64_t b = 0; b < blocks; b++) {
        for (int half = 0; half < 2; half++) {
            __m512i r[16];
            for (int c = 0; c < 16; c++) {
                const int row = half * 16 + c;
                if (row < count) {
                    const uint8_t *block = w + (r0 + row) * row_bytes + b * block_bytes;
                    r[c] = sd_widen16(type, block);
                    scales[b * SD_TILE_COLUMNS + row] = sd_half(block);
                    minimums[b * SD_TILE_COLUMNS + row] = type == SD_WEIGHT_Q4_1 ? sd_half(block + 2) : 0.0f;
                } else {
                    r[c] = _mm512_setzero_si512();
                    scales[b * SD_TILE_COLUMNS + row] = 0.0f;
                    minimums[b * SD_TILE_COLUMNS + row] = 0.0f;
                }
            }
            sd_transpose16x16(r);
            for (int p = 0; p < 16; p++) {
                _mm512_store_si512((void *)(tile + (b * 16 + p) * SD_TILE_COLUMNS + half * 16), r[p]);
            }
        }
    }
}

/*
 * R activation rows (1...4) against one packed tile of 32 columns, every block. Per block and row the 32 lanes'
 * integer sums are converted, multiplied by the columns' d and the row's d, and added; Q4_1 adds m * d_x * sum(q_x).
 * A lane sums up to 32 products of at most 127 * 32767, below 2^31.
 */
SD_INLINE void sd_gemm16_rows(sd_weight_type type, int R, const int32_t *tile, const float *scales,
                              const float *minimums, int64_t blocks, const int16_t *qs, const float *d,
                              const int32_t *sums, float *y, int64_t y_stride, __mmask16 mask0, __mmask16 mask1) {
    __m512 acc[SD_GEMM_ROWS][2];
    for (int i = 0; i < R; i++) acc[i][0] = acc[i][1] = _mm512_setzero_ps();
    for (int64_t b = 0; b < blocks; b++) {
        __m512i dot[SD_GEMM_ROWS][2];
        for (int i = 0; i < R; i++) dot[i][0] = dot[i][1] = _mm512_setzero_si512();
        const int32_t *t = tile + b * 16 * SD_TILE_COLUMNS;
        for (int p = 0; p < 16; p++) {
            const __m512i w0 = _mm512_load_si512((const void *)(t + p * SD_TILE_COLUMNS));
            const __m512i w1 = _mm512_load_si512((const void *)(t + p * SD_TILE_COLUMNS + 16));
            for (int i = 0; i < R; i++) {
                int32_t pair;
                memcpy(&pair, qs + i * blocks * 32 + b * 32 + 2 * p, sizeof pair);
                const __m512i x = _mm512_set1_epi32(pair);
                dot[i][0] = _mm512_dpwssd_epi32(dot[i][0], w0, x);
                dot[i][1] = _mm512_dpwssd_epi32(dot[i][1], w1, x);
            }
        }
        const __m512 d0 = _mm512_load_ps(scales + b * SD_TILE_COLUMNS);
        const __m512 d1 = _mm512_load_ps(scales + b * SD_TILE_COLUMNS + 16);
        for (int i = 0; i < R; i++) {
            const __m512 dx = _mm512_set1_ps(d[i * blocks + b]);
            acc[i][0] = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(dot[i][0]), d0), dx, acc[i][0]);
            acc[i][1] = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(dot[i][1]), d1), dx, acc[i][1]);
        }
        if (type == SD_WEIGHT_Q4_1) {
            const __m512 m0 = _mm512_load_ps(minimums + b * SD_TILE_COLUMNS);
            const __m512 m1 = _mm512_load_ps(minimums + b * SD_TILE_COLUMNS + 16);
            for (int i = 0; i < R; i++) {
                const __m512 sx = _mm512_set1_ps(d[i * blocks + b] * (float)sums[i * blocks + b]);
                acc[i][0] = _mm512_fmadd_ps(m0, sx, acc[i][0]);
                acc[i][1] = _mm512_fmadd_ps(m1, sx, acc[i][1]);
            }
        }
    }
    for (int i = 0; i < R; i++) {
        _mm512_mask_storeu_ps(y + i * y_stride, mask0, acc[i][0]);
        _mm512_mask_storeu_ps(y + i * y_stride + 16, mask1, acc[i][1]);
    }
}

/* R activation rows from row i against the packed tile. */
#define SD_GEMM_CALL(T, R)                                                                                             \
    sd_gemm16_rows(T, R, tile, scales, minimums, blocks, qs + i * blocks * 32, d + i * blocks, sums + i * blocks,      \
                   y + i * y_stride + c0, y_stride, mask0, mask1)

/* One function per weight type: pack each tile of the range, then run every activation row against it. */
#define SD_GEMM16(T)                                                                                                   \
    SD_VNNI __attribute__((noinline)) static void sd_gemm16_##T(                                                        \
        const uint8_t *w, int64_t row_bytes, int64_t blocks, int64_t r0, int64_t r1, const int16_t *qs,                \
        const float *d, const int32_t *sums, int64_t m, float *y, int64_t y_stride, void *scratch) {                   \
        int32_t *tile = (int32_t *)scratch;                                                                             \
        float *scales = (float *)(tile + blocks * 16 * SD_TILE_COLUMNS);                                               \
        float *minimums = scales + blocks * SD_TILE_COLUMNS;                                                            \
        for (int64_t c0 = r0; c0 < r1; c0 += SD_TILE_COLUMNS) {                                                         \
            const int count = (int)(r1 - c0 < SD_TILE_COLUMNS ? r1 - c0 : SD_TILE_COLUMNS);                            \
            sd_pack_tile(T, w, row_bytes, blocks, c0, count, tile, scales, minimums);                                  \
            const __mmask16 mask0 = (__mmask16)(count >= 16 ? 0xFFFF : (1u << count) - 1);                             \
            const __mmask16 mask1 = (__mmask16)(count >= 32 ? 0xFFFF : count <= 16 ? 0 : (1u << (count - 16)) - 1);    \
            /* The next tile's weight rows are one contiguous run of bytes: fetch it into L2, a slice per group of  \
             * activation rows, while this tile computes. */                                                            \
            const int64_t next = c0 + SD_TILE_COLUMNS < r1 ? c0 + SD_TILE_COLUMNS : r1;                                \
            const int64_t next_end = next + SD_TILE_COLUMNS < r1 ? next + SD_TILE_COLUMNS : r1;                        \
            const uint8_t *ahead = w + next * row_bytes;                                                                \
            const int64_t ahead_lines = ((next_end - next) * row_bytes + 63) / 64;                                     \
            const int64_t groups = (m + SD_GEMM_ROWS - 1) / SD_GEMM_ROWS;                                              \
            int64_t i = 0, line = 0;                                                                                    \
            for (; i + SD_GEMM_ROWS <= m; i += SD_GEMM_ROWS) {                                                          \
                const int64_t until = ahead_lines * (i / SD_GEMM_ROWS + 1) / groups;                                   \
                for (; line < until; line++) _mm_prefetch((const char *)(ahead + line * 64), _MM_HINT_T1);            \
                SD_GEMM_CALL(T, SD_GEMM_ROWS);                                                                          \
            }                                                                                                           \
            for (; line < ahead_lines; line++) _mm_prefetch((const char *)(ahead + line * 64), _MM_HINT_T1);          \
            switch (m - i) {                                                                                            \
            case 3: SD_GEMM_CALL(T, 3); break;                                                                          \
            case 2: SD_GEMM_CALL(T, 2); break;                                                                          \
            case 1: SD_GEMM_CALL(T, 1); break;                                                                          \
            default: break;                                                                                             \
            }                                                                                                           \
        }                                                                                                               \
    }
SD_GEMM16(SD_WEIGHT_Q4_0)
SD_GEMM16(SD_WEIGHT_Q4_1)
SD_GEMM16(SD_WEIGHT_Q8_0)

void sd_int16_gemm(sd_weight_type type, const void *w, int64_t row_bytes, int64_t blocks, int64_t row_begin,
                   int64_t row_end, const int16_t *qs, const float *d, const int32_t *sums, int64_t m, float *y,
                   int64_t y_stride, void *scratch) {
    const uint8_t *weights = (const uint8_t *)w;
    switch (type) {
    case SD_WEIGHT_Q4_0:
        sd_gemm16_SD_WEIGHT_Q4_0(weights, row_bytes, blocks, row_begin, row_end, qs, d, sums, m, y, y_stride, scratch);
        break;
    case SD_WEIGHT_Q4_1:
        sd_gemm16_SD_WEIGHT_Q4_1(weights, row_bytes, blocks, row_begin, row_end, qs, d, sums, m, y, y_stride, scratch);
        break;
    case SD_WEIGHT_Q8_0:
        sd_gemm16_SD_WEIGHT_Q8_0(weights, row_bytes, blocks, row_begin, row_end, qs, d, sums, m, y, y_stride, scratch);
        break;
    }
}

#else /* not x86-64: no integer kernels; callers keep the exact path. */

void sd_int16_gemm(sd_weight_type type, const void *w, int64_t row_bytes, int64_t blocks, int64_t row_begin,
                   int64_t row_end, const int16_t *qs, const float *d, const int32_t *sums, int64_t m, float *y,
                   int64_t y_stride, void *scratch) {
    (void)type; (void)w; (void)row_bytes; (void)blocks; (void)row_begin; (void)row_end; (void)qs; (void)d;
    (void)sums; (void)m; (void)y; (void)y_stride; (void)scratch;
}
#endif
