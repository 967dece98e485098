/*
 * The stub's vector helpers, shared by its kernel files: eight-float lanes (the CPU backend's `SIMD8<Float>`), the
 * CPU backend's exp polynomial, row max, softmax pieces and dot product, so every stub kernel rounds as the CPU
 * backend does. Header-only and always inlined: each kernel file gets its own copy, with no calls between files.
 */
#ifndef SWIFTDRAFT_HPU_STUB_VECTOR_H
#define SWIFTDRAFT_HPU_STUB_VECTOR_H

#include <math.h>
#include <stdint.h>
#include <string.h>

/* The vector helpers below are always inlined and never cross a call boundary, so the AVX-vs-SSE calling
 * convention that -Wpsabi warns about never applies. */
#pragma GCC diagnostic ignored "-Wpsabi"
#define VECTOR_INLINE static inline __attribute__((always_inline))

/* Eight floats: the CPU backend's `SIMD8<Float>`. Loads and stores go through memcpy because tensors are only
 * 4-byte aligned; clang turns them into unaligned vector moves. */
typedef float v8f __attribute__((vector_size(32)));
typedef int32_t v8i __attribute__((vector_size(32)));

VECTOR_INLINE v8f load8(const float* p) {
    v8f v;
    memcpy(&v, p, sizeof v);
    return v;
}

VECTOR_INLINE void store8(float* p, v8f v) { memcpy(p, &v, sizeof v); }

VECTOR_INLINE v8f splat8(float x) { return (v8f){x, x, x, x, x, x, x, x}; }

/* Lane-wise max, min and sqrt: clang's elementwise builtins where present (SwiftPM builds with clang), else a
 * lane loop, so the file still compiles with GCC for sanitizer runs. */
#ifdef __has_builtin
#define HPU_HAS_BUILTIN(builtin) __has_builtin(builtin)
#else
#define HPU_HAS_BUILTIN(builtin) 0
#endif
#if HPU_HAS_BUILTIN(__builtin_elementwise_max) && HPU_HAS_BUILTIN(__builtin_elementwise_sqrt)
#define MAX8(a, b) __builtin_elementwise_max((a), (b))
#define MIN8(a, b) __builtin_elementwise_min((a), (b))
#define SQRT8(a) __builtin_elementwise_sqrt((a))
#else
VECTOR_INLINE v8f max8_lanes(v8f a, v8f b) {
    for (int i = 0; i < 8; i++) a[i] = a[i] > b[i] ? a[i] : b[i];
    return a;
}
VECTOR_INLINE v8f min8_lanes(v8f a, v8f b) {
    for (int i = 0; i < 8; i++) a[i] = a[i] < b[i] ? a[i] : b[i];
    return a;
}
VECTOR_INLINE v8f sqrt8_lanes(v8f a) {
    for (int i = 0; i < 8; i++) a[i] = sqrtf(a[i]);
    return a;
}
#define MAX8(a, b) max8_lanes((a), (b))
#define MIN8(a, b) min8_lanes((a), (b))
#define SQRT8(a) sqrt8_lanes((a))
#endif

VECTOR_INLINE float sum8(v8f v) {
    return ((v[0] + v[4]) + (v[2] + v[6])) + ((v[1] + v[5]) + (v[3] + v[7]));
}

/* Cephes' expf range reduction and minimax polynomial (max relative error about 2 ulp over the clamped range):
 * the same as the CPU backend's `vexp`, so softmaxes agree with it to rounding. */
VECTOR_INLINE v8f exp8(v8f input) {
    v8f x = MIN8(MAX8(input, splat8(-87.33f)), splat8(88.72f));
    /* Round to nearest even by the 1.5 * 2^23 trick: exact for |value| < 2^22, which the clamp guarantees. */
    v8f n = (x * 1.44269504f + 12582912.0f) - 12582912.0f;
    v8f r = x - n * 0.693359375f;
    r = r + n * 2.12194440e-4f;
    v8f p = splat8(1.9875691500e-4f);
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * (r * r) + r + 1.0f;
    v8i bits = (__builtin_convertvector(n, v8i) + 127) << 23;
    return p * (v8f)bits;
}

/* Scalar tails use the same polynomial, so a row's result does not depend on where the vector body ends. */
VECTOR_INLINE float fast_exp(float x) { return exp8(splat8(x))[0]; }

VECTOR_INLINE v8f sigmoid8(v8f x) { return 1.0f / (1.0f + exp8(-x)); }

/* `row[j] = exp(row[j] - shift)` for j < length; returns the sum. */
VECTOR_INLINE float exp_in_place(float* row, int64_t length, float shift) {
    v8f acc = splat8(0.0f);
    int64_t j = 0;
    for (; j + 8 <= length; j += 8) {
        v8f e = exp8(load8(row + j) - shift);
        store8(row + j, e);
        acc += e;
    }
    float tail = 0.0f;
    for (; j < length; j++) {
        float e = fast_exp(row[j] - shift);
        row[j] = e;
        tail += e;
    }
    return sum8(acc) + tail;
}

VECTOR_INLINE float max_of(const float* row, int64_t length) {
    v8f lanes = splat8(-INFINITY);
    int64_t j = 0;
    for (; j + 8 <= length; j += 8) lanes = MAX8(lanes, load8(row + j));
    float maximum = -INFINITY;
    for (int i = 0; i < 8; i++) maximum = lanes[i] > maximum ? lanes[i] : maximum;
    for (; j < length; j++) maximum = row[j] > maximum ? row[j] : maximum;
    return maximum;
}

VECTOR_INLINE void scale_in_place(float* row, int64_t length, float factor) {
    for (int64_t j = 0; j < length; j++) row[j] *= factor;
}

VECTOR_INLINE float fast_sigmoid(float x) { return 1.0f / (1.0f + fast_exp(-x)); }

/* sum(a[i] * b[i]) in 8 float lanes plus a tail, the CPU backend's `dot`. */
VECTOR_INLINE float dot8(const float* a, const float* b, int64_t n) {
    v8f acc = splat8(0.0f);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) acc += load8(a + i) * load8(b + i);
    float tail = 0.0f;
    for (; i < n; i++) tail += a[i] * b[i];
    return sum8(acc) + tail;
}

#endif /* SWIFTDRAFT_HPU_STUB_VECTOR_H */
