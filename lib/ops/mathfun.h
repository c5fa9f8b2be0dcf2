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

/* The column tails of the register-blocked kernels (a cout remainder). n (1..VLEN) floats from p into the low
 * lanes, zeros above. */
static inline vfloat load_part(const float *p, int n) {
#if defined(__AVX512F__)
    return _mm512_maskz_loadu_ps((__mmask16)((1u << n) - 1u), p);
#elif defined(__AVX2__)
    __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_maskload_ps(p, _mm256_cmpgt_epi32(_mm256_set1_epi32(n), lane));
#else
    float buf[VLEN] = {0};
    memcpy(buf, p, (size_t)n * sizeof *p);
    return vload(buf);
#endif
}

/* The low n lanes of v to p; p[n..VLEN) untouched (they are the next row). */
static inline void store_part(float *p, vfloat v, int n) {
#if defined(__AVX512F__)
    _mm512_mask_storeu_ps(p, (__mmask16)((1u << n) - 1u), v);
#else
    float buf[VLEN];
    vstore(buf, v);
    memcpy(p, buf, (size_t)n * sizeof *p);
#endif
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

#if defined(__AVX512F__)
/*
 * e^x as 2^(n/16) * e^r with n = round(16 x / ln2): 2^(j/16) for j = n mod 16 comes from
 * a 16-entry table (one vpermps at this level: the table fills one zmm register) and
 * 2^floor(n/16) from the exponent, so |r| <= ln2/32 and a degree-3 polynomial is
 * already below 1e-8 (r^4/24). n / 16 is rounded directly, with 1.5 * 2^19 (whose ulp is
 * 1/16) in place of the usual 1.5 * 2^23, so vscalefps takes it as it is and the low 4
 * mantissa bits still index the table. r = x - m ln2 is one FMA with ln2 rounded: its
 * error is |m| * 1.9e-9 <= 2.4e-7 (m = x / ln2 <= 128), so e^x stays within ~4 ulp at
 * the ends of the range and ~1 ulp for |x| < 10. The clamp is one vrangeps (the
 * smaller magnitude of x and 88.38, with x's sign). In all, 10 instructions where the
 * Cephes route below needs 19: swish sits next to the FMA-bound 1x1 and depthwise
 * kernels, and there every instruction it saves shows (1024 x 16 -> 96 + swish in cache:
 * 28.4-29.8 -> 26.3 us on Zen 5). The scalar form below runs
 * the same operations in the same order, so a channel remainder gets the bits a vector
 * lane would.
 */
#define EXP_TABLE 1
static const float exp2_sixteenths[16] __attribute__((aligned(64))) = {
    1.0f,        1.04427378f, 1.09050773f, 1.13878863f, 1.18920712f, 1.24185781f, 1.29683955f, 1.35425555f,
    1.41421356f, 1.47682615f, 1.54221083f, 1.61049033f, 1.68179283f, 1.75625216f, 1.83400809f, 1.91520656f};
#define EXP_MAGIC 786432.0f            /* 1.5 * 2^19: t = m + this holds m to 1/16 */
#define EXP_LOG2E 1.44269504088896341f /* 1 / ln2 */
#define EXP_LN2 0.693147180559945309f
#endif

/* Clamp bounds of the reduction: above ~88.376, 2^floor(m) would pass 2^127. The table
 * route clamps symmetrically (one vrangeps): e^-88.376 is subnormal, flushed to 0 in
 * the forward pass (FTZ), and 1 / (1 + e^x) is the same either way. The Cephes route
 * stops at -87.3, inside the normal range. */
#define EXP_CLAMP_HI 88.37626f
#ifdef EXP_TABLE
#define EXP_CLAMP_LO (-EXP_CLAMP_HI)
#else
#define EXP_CLAMP_LO -87.3f
#endif

/*
 * e^x to ~1-2 ulp (the table route: ~1 ulp for |x| < 10, up to ~4 at the ends of the
 * range). Saturates like libm: +inf above ln(FLT_MAX), 0 below the normal
 * range, so 1 / (1 + e^-x) stays finite and exact at the extremes.
 */
static inline float fast_expf(float x) {
    const float ln_flt_max = 88.72283f, ln_min_normal = -87.33654f;
    float xc = x > EXP_CLAMP_HI ? EXP_CLAMP_HI : x;
    xc = xc < EXP_CLAMP_LO ? EXP_CLAMP_LO : xc;

    /* Round with the 1.5 * 2^k trick: the rounded value lands in the low mantissa bits
     * of t (to 1/16 here, to an integer in the Cephes route). */
#ifdef EXP_TABLE
    float t = MADD(xc, EXP_LOG2E, EXP_MAGIC);
    int32_t n_int = (int32_t)(float_as_bits(t) - float_as_bits(EXP_MAGIC)); /* 16 m */
    float m = t - EXP_MAGIC;                                                /* x / ln2 to 1/16 */
    float r = MADD(m, -EXP_LN2, xc);
    float p = MADD(1.0f / 6, r, 0.5f);
    p = MADD(p, r, 1.0f);
    float table = exp2_sixteenths[n_int & 15];
    float y = MADD(p * r, table, table);
    y *= bits_as_float((uint32_t)((n_int >> 4) + 127) << 23); /* >> floors: n_int < 0 too */
#else
    /* Cephes expf: x = n ln2 + r, |r| <= ln2/2, degree-7 polynomial for e^r. */
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
#endif
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
 * (EXP_CLAMP_*), so e^x stays finite (1 / (1 + e^-x) then gives ~1e-38 or a flushed
 * subnormal instead of 0 at the far negative end: all 0 at the network's tolerance).
 * A clamp instead of compare-and-blend keeps it short. */
static inline vfloat vexp(vfloat x) {
#ifdef EXP_TABLE
    /* imm 2: the smaller magnitude, with its sign taken from the comparison, which
     * keeps x's (measured: -2e30 -> -88.38, +-inf -> +-88.38; NaN -> +-88.38, as the
     * min/max pair before it also did). */
    vfloat xc = _mm512_range_ps(x, vsplat(EXP_CLAMP_HI), 0x2);
    vfloat t = vmadd(xc, vsplat(EXP_LOG2E), vsplat(EXP_MAGIC));
    vfloat m = t - EXP_MAGIC; /* x / ln2 to the nearest 1/16 */
    vfloat r = vmadd(m, vsplat(-EXP_LN2), xc);
    vfloat p = vmadd(vsplat(1.0f / 6), r, vsplat(0.5f));
    p = vmadd(p, r, vsplat(1.0f));
    /* vpermps reads the low 4 bits of each index lane: t's low mantissa bits = 16 m mod 16. */
    vfloat table = _mm512_permutexvar_ps(_mm512_castps_si512(t), _mm512_load_ps(exp2_sixteenths));
    vfloat y = vmadd(p * r, table, table);
    return _mm512_scalef_ps(y, m); /* scalef multiplies by 2^floor(m) */
#else
    vfloat xc = vmax(vmin(x, vsplat(EXP_CLAMP_HI)), vsplat(EXP_CLAMP_LO));
    const vfloat round_magic = vsplat(12582912.0f);
    vfloat t = vmadd(xc, vsplat(1.44269504088896341f), round_magic);
    vint n_int = (vint)t - (vint)round_magic;
    vfloat n = t - round_magic;
    vfloat r = vmadd(n, vsplat(-0.693359375f), xc);
    r = vmadd(n, vsplat(2.12194440e-4f), r);
    vfloat p = vmadd(vsplat(1.9875691500e-4f), r, vsplat(1.3981999507e-3f));
    p = vmadd(p, r, vsplat(8.3334519073e-3f));
    p = vmadd(p, r, vsplat(4.1665795894e-2f));
    p = vmadd(p, r, vsplat(1.6666665459e-1f));
    p = vmadd(p, r, vsplat(5.0000001201e-1f));
    vfloat y = vmadd(p, r * r, r) + 1.0f;
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
