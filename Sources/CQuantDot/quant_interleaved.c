/*
 * The few-row integer products on weights interleaved 16 rows at a time (quant_dot.h: `sd_interleave`,
 * `sd_int16_interleaved_product`, `sd_int8_interleaved_product`): decode and speculative verification, where each
 * weight is read from memory once per product and the product's rows (1 to a few) share it.
 *
 * The row kernels (quant_dot.c) give each block's dot its own vector: one weight row against one activation row, 16
 * lanes summed at the end. Every (weight row, activation row, block) then costs a `vpdpwssd`, a conversion, a scalar
 * scale and a multiply-add, so 4 activation rows cost nearly 4 times 1 (verification at gamma 3 was 1.9 decode steps).
 * Here the 16 lanes are 16 weight rows: a block's quants are stored so that one load widens to the same elements of
 * 16 rows (pairs for 16-bit activations, quads of bytes for 8-bit ones), `vpdpwssd` / `vpdpbusd` with a broadcast pair
 * or quad of one activation row adds to 16 dot products at once, and a block costs 16 `vpdpwssd` (or 8 `vpdpbusd`) per
 * activation row plus one conversion and one scaling by 16 weight scales, with no horizontal sums. The bytes are the
 * original blocks' bytes in another order, so the interleaved copy is exactly as large as the matrix.
 */
#include <string.h>

#include "quant_dot.h"
#include "quant_internal.h"

/* Activation rows per pass over a group's blocks: 4 rows keep 8 integer and 4 float accumulators in registers, with
 * the widened weights beside them. More rows take further passes over the group, which is in L1 by then. */
#define SD_INTERLEAVED_ROWS 4

/* Bytes of one block's header in a group: 16 scales d, and for Q4_1 16 minimums m, as halves. */
static int64_t sd_group_header_bytes(sd_weight_type type) { return type == SD_WEIGHT_Q4_1 ? 64 : 32; }

void sd_interleave(sd_weight_type type, const void *w, int64_t row_bytes, int64_t blocks, int64_t groups,
                   int lane_bytes, void *out) {
    /* Spelled out, not `sd_block_bytes`: quant_internal.h is x86-only, and this plain byte shuffle is not. */
    const int64_t block_bytes = type == SD_WEIGHT_Q4_0 ? 18 : type == SD_WEIGHT_Q4_1 ? 20 : 34;
    const int64_t header = sd_group_header_bytes(type);
    const int64_t quant_start = type == SD_WEIGHT_Q4_1 ? 4 : 2; /* where a block's quants begin */
    const int64_t units = (block_bytes - quant_start) / lane_bytes;
    const uint8_t *src = (const uint8_t *)w;
    uint8_t *dst = (uint8_t *)out;
    for (int64_t g = 0; g < groups; g++) {
        for (int64_t b = 0; b < blocks; b++) {
            for (int64_t r = 0; r < 16; r++) {
                const uint8_t *block = src + (g * 16 + r) * row_bytes + b * block_bytes;
                /* Header: d of the 16 rows, then (Q4_1) their m. */
                memcpy(dst + 2 * r, block, 2);
                if (type == SD_WEIGHT_Q4_1) memcpy(dst + 32 + 2 * r, block + 2, 2);
                /* Quants: unit c of row r (lane_bytes bytes) at chunk c, lane r. A 4-bit block's byte j holds element j
                 * in its low nibble and j + 16 in its high one. */
                for (int64_t c = 0; c < units; c++) {
                    memcpy(dst + header + (c * 16 + r) * lane_bytes, block + quant_start + c * lane_bytes, lane_bytes);
                }
            }
            dst += 16 * block_bytes;
        }
    }
}

#if defined(__x86_64__)

/* The int32 pair (2p, 2p + 1) of a 16-bit activation row's block, broadcast to all 16 lanes (a `{1to16}` operand). */
SD_INLINE __m512i sd_pair(const int16_t *block, int p) {
    int32_t pair;
    memcpy(&pair, block + 2 * p, sizeof pair);
    return _mm512_set1_epi32(pair);
}

/* The 4 activation bytes (4q, ..., 4q + 3) of an 8-bit block, broadcast to all 16 lanes. */
SD_INLINE __m512i sd_quad(const int8_t *block, int q) {
    int32_t quad;
    memcpy(&quad, block + 4 * q, sizeof quad);
    return _mm512_set1_epi32(quad);
}

/*
 * One block of 16 weight rows against M activation rows with 16-bit activations (2-byte lanes): each 32-byte chunk
 * widens to pairs (2c, 2c + 1) of the 16 rows, one `vpdpwssd` per chunk and activation row, 16 per block.
 */
SD_INLINE void sd_block_dots16(sd_weight_type type, int M, const uint8_t *quants, const int16_t *x[],
                               __m512i even[], __m512i odd[]) {
    if (type == SD_WEIGHT_Q8_0) {
        for (int c = 0; c < 16; c += 2) {
            const __m512i w0 = _mm512_cvtepi8_epi16(_mm256_loadu_si256((const __m256i *)(quants + c * 32)));
            const __m512i w1 = _mm512_cvtepi8_epi16(_mm256_loadu_si256((const __m256i *)(quants + c * 32 + 32)));
            for (int i = 0; i < M; i++) {
                even[i] = _mm512_dpwssd_epi32(even[i], w0, sd_pair(x[i], c));
                odd[i] = _mm512_dpwssd_epi32(odd[i], w1, sd_pair(x[i], c + 1));
            }
        }
    } else {
        const __m512i nibble = _mm512_set1_epi16(0x0F);
        for (int c = 0; c < 8; c++) {
            const __m512i bytes = _mm512_cvtepu8_epi16(_mm256_loadu_si256((const __m256i *)(quants + c * 32)));
            const __m512i low = _mm512_and_si512(bytes, nibble), high = _mm512_srli_epi16(bytes, 4);
            for (int i = 0; i < M; i++) {
                even[i] = _mm512_dpwssd_epi32(even[i], low, sd_pair(x[i], c));
                odd[i] = _mm512_dpwssd_epi32(odd[i], high, sd_pair(x[i], c + 8));
            }
        }
    }
}

/*
 * The same with 8-bit activations (4-byte lanes): `vpdpbusd` multiplies 4 unsigned weight bytes by 4 signed
 * activation bytes per lane, so a block takes 8 of them per activation row where 16-bit activations take 16
 * `vpdpwssd`. Q8_0's bytes enter offset by 128 (unsigned); the caller's start corrects it.
 */
SD_INLINE void sd_block_dots8(sd_weight_type type, int M, const uint8_t *quants, const int8_t *x[], __m512i even[],
                              __m512i odd[]) {
    if (type == SD_WEIGHT_Q8_0) {
        const __m512i sign_flip = _mm512_set1_epi8((char)0x80);
        for (int c = 0; c < 8; c += 2) {
            const __m512i w0 = _mm512_xor_si512(_mm512_loadu_si512((const void *)(quants + c * 64)), sign_flip);
            const __m512i w1 = _mm512_xor_si512(_mm512_loadu_si512((const void *)(quants + c * 64 + 64)), sign_flip);
            for (int i = 0; i < M; i++) {
                even[i] = _mm512_dpbusd_epi32(even[i], w0, sd_quad(x[i], c));
                odd[i] = _mm512_dpbusd_epi32(odd[i], w1, sd_quad(x[i], c + 1));
            }
        }
    } else {
        const __m512i nibble = _mm512_set1_epi8(0x0F);
        for (int c = 0; c < 4; c++) {
            const __m512i bytes = _mm512_loadu_si512((const void *)(quants + c * 64));
            const __m512i low = _mm512_and_si512(bytes, nibble);
            const __m512i high = _mm512_and_si512(_mm512_srli_epi16(bytes, 4), nibble);
            for (int i = 0; i < M; i++) {
                even[i] = _mm512_dpbusd_epi32(even[i], low, sd_quad(x[i], c));
                odd[i] = _mm512_dpbusd_epi32(odd[i], high, sd_quad(x[i], c + 4));
            }
        }
    }
}

/*
 * One group of 16 weight rows against M activation rows (1...4) of BITS-bit quants: `y[i * y_stride + r]` for the
 * group's rows r. The weights' offsets enter as the integer sum's start, the same for every row: Q4_0's -8 as
 * -8 * sum(q_x), and with 8-bit activations Q8_0's +128 as -128 * sum(q_x). Q4_1's minimum m enters as
 * m * d_x * sum(q_x) per block, a multiply-add over the 16 rows. Every partial sum of a 4-bit block stays below 2^24,
 * so its conversion to float is exact (as in the row kernels).
 */
SD_INLINE void sd_interleaved_group(int bits, sd_weight_type type, int M, const uint8_t *group, int64_t blocks,
                                    const void *qs, const float *d, const int32_t *sums, float *y, int64_t y_stride) {
    const int64_t block_bytes = 16 * sd_block_bytes(type), header = sd_group_header_bytes(type);
    const int32_t offset = type == SD_WEIGHT_Q4_0 ? -8 : type == SD_WEIGHT_Q8_0 && bits == 8 ? -128 : 0;
    __m512 acc[SD_INTERLEAVED_ROWS];
    for (int i = 0; i < M; i++) acc[i] = _mm512_setzero_ps();
    for (int64_t b = 0; b < blocks; b++) {
        /* No software prefetch: each thread reads its groups as one sequential stream (measured no faster with one). */
        const uint8_t *p = group + b * block_bytes;
        __m512i even[SD_INTERLEAVED_ROWS], odd[SD_INTERLEAVED_ROWS];
        for (int i = 0; i < M; i++) {
            even[i] = _mm512_set1_epi32(offset * sums[i * blocks + b]);
            odd[i] = _mm512_setzero_si512();
        }
        if (bits == 16) {
            const int16_t *x[SD_INTERLEAVED_ROWS];
            for (int i = 0; i < M; i++) x[i] = (const int16_t *)qs + (i * blocks + b) * 32;
            sd_block_dots16(type, M, p + header, x, even, odd);
        } else {
            const int8_t *x[SD_INTERLEAVED_ROWS];
            for (int i = 0; i < M; i++) x[i] = (const int8_t *)qs + (i * blocks + b) * 32;
            sd_block_dots8(type, M, p + header, x, even, odd);
        }
        const __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p));
        for (int i = 0; i < M; i++) {
            const __m512 dot = _mm512_cvtepi32_ps(_mm512_add_epi32(even[i], odd[i]));
            acc[i] = _mm512_fmadd_ps(dot, _mm512_mul_ps(dw, _mm512_set1_ps(d[i * blocks + b])), acc[i]);
        }
        if (type == SD_WEIGHT_Q4_1) {
            const __m512 mw = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(p + 32)));
            for (int i = 0; i < M; i++) {
                const float sx = d[i * blocks + b] * (float)sums[i * blocks + b];
                acc[i] = _mm512_fmadd_ps(mw, _mm512_set1_ps(sx), acc[i]);
            }
        }
    }
    for (int i = 0; i < M; i++) _mm512_storeu_ps(y + i * y_stride, acc[i]);
}

/* One function per (activation width, type, M), so that every loop over M unrolls. */
#define SD_INTERLEAVED(BITS, T, M)                                                                                    \
    SD_VNNI __attribute__((noinline)) static void sd_interleaved##BITS##_##T##_##M(                                  \
        const uint8_t *group, int64_t blocks, const void *qs, const float *d, const int32_t *sums, float *y,        \
        int64_t y_stride) {                                                                                           \
        sd_interleaved_group(BITS, T, M, group, blocks, qs, d, sums, y, y_stride);                                    \
    }
#define SD_INTERLEAVED_TYPE(BITS, T)                                                                                  \
    SD_INTERLEAVED(BITS, T, 1) SD_INTERLEAVED(BITS, T, 2) SD_INTERLEAVED(BITS, T, 3) SD_INTERLEAVED(BITS, T, 4)
#define SD_INTERLEAVED_WIDTH(BITS)                                                                                    \
    SD_INTERLEAVED_TYPE(BITS, SD_WEIGHT_Q4_0) SD_INTERLEAVED_TYPE(BITS, SD_WEIGHT_Q4_1)                               \
    SD_INTERLEAVED_TYPE(BITS, SD_WEIGHT_Q8_0)
SD_INTERLEAVED_WIDTH(16)
SD_INTERLEAVED_WIDTH(8)

/* Groups [group_begin, group_end) against m activation rows, 4 at a time, with the group kernel KERNEL for rows of
 * quants Q. */
#define SD_INTERLEAVED_PRODUCT(NAME, KERNEL, Q)                                                                      \
    void NAME(sd_weight_type type, const void *packed, int64_t blocks, int64_t group_begin, int64_t group_end,      \
              const Q *qs, const float *d, const int32_t *sums, int64_t m, float *y, int64_t y_stride) {            \
        typedef void (*group_fn)(const uint8_t *, int64_t, const void *, const float *, const int32_t *, float *,   \
                                 int64_t);                                                                            \
        static const group_fn table[3][4] = {                                                                         \
            {KERNEL##_SD_WEIGHT_Q4_0_1, KERNEL##_SD_WEIGHT_Q4_0_2, KERNEL##_SD_WEIGHT_Q4_0_3,                          \
             KERNEL##_SD_WEIGHT_Q4_0_4},                                                                              \
            {KERNEL##_SD_WEIGHT_Q4_1_1, KERNEL##_SD_WEIGHT_Q4_1_2, KERNEL##_SD_WEIGHT_Q4_1_3,                          \
             KERNEL##_SD_WEIGHT_Q4_1_4},                                                                              \
            {KERNEL##_SD_WEIGHT_Q8_0_1, KERNEL##_SD_WEIGHT_Q8_0_2, KERNEL##_SD_WEIGHT_Q8_0_3,                          \
             KERNEL##_SD_WEIGHT_Q8_0_4},                                                                              \
        };                                                                                                            \
        if ((unsigned)type > SD_WEIGHT_Q8_0 || m < 1) return;                                                         \
        const int64_t group_bytes = 16 * sd_block_bytes(type) * blocks;                                               \
        for (int64_t g = group_begin; g < group_end; g++) {                                                           \
            const uint8_t *group = (const uint8_t *)packed + g * group_bytes;                                         \
            for (int64_t i = 0; i < m; i += SD_INTERLEAVED_ROWS) {                                                    \
                const int64_t rows = m - i < SD_INTERLEAVED_ROWS ? m - i : SD_INTERLEAVED_ROWS;                       \
                table[type][rows - 1](group, blocks, qs + i * blocks * 32, d + i * blocks, sums + i * blocks,         \
                                      y + i * y_stride + g * 16, y_stride);                                           \
            }                                                                                                         \
        }                                                                                                             \
    }
SD_INTERLEAVED_PRODUCT(sd_int16_interleaved_product, sd_interleaved16, int16_t)
SD_INTERLEAVED_PRODUCT(sd_int8_interleaved_product, sd_interleaved8, int8_t)

#else /* not x86-64: callers keep the row kernels' path (sd_integer_dots_available is false). */

void sd_int16_interleaved_product(sd_weight_type type, const void *packed, int64_t blocks, int64_t group_begin,
                                  int64_t group_end, const int16_t *qs, const float *d, const int32_t *sums, int64_t m,
                                  float *y, int64_t y_stride) {
    (void)type; (void)packed; (void)blocks; (void)group_begin; (void)group_end; (void)qs; (void)d; (void)sums;
    (void)m; (void)y; (void)y_stride;
}
void sd_int8_interleaved_product(sd_weight_type type, const void *packed, int64_t blocks, int64_t group_begin,
                                 int64_t group_end, const int8_t *qs, const float *d, const int32_t *sums, int64_t m,
                                 float *y, int64_t y_stride) {
    (void)type; (void)packed; (void)blocks; (void)group_begin; (void)group_end; (void)qs; (void)d; (void)sums;
    (void)m; (void)y; (void)y_stride;
}
#endif
