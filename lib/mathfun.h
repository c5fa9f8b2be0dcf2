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

#include "ops.h"

/* a * b + c; one rounding where the target has FMA (-std=c11 turns off contraction). */
#ifdef __FMA__
#define MADD(a, b, c) fmaf((a), (b), (c))
#else
#define MADD(a, b, c) ((a) * (b) + (c))
/* x[i] = act(x[i]) over a span that the calling kernel just wrote (still in L1/L2).
 * One loop per activation so each vectorises without a per-element switch. */
static inline void activate_span(float *restrict x, size_t n, act_kind act) {
    switch (act) {
    case ACT_NONE: break;
    case ACT_SWISH:
        for (size_t i = 0; i < n; i++) x[i] = fast_swishf(x[i]);
        break;
    case ACT_SIGMOID:
        for (size_t i = 0; i < n; i++) x[i] = fast_sigmoidf(x[i]);
        break;
    }
}

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

/* x[i] = act(x[i]) over a span that the calling kernel just wrote (still in L1/L2).
 * One loop per activation so each vectorises without a per-element switch. */
static inline void activate_span(float *restrict x, size_t n, act_kind act) {
    switch (act) {
    case ACT_NONE: break;
    case ACT_SWISH:
        for (size_t i = 0; i < n; i++) x[i] = fast_swishf(x[i]);
        break;
    case ACT_SIGMOID:
        for (size_t i = 0; i < n; i++) x[i] = fast_sigmoidf(x[i]);
        break;
    }
}

#endif
