/*
 * Integer kernels for quantized weights times 8-bit activations (see quant_dot.h). Everything that executes AVX-512
 * carries the target attribute, so the file builds for baseline x86-64 and the library loads on any CPU; callers
 * check `sd_integer_dots_available` first.
 */
#include "quant_dot.h"
#include "quant_internal.h"

#if defined(__x86_64__)

bool sd_integer_dots_available(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni") &&
           __builtin_cpu_supports("fma");
}

SD_INLINE float sd_hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

SD_VNNI void sd_int8_quantize_row(const float *x, int64_t blocks, int8_t *qs, float *d, int32_t *sums) {
    const __m256 magnitude = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));
    for (int64_t b = 0; b < blocks; b++) {
        const float *xb = x + b * 32;
        __m256 v[4];
        __m256 amax = _mm256_setzero_ps();
        for (int k = 0; k < 4; k++) {
            v[k] = _mm256_loadu_ps(xb + 8 * k);
            amax = _mm256_max_ps(amax, _mm256_and_ps(v[k], magnitude));
        }
        __m128 m = _mm_max_ps(_mm256_castps256_ps128(amax), _mm256_extractf128_ps(amax, 1));
        m = _mm_max_ps(m, _mm_movehl_ps(m, m));
        m = _mm_max_ss(m, _mm_movehdup_ps(m));
        const float top = _mm_cvtss_f32(m);
        /* x * (127 / max) rounded to nearest-even (the default MXCSR mode) never leaves [-127, 127]. */
        const __m256 inverse = _mm256_set1_ps(top > 0 ? 127.0f / top : 0.0f);
        d[b] = top / 127.0f;
        __m256i total = _mm256_setzero_si256();
        for (int k = 0; k < 4; k++) {
            const __m256i q = _mm256_cvtps_epi32(_mm256_mul_ps(v[k], inverse));
            total = _mm256_add_epi32(total, q);
            _mm_storel_epi64((__m128i *)(qs + b * 32 + 8 * k), _mm256_cvtepi32_epi8(q));
        }
        __m128i t = _mm_add_epi32(_mm256_castsi256_si128(total), _mm256_extracti128_si256(total, 1));
        t = _mm_add_epi32(t, _mm_shuffle_epi32(t, 0x4E));
        t = _mm_add_epi32(t, _mm_shuffle_epi32(t, 0xB1));
        sums[b] = _mm_cvtsi128_si32(t);
    }
}

/*
 * Q4_1's minimum term, the sum over blocks of m_w * d_x * sum(q_x), for R rows and M activation rows: a second short
 * pass over rows just read (in L1), so that the main loop keeps every register for its accumulators (with 16 running
 * minimums beside them the 4 x 4 kernels spilled to the stack).
 */
SD_INLINE void sd_q4_1_minimums(int R, int M, const uint8_t *w, int64_t row_bytes, int64_t blocks, const float *d,
                                const int32_t *sums, float minimums[4][4]) {
    for (int r = 0; r < R; r++) {
        for (int i = 0; i < M; i++) minimums[r][i] = 0;
    }
    for (int64_t b = 0; b < blocks; b++) {
        float sx[4];
        for (int i = 0; i < M; i++) sx[i] = d[i * blocks + b] * (float)sums[i * blocks + b];
        for (int r = 0; r < R; r++) {
            const float mw = sd_half(w + r * row_bytes + b * 20 + 2);
            for (int i = 0; i < M; i++) minimums[r][i] += mw * sx[i];
        }
    }
}

/*
 * R consecutive weight rows (1 or 4) against M activation rows (1...4), every block: `vpdpbusd` multiplies unsigned
 * weight bytes by signed activation bytes, so the weights enter as unsigned (Q4 nibbles as they are, Q8_0 bytes
 * offset by 128) and the offset comes back exactly, as an integer in lane 0 of the accumulator the dot starts from:
 * -8 * sum(q) for Q4_0, -128 * sum(q) for Q8_0. Q4_1's minimum m adds m * d_x * sum(q) in float.
 */
SD_INLINE void sd_rows(sd_weight_type type, int R, int M, const uint8_t *w, int64_t row_bytes, int64_t blocks,
                       const int8_t *qs, const float *d, const int32_t *sums, float *y, int64_t y_stride) {
    const int64_t block_bytes = sd_block_bytes(type);
    const __m256i sign_flip = _mm256_set1_epi8((char)0x80);
    __m256 acc[4][4];
    for (int r = 0; r < R; r++) {
        for (int i = 0; i < M; i++) acc[r][i] = _mm256_setzero_ps();
    }
    for (int64_t b = 0; b < blocks; b++) {
        __m256i xv[4], start[4];
        float dx[4];
        for (int i = 0; i < M; i++) {
            xv[i] = _mm256_loadu_si256((const __m256i *)(qs + (i * blocks + b) * 32));
            dx[i] = d[i * blocks + b];
            const int32_t s = sums[i * blocks + b];
            start[i] = type == SD_WEIGHT_Q4_0   ? _mm256_setr_epi32(-8 * s, 0, 0, 0, 0, 0, 0, 0)
                       : type == SD_WEIGHT_Q8_0 ? _mm256_setr_epi32(-128 * s, 0, 0, 0, 0, 0, 0, 0)
                                              : _mm256_setzero_si256();
        }
        for (int r = 0; r < R; r++) {
            const uint8_t *p = w + r * row_bytes + b * block_bytes;
            _mm_prefetch((const char *)(p + SD_PREFETCH_ROWS * row_bytes), _MM_HINT_T0);
            const float dw = sd_half(p);
            __m256i wv;
            if (type == SD_WEIGHT_Q8_0) {
                wv = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(p + 2)), sign_flip);
            } else {
                wv = sd_nibbles(p + (type == SD_WEIGHT_Q4_1 ? 4 : 2));
            }
            for (int i = 0; i < M; i++) {
                const __m256i dot = _mm256_dpbusd_epi32(start[i], wv, xv[i]);
                acc[r][i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), _mm256_set1_ps(dw * dx[i]), acc[r][i]);
            }
        }
    }
    float minimums[4][4] = {{0}};
    if (type == SD_WEIGHT_Q4_1) sd_q4_1_minimums(R, M, w, row_bytes, blocks, d, sums, minimums);
    for (int r = 0; r < R; r++) {
        for (int i = 0; i < M; i++) y[i * y_stride + r] = sd_hsum(acc[r][i]) + minimums[r][i];
    }
}


SD_VNNI void sd_int16_quantize_row(const float *x, int64_t blocks, int16_t *qs, float *d, int32_t *sums) {
    for (int64_t b = 0; b < blocks; b++) {
        const __m512 v0 = _mm512_loadu_ps(x + b * 32), v1 = _mm512_loadu_ps(x + b * 32 + 16);
        const float top = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v0), _mm512_abs_ps(v1)));
        const __m512 inverse = _mm512_set1_ps(top > 0 ? 32767.0f / top : 0.0f);
        d[b] = top / 32767.0f;
        const __m512i q0 = _mm512_cvtps_epi32(_mm512_mul_ps(v0, inverse));
        const __m512i q1 = _mm512_cvtps_epi32(_mm512_mul_ps(v1, inverse));
        _mm256_storeu_si256((__m256i *)(qs + b * 32), _mm512_cvtepi32_epi16(q0));
        _mm256_storeu_si256((__m256i *)(qs + b * 32 + 16), _mm512_cvtepi32_epi16(q1));
        sums[b] = _mm512_reduce_add_epi32(_mm512_add_epi32(q0, q1));
    }
}

/*
 * As `sd_rows`, with 16-bit activations: the block's 32 weights widen to signed 16 bits (Q4_0's q - 8 included) and
 * `vpdpwssd` (signed 16 x 16, pairs summed into 32 bits) takes the whole block in one 512-bit step, no offsets to
 * correct. Every partial sum stays below 2^24, so its conversion to float is exact.
 */
SD_INLINE void sd_rows16(sd_weight_type type, int R, int M, const uint8_t *w, int64_t row_bytes, int64_t blocks,
                         const int16_t *qs, const float *d, const int32_t *sums, float *y, int64_t y_stride) {
    const int64_t block_bytes = sd_block_bytes(type);
    __m512 acc[4][4];
    for (int r = 0; r < R; r++) {
        for (int i = 0; i < M; i++) acc[r][i] = _mm512_setzero_ps();
    }
    for (int64_t b = 0; b < blocks; b++) {
        __m512i xv[4];
        float dx[4];
        for (int i = 0; i < M; i++) {
            xv[i] = _mm512_loadu_si512((const void *)(qs + (i * blocks + b) * 32));
            dx[i] = d[i * blocks + b];
        }
        for (int r = 0; r < R; r++) {
            const uint8_t *p = w + r * row_bytes + b * block_bytes;
            _mm_prefetch((const char *)(p + SD_PREFETCH_ROWS * row_bytes), _MM_HINT_T0);
            const float dw = sd_half(p);
            const __m512i wv = sd_widen16(type, p);
            for (int i = 0; i < M; i++) {
                const __m512i dot = _mm512_dpwssd_epi32(_mm512_setzero_si512(), wv, xv[i]);
                acc[r][i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), _mm512_set1_ps(dw * dx[i]), acc[r][i]);
            }
        }
    }
    float minimums[4][4] = {{0}};
    if (type == SD_WEIGHT_Q4_1) sd_q4_1_minimums(R, M, w, row_bytes, blocks, d, sums, minimums);
    for (int r = 0; r < R; r++) {
        for (int i = 0; i < M; i++) y[i * y_stride + r] = _mm512_reduce_add_ps(acc[r][i]) + minimums[r][i];
    }
}

/* One function per (type, M) for a row kernel ROWS on activations of type Q, unrolled for groups of 4 rows and for a
 * single row. */
#define SD_PRODUCT(ROWS, Q, T, M)                                                                                     \
    SD_VNNI __attribute__((noinline)) static void ROWS##_##T##_##M(                                                   \
        const uint8_t *w, int64_t row_bytes, int64_t blocks, int64_t r0, int64_t r1, const Q *qs, const float *d,    \
        const int32_t *sums, float *y, int64_t y_stride) {                                                            \
        int64_t r = r0;                                                                                               \
        for (; r + 4 <= r1; r += 4) ROWS(T, 4, M, w + r * row_bytes, row_bytes, blocks, qs, d, sums, y + r, y_stride); \
        for (; r < r1; r++) ROWS(T, 1, M, w + r * row_bytes, row_bytes, blocks, qs, d, sums, y + r, y_stride);       \
    }
#define SD_PRODUCTS(ROWS, Q, T) SD_PRODUCT(ROWS, Q, T, 1) SD_PRODUCT(ROWS, Q, T, 2) SD_PRODUCT(ROWS, Q, T, 3) SD_PRODUCT(ROWS, Q, T, 4)

/* A public product (quant_dot.h): the 3 x 4 specialisations of ROWS, chosen by weight type and m. */
#define SD_PUBLIC_PRODUCT(NAME, ROWS, Q)                                                                              \
    SD_PRODUCTS(ROWS, Q, SD_WEIGHT_Q4_0)                                                                                \
    SD_PRODUCTS(ROWS, Q, SD_WEIGHT_Q4_1)                                                                                \
    SD_PRODUCTS(ROWS, Q, SD_WEIGHT_Q8_0)                                                                                \
    void NAME(sd_weight_type type, const void *w, int64_t row_bytes, int64_t blocks, int64_t row_begin,          \
              int64_t row_end, const Q *qs, const float *d, const int32_t *sums, int m, float *y, int64_t y_stride) { \
        typedef void (*product_fn)(const uint8_t *, int64_t, int64_t, int64_t, int64_t, const Q *, const float *,    \
                                   const int32_t *, float *, int64_t);                                                \
        static const product_fn table[3][4] = {                                                                       \
            {ROWS##_SD_WEIGHT_Q4_0_1, ROWS##_SD_WEIGHT_Q4_0_2, ROWS##_SD_WEIGHT_Q4_0_3, ROWS##_SD_WEIGHT_Q4_0_4},             \
            {ROWS##_SD_WEIGHT_Q4_1_1, ROWS##_SD_WEIGHT_Q4_1_2, ROWS##_SD_WEIGHT_Q4_1_3, ROWS##_SD_WEIGHT_Q4_1_4},             \
            {ROWS##_SD_WEIGHT_Q8_0_1, ROWS##_SD_WEIGHT_Q8_0_2, ROWS##_SD_WEIGHT_Q8_0_3, ROWS##_SD_WEIGHT_Q8_0_4},             \
        };                                                                                                            \
        if ((unsigned)type > SD_WEIGHT_Q8_0 || m < 1 || m > 4) return;                                                  \
        table[type][m - 1]((const uint8_t *)w, row_bytes, blocks, row_begin, row_end, qs, d, sums, y, y_stride);     \
    }

SD_PUBLIC_PRODUCT(sd_int8_product, sd_rows, int8_t)
SD_PUBLIC_PRODUCT(sd_int16_product, sd_rows16, int16_t)

#else /* not x86-64: no integer kernels; callers keep the exact path. */

bool sd_integer_dots_available(void) { return false; }
void sd_int8_quantize_row(const float *x, int64_t blocks, int8_t *qs, float *d, int32_t *sums) {
    (void)x; (void)blocks; (void)qs; (void)d; (void)sums;
}
void sd_int8_product(sd_weight_type type, const void *w, int64_t row_bytes, int64_t blocks, int64_t row_begin,
                     int64_t row_end, const int8_t *qs, const float *d, const int32_t *sums, int m, float *y,
                     int64_t y_stride) {
    (void)type; (void)w; (void)row_bytes; (void)blocks; (void)row_begin; (void)row_end; (void)qs; (void)d;
    (void)sums; (void)m; (void)y; (void)y_stride;
}
void sd_int16_quantize_row(const float *x, int64_t blocks, int16_t *qs, float *d, int32_t *sums) {
    (void)x; (void)blocks; (void)qs; (void)d; (void)sums;
}
void sd_int16_product(sd_weight_type type, const void *w, int64_t row_bytes, int64_t blocks, int64_t row_begin,
                      int64_t row_end, const int16_t *qs, const float *d, const int32_t *sums, int m, float *y,
                      int64_t y_stride) {
    (void)type; (void)w; (void)row_bytes; (void)blocks; (void)row_begin; (void)row_end; (void)qs; (void)d;
    (void)sums; (void)m; (void)y; (void)y_stride;
}
#endif
