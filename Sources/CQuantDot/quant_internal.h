/* Helpers shared by the integer kernels' files (quant_dot.c, quant_gemm.c); not part of the module's interface. */
#ifndef SWIFTDRAFT_QUANT_INTERNAL_H
#define SWIFTDRAFT_QUANT_INTERNAL_H
#if defined(__x86_64__)
#include <immintrin.h>
#include <string.h>

#include "quant_dot.h"

/* Everything that executes AVX-512 carries this attribute, so the files build for baseline x86-64. */
#define SD_VNNI __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")))
#define SD_INLINE static inline __attribute__((always_inline)) SD_VNNI

/** Bytes per ggml block of 32 weights. */
static inline int64_t sd_block_bytes(sd_weight_type type) {
    return type == SD_WEIGHT_Q4_0 ? 18 : type == SD_WEIGHT_Q4_1 ? 20 : 34;
}

SD_INLINE float sd_half(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, sizeof h);
    return _cvtsh_ss(h);
}

/* A 4-bit block's 32 quants as bytes in element order (element j in the low nibble of byte j, element j + 16 in the
 * high one). */
SD_INLINE __m256i sd_nibbles(const uint8_t *quants) {
    const __m128i q = _mm_loadu_si128((const __m128i *)quants);
    return _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(q, 4), q), _mm256_set1_epi8(0x0F));
}

/* A block's 32 weights as signed 16-bit integers, q - 8 for Q4_0 (so that no offset needs correcting), q for Q4_1
 * (its minimum enters separately) and Q8_0. */
SD_INLINE __m512i sd_widen16(sd_weight_type type, const uint8_t *block) {
    if (type == SD_WEIGHT_Q8_0) return _mm512_cvtepi8_epi16(_mm256_loadu_si256((const __m256i *)(block + 2)));
    const __m512i q = _mm512_cvtepu8_epi16(sd_nibbles(block + (type == SD_WEIGHT_Q4_1 ? 4 : 2)));
    return type == SD_WEIGHT_Q4_0 ? _mm512_sub_epi16(q, _mm512_set1_epi16(8)) : q;
}
#endif
#endif
