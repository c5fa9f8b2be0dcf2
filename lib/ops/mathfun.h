/*
 * Internal: branch-free float helpers that GCC's auto-vectoriser turns into SIMD code
 * when they are called inside a loop over a float array (libm's expf is a call the
 * vectoriser cannot inline). Swish runs over every activation of the network, so its
 * exp must be a few instructions per element.
 */
#ifndef EFFDET_MATHFUN_H
#define EFFDET_MATHFUN_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "ops/ops.h"

#if defined(__SSE2__)
#include <immintrin.h>
#endif

/* A SIMD vector of floats in GCC's generic vector extension: 16 lanes with AVX-512, 8 with AVX,
 * 4 (SSE) otherwise. The
 * hand-blocked kernels (dwconv, activations) use it where register blocking matters more
 * than what the auto-vectoriser finds on its own. */
#if defined(__AVX512F__)
#define VLEN 16
#elif defined(__AVX__)
#define VLEN 8
#else
#define VLEN 4
#endif
typedef float vfloat __attribute__((vector_size(VLEN * sizeof(float))));

static inline vfloat vload(const float *p) {
    vfloat v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline void vstore(float *p, vfloat v) {
    memcpy(p, &v, sizeof v);
}

/* a * b + c as one fused instruction where there is one (-std=c11 never contracts). */
static inline vfloat vmadd(vfloat a, vfloat b, vfloat c) {
#if defined(__AVX512F__)
    return _mm512_fmadd_ps(a, b, c);
#elif defined(__FMA__)
    return _mm256_fmadd_ps(a, b, c);
#else
    return a * b + c;
#endif
}

/* a * b + c; one rounding where the target has FMA (-std=c11 turns off contraction). */
#ifdef __FMA__
#define MADD(a, b, c) fmaf((a), (b), (c))
#else
#define MADD(a, b, c) ((a) * (b) + (c))
#endif

static inline float bits_as_float(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static inline uint32_t float_as_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

/*
 * e^x to ~1-2 ulp (Cephes expf: x = n ln2 + r, |r| <= ln2/2, degree-6 polynomial for
 * e^r, 2^n built in the exponent bits). Saturates like libm: +inf above ln(FLT_MAX),
 * 0 below the normal range, so 1 / (1 + e^-x) stays finite and exact at the extremes.
 */
static inline float fast_expf(float x) {
    const float ln_flt_max = 88.72283f, ln_min_normal = -87.33654f;
    /* Below ~88.376, n = round(x / ln2) <= 127 keeps 2^n a normal float. */
    const float hi = 88.37626f;
    float xc = x > hi ? hi : x;
    xc = xc < ln_min_normal ? ln_min_normal : xc;

    /* Round x / ln2 to the nearest integer with the 1.5 * 2^23 trick: the integer
     * lands in the low mantissa bits of t. */
    const float round_magic = 12582912.0f;
    float t = MADD(xc, 1.44269504088896341f, round_magic);
    int32_t n_int = (int32_t)(float_as_bits(t) - float_as_bits(round_magic));
    float n = t - round_magic;

    /* r = x - n ln2, with ln2 split in two so n * ln2_hi is exact. */
    float r = MADD(n, -0.693359375f, xc);
    r = MADD(n, 2.12194440e-4f, r);

    float p = 1.9875691500e-4f;
    p = MADD(p, r, 1.3981999507e-3f);
    p = MADD(p, r, 8.3334519073e-3f);
    p = MADD(p, r, 4.1665795894e-2f);
    p = MADD(p, r, 1.6666665459e-1f);
    p = MADD(p, r, 5.0000001201e-1f);
    float y = MADD(p, r * r, r) + 1.0f;

    y *= bits_as_float((uint32_t)(n_int + 127) << 23);
    y = x > ln_flt_max ? INFINITY : y;
    y = x < ln_min_normal ? 0.0f : y;
    return y;
}

/* 1 / (1 + e^-x): exactly 0 for x < -88.7 (e^-x = inf), exactly 1 for x > 87.3. */
static inline float fast_sigmoidf(float x) {
    return 1.0f / (1.0f + fast_expf(-x));
}

/* x * sigmoid(x), written as x / (1 + e^-x) like PyTorch's SiLU: -0 for very negative
 * x, x itself for large x. */
static inline float fast_swishf(float x) {
    return x / (1.0f + fast_expf(-x));
}

#if defined(__AVX512F__) || defined(__AVX__) || defined(__SSE2__)
#define HAVE_VEXP 1
typedef int32_t vint __attribute__((vector_size(VLEN * sizeof(int32_t))));

static inline vfloat vsplat(float x) {
    return (vfloat){0} + x;
}

static inline vfloat vmin(vfloat a, vfloat b) {
#if defined(__AVX512F__)
    return _mm512_min_ps(a, b);
#elif defined(__AVX__)
    return _mm256_min_ps(a, b);
#else
    return _mm_min_ps(a, b);
#endif
}

static inline vfloat vmax(vfloat a, vfloat b) {
#if defined(__AVX512F__)
    return _mm512_max_ps(a, b);
#elif defined(__AVX__)
    return _mm256_max_ps(a, b);
#else
    return _mm_max_ps(a, b);
#endif
}

/* fast_expf on a vector, minus the saturation to exactly +inf / 0: inputs are clamped
 * to [-87.34, 88.38], so e^x stays finite and normal (1 / (1 + e^-x) then gives ~4e-39
 * instead of 0 at the far negative end: both are 0 at the network's tolerance). Min/max
 * instead of compare-and-blend keeps it ~20 instructions per vector. */
static inline vfloat vexp(vfloat x) {
    vfloat xc = vmax(vmin(x, vsplat(88.37626f)), vsplat(-87.33654f));
#if defined(__AVX512F__)
    /* The same reduction and polynomial; vrndscaleps rounds and vscalefps multiplies by
     * 2^n, four instructions fewer than the integer route below. */
    vfloat n = _mm512_roundscale_ps(xc * 1.44269504088896341f, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
#else
    const vfloat round_magic = vsplat(12582912.0f);
    vfloat t = vmadd(xc, vsplat(1.44269504088896341f), round_magic);
    vint n_int = (vint)t - (vint)round_magic;
    vfloat n = t - round_magic;
#endif
    vfloat r = vmadd(n, vsplat(-0.693359375f), xc);
    r = vmadd(n, vsplat(2.12194440e-4f), r);
    vfloat p = vmadd(vsplat(1.9875691500e-4f), r, vsplat(1.3981999507e-3f));
    p = vmadd(p, r, vsplat(8.3334519073e-3f));
    p = vmadd(p, r, vsplat(4.1665795894e-2f));
    p = vmadd(p, r, vsplat(1.6666665459e-1f));
    p = vmadd(p, r, vsplat(5.0000001201e-1f));
    vfloat y = vmadd(p, r * r, r) + 1.0f;
#if defined(__AVX512F__)
    return _mm512_scalef_ps(y, n);
#else
    return y * (vfloat)((n_int + 127) << 23);
#endif
}

/* A reciprocal estimate + Newton step instead of the divide measured slower here
 * (Zen 5: 3.3 vs 2.5 ns per 16 lanes): the divide is not the bottleneck. */
static inline vfloat vswish(vfloat v) {
    return v / (1.0f + vexp(-v));
}

static inline vfloat vsigmoid(vfloat v) {
    return 1.0f / (1.0f + vexp(-v));
}
#endif

/* act(x) on one value, for the channel remainders the vector paths leave over. */
static inline float act_scalar(float x, act_kind act) {
    switch (act) {
    case ACT_NONE: return x;
    case ACT_SWISH: return fast_swishf(x);
    case ACT_SIGMOID: return fast_sigmoidf(x);
    }
    return x;
}

/* act(v) on a vector still in registers, so a kernel can activate what it computed
 * before the store instead of reading its output back. */
static inline vfloat vact(vfloat v, act_kind act) {
#ifdef HAVE_VEXP
    switch (act) {
    case ACT_NONE: return v;
    case ACT_SWISH: return vswish(v);
    case ACT_SIGMOID: return vsigmoid(v);
    }
    return v;
#else
    if (act != ACT_NONE)
        for (int i = 0; i < VLEN; i++) v[i] = act_scalar(v[i], act);
    return v;
#endif
}

/* x[i] = act(x[i]) over a span that the calling kernel just wrote (still in L1/L2):
 * whole vectors through vexp, the remainder through the scalar fast_expf. */
static inline void activate_span(float *restrict x, size_t n, act_kind act) {
    size_t i = 0;
    switch (act) {
    case ACT_NONE: break;
    case ACT_SWISH:
#ifdef HAVE_VEXP
        for (; i + VLEN <= n; i += VLEN) {
            vfloat v = vload(x + i);
            vstore(x + i, vswish(v));
        }
#endif
        for (; i < n; i++) x[i] = fast_swishf(x[i]);
        break;
    case ACT_SIGMOID:
#ifdef HAVE_VEXP
        for (; i + VLEN <= n; i += VLEN) {
            vfloat v = vload(x + i);
            vstore(x + i, vsigmoid(v));
        }
#endif
        for (; i < n; i++) x[i] = fast_sigmoidf(x[i]);
        break;
    }
}

#endif
