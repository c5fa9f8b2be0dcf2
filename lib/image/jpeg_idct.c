/*
 * The inverse DCTs and YCbCr -> RGB of the split decoder: libjpeg-turbo's integer
 * ("islow") arithmetic, term for term (jpeg_idct.h says why the results match its SIMD
 * code and when a block is refused). Constants are FIX(x) = round(x * 2^13).
 */
#include <string.h>

#ifdef __SSE4_1__
#include <smmintrin.h>
#endif

#include "image/jpeg_idct.h"

#define CONST_BITS 13
#define PASS1_BITS 2
#define MAX_WORKSPACE 8191

#define FIX_0_211164243 1730
#define FIX_0_298631336 2446
#define FIX_0_390180644 3196
#define FIX_0_509795579 4176
#define FIX_0_541196100 4433
#define FIX_0_601344887 4926
#define FIX_0_720959822 5906
#define FIX_0_765366865 6270
#define FIX_0_850430095 6967
#define FIX_0_899976223 7373
#define FIX_1_061594337 8697
#define FIX_1_175875602 9633
#define FIX_1_272758580 10426
#define FIX_1_451774981 11893
#define FIX_1_501321110 12299
#define FIX_1_847759065 15137
#define FIX_1_961570560 16069
#define FIX_2_053119869 16819
#define FIX_2_172734803 17799
#define FIX_2_562915447 20995
#define FIX_3_072711026 25172
#define FIX_3_624509785 29692

/* Round-half-up division by 2^n, as libjpeg's DESCALE (arithmetic shift). */
static inline int32_t descale(int32_t x, int n) {
    return (x + ((int32_t)1 << (n - 1))) >> n;
}

/* A final value before the level shift -> sample, flagging values outside the range
 * where libjpeg's C range table and its SIMD saturation agree. */
static inline uint8_t out_sample(int32_t v, int *bad) {
    *bad |= (uint32_t)(v + 512) > 1023u;
    v += 128;
    return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
}

static inline int ws_bad(int32_t w) {
    return (uint32_t)(w + MAX_WORKSPACE) > 2u * MAX_WORKSPACE;
}

/* The odd part of the 8-point islow IDCT of inputs t0..t3 = x7, x5, x3, x1 (in place). */
static inline void islow_odd(int32_t *t0, int32_t *t1, int32_t *t2, int32_t *t3) {
    int32_t z1 = *t0 + *t3, z2 = *t1 + *t2, z3 = *t0 + *t2, z4 = *t1 + *t3;
    int32_t z5 = (z3 + z4) * FIX_1_175875602;
    int32_t a0 = *t0 * FIX_0_298631336, a1 = *t1 * FIX_2_053119869;
    int32_t a2 = *t2 * FIX_3_072711026, a3 = *t3 * FIX_1_501321110;
    z1 *= -FIX_0_899976223;
    z2 *= -FIX_2_562915447;
    z3 = z3 * -FIX_1_961570560 + z5;
    z4 = z4 * -FIX_0_390180644 + z5;
    *t0 = a0 + z1 + z3;
    *t1 = a1 + z2 + z4;
    *t2 = a2 + z2 + z3;
    *t3 = a3 + z1 + z4;
}

/* jpeg_idct_islow: columns into the workspace (scaled by 2^PASS1_BITS), then rows. */
static int idct_8x8(const int32_t *in, uint8_t *out, size_t stride) {
    int32_t ws[64];
    int bad = 0;
    for (int c = 0; c < 8; c++) {
        const int32_t *x = in + c;
        if (!(x[8] | x[16] | x[24] | x[32] | x[40] | x[48] | x[56])) {
            int32_t dc = x[0] * (1 << PASS1_BITS);
            for (int r = 0; r < 8; r++) ws[r * 8 + c] = dc;
            continue;
        }
        int32_t z1 = (x[16] + x[48]) * FIX_0_541196100;
        int32_t tmp2 = z1 + x[48] * -FIX_1_847759065, tmp3 = z1 + x[16] * FIX_0_765366865;
        int32_t tmp0 = (x[0] + x[32]) * (1 << CONST_BITS), tmp1 = (x[0] - x[32]) * (1 << CONST_BITS);
        int32_t tmp10 = tmp0 + tmp3, tmp13 = tmp0 - tmp3, tmp11 = tmp1 + tmp2, tmp12 = tmp1 - tmp2;
        int32_t o0 = x[56], o1 = x[40], o2 = x[24], o3 = x[8];
        islow_odd(&o0, &o1, &o2, &o3);
        const int n = CONST_BITS - PASS1_BITS;
        ws[0 * 8 + c] = descale(tmp10 + o3, n);
        ws[7 * 8 + c] = descale(tmp10 - o3, n);
        ws[1 * 8 + c] = descale(tmp11 + o2, n);
        ws[6 * 8 + c] = descale(tmp11 - o2, n);
        ws[2 * 8 + c] = descale(tmp12 + o1, n);
        ws[5 * 8 + c] = descale(tmp12 - o1, n);
        ws[3 * 8 + c] = descale(tmp13 + o0, n);
        ws[4 * 8 + c] = descale(tmp13 - o0, n);
    }
    for (int i = 0; i < 64; i++) bad |= ws_bad(ws[i]);
    if (bad) return 1; /* pass 2 could overflow */
    for (int r = 0; r < 8; r++, out += stride) {
        const int32_t *w = ws + r * 8;
        if (!(w[1] | w[2] | w[3] | w[4] | w[5] | w[6] | w[7])) {
            uint8_t v = out_sample(descale(w[0], PASS1_BITS + 3), &bad);
            for (int i = 0; i < 8; i++) out[i] = v;
            continue;
        }
        int32_t z1 = (w[2] + w[6]) * FIX_0_541196100;
        int32_t tmp0 = (w[0] + w[4]) * (1 << CONST_BITS), tmp1 = (w[0] - w[4]) * (1 << CONST_BITS);
        int32_t tmp3 = z1 + w[2] * FIX_0_765366865, tmp2 = z1 + w[6] * -FIX_1_847759065;
        int32_t tmp10 = tmp0 + tmp3, tmp13 = tmp0 - tmp3, tmp11 = tmp1 + tmp2, tmp12 = tmp1 - tmp2;
        int32_t o0 = w[7], o1 = w[5], o2 = w[3], o3 = w[1];
        islow_odd(&o0, &o1, &o2, &o3);
        const int n = CONST_BITS + PASS1_BITS + 3;
        out[0] = out_sample(descale(tmp10 + o3, n), &bad);
        out[7] = out_sample(descale(tmp10 - o3, n), &bad);
        out[1] = out_sample(descale(tmp11 + o2, n), &bad);
        out[6] = out_sample(descale(tmp11 - o2, n), &bad);
        out[2] = out_sample(descale(tmp12 + o1, n), &bad);
        out[5] = out_sample(descale(tmp12 - o1, n), &bad);
        out[3] = out_sample(descale(tmp13 + o0, n), &bad);
        out[4] = out_sample(descale(tmp13 - o0, n), &bad);
    }
    return bad;
}

/* The 8-to-4 step of jidctred.c on x0, x2, x6 (even) and x7, x5, x3, x1 (odd), as
 * used by pass 2 (pass 1 accumulates the same sums term by term: see slots_4x4). */
static inline void red4(int32_t x0, int32_t x2, int32_t x6, int32_t x7, int32_t x5, int32_t x3, int32_t x1,
                        int32_t *even10, int32_t *even12, int32_t *odd0, int32_t *odd2) {
    int32_t tmp0 = x0 * (1 << (CONST_BITS + 1));
    int32_t tmp2 = x2 * FIX_1_847759065 + x6 * -FIX_0_765366865;
    *even10 = tmp0 + tmp2;
    *even12 = tmp0 - tmp2;
    *odd0 = x7 * -FIX_0_211164243 + x5 * FIX_1_451774981 + x3 * -FIX_2_172734803 + x1 * FIX_1_061594337;
    *odd2 = x7 * -FIX_0_509795579 + x5 * -FIX_0_601344887 + x3 * FIX_0_899976223 + x1 * FIX_2_562915447;
}

/* The 8-to-2 odd term of jidctred.c on x7, x5, x3, x1. */
static inline int32_t red2_odd(int32_t x7, int32_t x5, int32_t x3, int32_t x1) {
    return x7 * -FIX_0_720959822 + x5 * FIX_0_850430095 + x3 * -FIX_1_272758580 + x1 * FIX_3_624509785;
}

/* The reduced IDCTs' pass 1 is, for each column, a few sums of one term per
 * coefficient, so it is accumulated straight from the block's entries (integer sums
 * do not depend on the order; a column without terms gives the C code's zero-column
 * shortcut, dc << PASS1_BITS): no 64-coefficient block to fill and clear. Columns
 * the size reads, and the slot layout: */
static const int8_t col2[8] = {0, 1, -1, 2, -1, 3, -1, 4};  /* 2x2: columns 0 1 3 5 7 */
static const int8_t col4[8] = {0, 1, 2, 3, -1, 4, 5, 6};    /* 4x4: all but column 4 */
enum { S2_EVEN = 0, S2_ODD = 5, S4_E0 = 0, S4_E2 = 7, S4_O0 = 14, S4_O2 = 21, SLOT_DROP = IDCT_SLOTS - 1 };

/* jpeg_idct_2x2's pass 1 factor of row r: row 0 into the even sum, odd rows into the
 * odd one; rows 2, 4, 6 are not read. */
static int slots_2x2(int r, int ci, uint8_t *slot, int32_t *fac) {
    static const int32_t of[8] = {0, FIX_3_624509785, 0, -FIX_1_272758580, 0, FIX_0_850430095, 0, -FIX_0_720959822};
    if (r == 0) return slot[0] = (uint8_t)(S2_EVEN + ci), fac[0] = 1 << (CONST_BITS + 2), 1;
    if (r & 1) return slot[0] = (uint8_t)(S2_ODD + ci), fac[0] = of[r], 1;
    return 0;
}

/* jpeg_idct_4x4's: rows 0, 2, 6 into its two even sums, odd rows into both odd ones. */
static int slots_4x4(int r, int ci, uint8_t *slot, int32_t *fac) {
    static const int32_t o0f[8] = {0, FIX_1_061594337, 0, -FIX_2_172734803, 0, FIX_1_451774981, 0, -FIX_0_211164243};
    static const int32_t o2f[8] = {0, FIX_2_562915447, 0, FIX_0_899976223, 0, -FIX_0_601344887, 0, -FIX_0_509795579};
    if (r == 0) return slot[0] = (uint8_t)(S4_E0 + ci), fac[0] = 1 << (CONST_BITS + 1), 1;
    if (r == 2) return slot[0] = (uint8_t)(S4_E2 + ci), fac[0] = FIX_1_847759065, 1;
    if (r == 6) return slot[0] = (uint8_t)(S4_E2 + ci), fac[0] = -FIX_0_765366865, 1;
    if (!(r & 1)) return 0;
    slot[0] = (uint8_t)(S4_O0 + ci), fac[0] = o0f[r];
    slot[1] = (uint8_t)(S4_O2 + ci), fac[1] = o2f[r];
    return 2;
}

int idct_plan_init(idct_plan *p, int size, const uint16_t q[64]) {
    if (size != 1 && size != 2 && size != 4 && size != 8) return 0;
    memset(p, 0, sizeof *p);
    p->size = size;
    memcpy(p->q, q, sizeof p->q);
    for (int z = 0; z < 64; z++) {
        /* q = 0 makes every value 0: any raw value passes (|raw| < 2^16 always) */
        p->lim[z] = q[z] ? IDCT_MAX_COEF / q[z] : 1u << 30;
        uint8_t slot[2] = {SLOT_DROP, SLOT_DROP};
        int32_t fac[2] = {0, 0};
        int r = z >> 3, c = z & 7;
        if (size == 2 && col2[c] >= 0) slots_2x2(r, col2[c], slot, fac);
        if (size == 4 && col4[c] >= 0) slots_4x4(r, col4[c], slot, fac);
        for (int k = 0; k < 2; k++) {
            p->slot[z][k] = slot[k];
            p->fac[z][k] = (uint32_t)fac[k] * q[z]; /* wraps only when q[z] is too large to pass lim */
        }
    }
    return 1;
}

/* 1 when raw value v at natural index z dequantises beyond IDCT_MAX_COEF (branch-free:
 * v + lim wraps above 2 lim exactly when |v| > lim). */
static inline uint32_t beyond_range(const idct_plan *p, int z, int32_t v) {
    return (uint32_t)v + p->lim[z] > 2 * p->lim[z];
}

/* The same for a DC value (predictor offsets added, so wider than an entry). */
static inline int dc_beyond_range(const idct_plan *p, int64_t dc) {
    return dc > p->lim[0] || dc < -(int64_t)p->lim[0];
}

/* Block `lane` of a group: its DC term, then every AC entry's one or two terms.
 * Returns the entries consumed (DC and terminator included), or 0 when a value is out
 * of range. The sums are unsigned (wrapping) so that garbage cannot overflow; in range
 * they are the C code's int32 sums exactly. */
int idct_group_add(const idct_plan *p, int64_t dc, const int32_t *e, idct_group *g, int lane) {
    if (dc_beyond_range(p, dc)) return 0;
    g->s[p->slot[0][0]][lane] = (uint32_t)dc * p->fac[0][0]; /* column 0's first even sum */
    uint32_t bad = 0;
    int n = 1;
    if (p->size == 2) { /* one term per coefficient: a second add (of 0) would chain them all */
        for (; e[n]; n++) {
            int z = e[n] & 0xFF;
            int32_t v = e[n] >> 8;
            bad |= beyond_range(p, z, v);
            g->s[p->slot[z][0]][lane] += (uint32_t)v * p->fac[z][0];
        }
        return bad ? 0 : n + 1;
    }
    for (; e[n]; n++) {
        int z = e[n] & 0xFF;
        int32_t v = e[n] >> 8;
        bad |= beyond_range(p, z, v);
        g->s[p->slot[z][0]][lane] += (uint32_t)v * p->fac[z][0];
        g->s[p->slot[z][1]][lane] += (uint32_t)v * p->fac[z][1];
    }
    return bad ? 0 : n + 1;
}

#ifdef __SSE4_1__
/* The groups with SSE4.1, 4 lanes (blocks) per register, two halves per group: the
 * same int32 arithmetic as the C code below. Range checks are kept as running maxima
 * (|workspace|) and minima/maxima (outputs) and tested once. */
static inline __m128i descale4(__m128i x, int n) {
    return _mm_srai_epi32(_mm_add_epi32(x, _mm_set1_epi32(1 << (n - 1))), n);
}

static inline __m128i mul4(__m128i x, int32_t k) {
    return _mm_mullo_epi32(x, _mm_set1_epi32(k));
}

static inline __m128i sum_at(const idct_group *g, int slot, int half) {
    return _mm_loadu_si128((const __m128i *)&g->s[slot][4 * half]);
}

/* Outputs before the level shift -> the range's running extremes, then bytes
 * (shifted, clamped to 0..255 by the saturating packs). */
static inline __m128i out_bytes(__m128i a, __m128i b, __m128i c, __m128i d, __m128i *lo, __m128i *hi) {
    *lo = _mm_min_epi32(_mm_min_epi32(*lo, _mm_min_epi32(a, b)), _mm_min_epi32(c, d));
    *hi = _mm_max_epi32(_mm_max_epi32(*hi, _mm_max_epi32(a, b)), _mm_max_epi32(c, d));
    const __m128i c128 = _mm_set1_epi32(128);
    a = _mm_add_epi32(a, c128), b = _mm_add_epi32(b, c128), c = _mm_add_epi32(c, c128),
    d = _mm_add_epi32(d, c128);
    return _mm_packus_epi16(_mm_packs_epi32(a, b), _mm_packs_epi32(c, d));
}

static inline int outputs_bad(__m128i lo, __m128i hi) {
    __m128i bad =
        _mm_or_si128(_mm_cmplt_epi32(lo, _mm_set1_epi32(-512)), _mm_cmpgt_epi32(hi, _mm_set1_epi32(511)));
    return _mm_movemask_epi8(bad) != 0;
}

static inline int workspace_bad(__m128i absmax) {
    return _mm_movemask_epi8(_mm_cmpgt_epi32(absmax, _mm_set1_epi32(MAX_WORKSPACE))) != 0;
}

/* jpeg_idct_2x2 on 4 lanes: row r of lane l -> out[r * stride + 2 l + 0 / 1]. */
static int half_2x2(const idct_group *g, int half, uint8_t *out, size_t stride) {
    const int s1 = CONST_BITS - PASS1_BITS + 2, s2 = CONST_BITS + PASS1_BITS + 3 + 2;
    __m128i ws[2][5], absmax = _mm_setzero_si128();
    for (int ci = 0; ci < 5; ci++) {
        __m128i even = sum_at(g, S2_EVEN + ci, half), odd = sum_at(g, S2_ODD + ci, half);
        ws[0][ci] = descale4(_mm_add_epi32(even, odd), s1);
        ws[1][ci] = descale4(_mm_sub_epi32(even, odd), s1);
        absmax = _mm_max_epi32(absmax, _mm_max_epi32(_mm_abs_epi32(ws[0][ci]), _mm_abs_epi32(ws[1][ci])));
    }
    if (workspace_bad(absmax)) return 1; /* pass 2 could overflow */
    __m128i lo = _mm_setzero_si128(), hi = _mm_setzero_si128();
    const __m128i interleave = _mm_setr_epi8(0, 4, 1, 5, 2, 6, 3, 7, 8, 12, 9, 13, 10, 14, 11, 15);
    for (int r = 0; r < 2; r++) {
        const __m128i *w = ws[r]; /* columns 0 1 3 5 7 */
        __m128i t10 = _mm_slli_epi32(w[0], CONST_BITS + 2);
        __m128i t0 = _mm_add_epi32(_mm_add_epi32(mul4(w[4], -FIX_0_720959822), mul4(w[3], FIX_0_850430095)),
                                   _mm_add_epi32(mul4(w[2], -FIX_1_272758580), mul4(w[1], FIX_3_624509785)));
        __m128i a = descale4(_mm_add_epi32(t10, t0), s2), b = descale4(_mm_sub_epi32(t10, t0), s2);
        __m128i bytes = _mm_shuffle_epi8(out_bytes(a, b, a, b, &lo, &hi), interleave);
        _mm_storel_epi64((__m128i *)(out + (size_t)r * stride), bytes);
    }
    return outputs_bad(lo, hi);
}

/* jpeg_idct_4x4 on 4 lanes: row r of lane l -> out[r * stride + 4 l + 0..3]. */
static int half_4x4(const idct_group *g, int half, uint8_t *out, size_t stride) {
    const int s1 = CONST_BITS - PASS1_BITS + 1, s2 = CONST_BITS + PASS1_BITS + 3 + 1;
    __m128i ws[4][7], absmax = _mm_setzero_si128();
    for (int ci = 0; ci < 7; ci++) {
        __m128i e0 = sum_at(g, S4_E0 + ci, half), e2 = sum_at(g, S4_E2 + ci, half);
        __m128i o0 = sum_at(g, S4_O0 + ci, half), o2 = sum_at(g, S4_O2 + ci, half);
        __m128i t10 = _mm_add_epi32(e0, e2), t12 = _mm_sub_epi32(e0, e2);
        ws[0][ci] = descale4(_mm_add_epi32(t10, o2), s1);
        ws[3][ci] = descale4(_mm_sub_epi32(t10, o2), s1);
        ws[1][ci] = descale4(_mm_add_epi32(t12, o0), s1);
        ws[2][ci] = descale4(_mm_sub_epi32(t12, o0), s1);
        for (int r = 0; r < 4; r++) absmax = _mm_max_epi32(absmax, _mm_abs_epi32(ws[r][ci]));
    }
    if (workspace_bad(absmax)) return 1; /* pass 2 could overflow */
    __m128i lo = _mm_setzero_si128(), hi = _mm_setzero_si128();
    const __m128i transpose = _mm_setr_epi8(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    for (int r = 0; r < 4; r++) {
        const __m128i *w = ws[r]; /* columns 0 1 2 3 5 6 7 */
        __m128i tmp0 = _mm_slli_epi32(w[0], CONST_BITS + 1);
        __m128i tmp2 = _mm_add_epi32(mul4(w[2], FIX_1_847759065), mul4(w[5], -FIX_0_765366865));
        __m128i t10 = _mm_add_epi32(tmp0, tmp2), t12 = _mm_sub_epi32(tmp0, tmp2);
        __m128i q0 = _mm_add_epi32(_mm_add_epi32(mul4(w[6], -FIX_0_211164243), mul4(w[4], FIX_1_451774981)),
                                   _mm_add_epi32(mul4(w[3], -FIX_2_172734803), mul4(w[1], FIX_1_061594337)));
        __m128i q2 = _mm_add_epi32(_mm_add_epi32(mul4(w[6], -FIX_0_509795579), mul4(w[4], -FIX_0_601344887)),
                                   _mm_add_epi32(mul4(w[3], FIX_0_899976223), mul4(w[1], FIX_2_562915447)));
        __m128i o0 = descale4(_mm_add_epi32(t10, q2), s2), o3 = descale4(_mm_sub_epi32(t10, q2), s2);
        __m128i o1 = descale4(_mm_add_epi32(t12, q0), s2), o2 = descale4(_mm_sub_epi32(t12, q0), s2);
        _mm_storeu_si128((__m128i *)(out + (size_t)r * stride),
                         _mm_shuffle_epi8(out_bytes(o0, o1, o2, o3, &lo, &hi), transpose));
    }
    return outputs_bad(lo, hi);
}

/* Both halves of a group into whole rows, then the lanes in use out to the plane. */
static int group_store(const idct_group *g, int size, int nlanes, uint8_t *out, size_t stride) {
    uint8_t rows[4][IDCT_LANES * 4];
    for (int h = 0; h < 2; h++) {
        uint8_t *dst = rows[0] + h * 4 * size; /* lanes 4h .. 4h + 3 */
        if (size == 2 ? half_2x2(g, h, dst, sizeof rows[0]) : half_4x4(g, h, dst, sizeof rows[0])) return 1;
    }
    for (int r = 0; r < size; r++) memcpy(out + (size_t)r * stride, rows[r], (size_t)(nlanes * size));
    return 0;
}

#else
/* The final descale, range flag and level shift of a lane's sample (out_sample). */
static inline uint8_t out_lane(int32_t sum, int shift, uint32_t *bad) {
    int32_t v = descale(sum, shift);
    *bad |= (uint32_t)(v + 512) > 1023u;
    v += 128;
    return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
}

/* jpeg_idct_2x2 on every lane: pass 1 from the sums, then the rows. The loops run
 * across the lanes (blocks), so they are plain vector code. */
static int group_2x2(const idct_group *g, int nlanes, uint8_t *out, size_t stride) {
    int32_t ws[2][5][IDCT_LANES]; /* row, column (0 1 3 5 7), lane */
    uint32_t bad = 0;
    const int s1 = CONST_BITS - PASS1_BITS + 2, s2 = CONST_BITS + PASS1_BITS + 3 + 2;
    for (int ci = 0; ci < 5; ci++)
        for (int l = 0; l < IDCT_LANES; l++) {
            int32_t even = (int32_t)g->s[S2_EVEN + ci][l], odd = (int32_t)g->s[S2_ODD + ci][l];
            ws[0][ci][l] = descale(even + odd, s1);
            ws[1][ci][l] = descale(even - odd, s1);
            bad |= (uint32_t)ws_bad(ws[0][ci][l]) | (uint32_t)ws_bad(ws[1][ci][l]);
        }
    if (bad) return 1; /* pass 2 could overflow */
    uint8_t row[2][IDCT_LANES * 2];
    for (int r = 0; r < 2; r++)
        for (int l = 0; l < IDCT_LANES; l++) {
            const int32_t(*w)[IDCT_LANES] = ws[r];
            int32_t t10 = w[0][l] * (1 << (CONST_BITS + 2)),
                    t0 = red2_odd(w[4][l], w[3][l], w[2][l], w[1][l]);
            row[r][2 * l] = out_lane(t10 + t0, s2, &bad);
            row[r][2 * l + 1] = out_lane(t10 - t0, s2, &bad);
        }
    for (int r = 0; r < 2; r++) memcpy(out + (size_t)r * stride, row[r], (size_t)nlanes * 2);
    return bad != 0;
}

/* jpeg_idct_4x4 (column and row 4 unused) on every lane. */
static int group_4x4(const idct_group *g, int nlanes, uint8_t *out, size_t stride) {
    int32_t ws[4][7][IDCT_LANES]; /* row, column (0 1 2 3 5 6 7), lane */
    uint32_t bad = 0;
    const int s1 = CONST_BITS - PASS1_BITS + 1, s2 = CONST_BITS + PASS1_BITS + 3 + 1;
    for (int ci = 0; ci < 7; ci++)
        for (int l = 0; l < IDCT_LANES; l++) {
            int32_t e0 = (int32_t)g->s[S4_E0 + ci][l], e2 = (int32_t)g->s[S4_E2 + ci][l];
            int32_t o0 = (int32_t)g->s[S4_O0 + ci][l], o2 = (int32_t)g->s[S4_O2 + ci][l];
            int32_t t10 = e0 + e2, t12 = e0 - e2;
            ws[0][ci][l] = descale(t10 + o2, s1);
            ws[3][ci][l] = descale(t10 - o2, s1);
            ws[1][ci][l] = descale(t12 + o0, s1);
            ws[2][ci][l] = descale(t12 - o0, s1);
            bad |= (uint32_t)(ws_bad(ws[0][ci][l]) | ws_bad(ws[1][ci][l]) | ws_bad(ws[2][ci][l]) |
                              ws_bad(ws[3][ci][l]));
        }
    if (bad) return 1; /* pass 2 could overflow */
    uint8_t row[4][IDCT_LANES * 4];
    for (int r = 0; r < 4; r++)
        for (int l = 0; l < IDCT_LANES; l++) {
            const int32_t(*w)[IDCT_LANES] = ws[r];
            int32_t t10, t12, q0, q2;
            red4(w[0][l], w[2][l], w[5][l], w[6][l], w[4][l], w[3][l], w[1][l], &t10, &t12, &q0, &q2);
            row[r][4 * l + 0] = out_lane(t10 + q2, s2, &bad);
            row[r][4 * l + 3] = out_lane(t10 - q2, s2, &bad);
            row[r][4 * l + 1] = out_lane(t12 + q0, s2, &bad);
            row[r][4 * l + 2] = out_lane(t12 - q0, s2, &bad);
        }
    for (int r = 0; r < 4; r++) memcpy(out + (size_t)r * stride, row[r], (size_t)nlanes * 4);
    return bad != 0;
}

#endif

int idct_group_store(const idct_plan *p, const idct_group *g, int nlanes, uint8_t *out, size_t stride) {
    if (nlanes < 1 || nlanes > IDCT_LANES) return 1;
#ifdef __SSE4_1__
    return group_store(g, p->size, nlanes, out, stride);
#else
    return p->size == 2 ? group_2x2(g, nlanes, out, stride) : group_4x4(g, nlanes, out, stride);
#endif
}

/* A block with no AC coefficients is flat at every size: each pass's zero shortcut
 * leaves DESCALE(dc << PASS1_BITS, PASS1_BITS + 3) = DESCALE(dc, 3). (The groups get
 * the same from their sums.) */
static void idct_flat(int size, int32_t dc, uint8_t *out, size_t stride) {
    int bad = 0;
    uint8_t v = out_sample(descale(dc, 3), &bad); /* |dc| <= IDCT_MAX_COEF: in range */
    for (int r = 0; r < size; r++, out += stride) memset(out, v, (size_t)size);
}

/* The full 8x8: the entries dequantised into a dense block. */
static int idct_8x8_entries(const idct_plan *p, int32_t dc, const int32_t *e, uint8_t *out, size_t stride) {
    int32_t coef[64] = {dc};
    uint32_t bad = 0;
    int n = 1;
    for (; e[n]; n++) {
        int z = e[n] & 0xFF;
        int32_t v = e[n] >> 8;
        bad |= beyond_range(p, z, v);
        coef[z] = (int32_t)((uint32_t)v * p->q[z]);
    }
    if (bad || idct_8x8(coef, out, stride)) return 0;
    return n + 1;
}

int idct_block_entries(const idct_plan *p, int64_t dc, const int32_t *e, uint8_t *out, size_t stride) {
    if (dc_beyond_range(p, dc) || (p->size != 1 && p->size != 8)) return 0;
    int32_t d = (int32_t)dc * p->q[0];
    if (!e[1]) { /* common: no AC coefficient */
        idct_flat(p->size, d, out, stride);
        return 2;
    }
    return p->size == 8 ? idct_8x8_entries(p, d, e, out, stride) : 0; /* 1x1 reads no AC */
}

void h2v1_row(const uint8_t *in, int n, int fancy, uint8_t *out) {
    if (!fancy || n <= 2) {
        for (int i = 0; i < n; i++) out[2 * i] = out[2 * i + 1] = in[i];
        return;
    }
    out[0] = in[0];
    out[1] = (uint8_t)((in[0] * 3 + in[1] + 2) >> 2);
    for (int i = 1; i < n - 1; i++) {
        int v = in[i] * 3; /* rounding alternates, as libjpeg's: +1 to the left, +2 to the right */
        out[2 * i] = (uint8_t)((v + in[i - 1] + 1) >> 2);
        out[2 * i + 1] = (uint8_t)((v + in[i + 1] + 2) >> 2);
    }
    out[2 * n - 2] = (uint8_t)((in[n - 1] * 3 + in[n - 2] + 1) >> 2);
    out[2 * n - 1] = in[n - 1];
}

/* jdcolor.c's tables, computed inline: SCALEBITS 16, FIX(x) = round(x * 2^16). */
#define SCALEBITS 16
#define ONE_HALF (1 << (SCALEBITS - 1))
#define FIX16(x) ((int32_t)((x) * (1 << SCALEBITS) + 0.5))

static inline uint8_t clamp255(int32_t v) {
    return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
}

/* R, G, B of one pixel, as jdcolor.c's ycc_rgb_convert. */
static inline void ycc_pixel(int32_t Y, int32_t cb, int32_t cr, uint8_t *rgb) {
    int32_t b = cb - 128, r = cr - 128;
    rgb[0] = clamp255(Y + ((FIX16(1.40200) * r + ONE_HALF) >> SCALEBITS));
    rgb[1] = clamp255(Y + ((-FIX16(0.34414) * b + ONE_HALF + -FIX16(0.71414) * r) >> SCALEBITS));
    rgb[2] = clamp255(Y + ((FIX16(1.77200) * b + ONE_HALF) >> SCALEBITS));
}

#ifdef __SSE4_1__
/* The same arithmetic on 4 pixels (32-bit lanes): Y + the channel's term. */
static inline void ycc_terms4(__m128i y, __m128i b, __m128i r, __m128i *R, __m128i *G, __m128i *B) {
    const __m128i half = _mm_set1_epi32(ONE_HALF);
    __m128i cr_r =
        _mm_srai_epi32(_mm_add_epi32(_mm_mullo_epi32(r, _mm_set1_epi32(FIX16(1.40200))), half), SCALEBITS);
    __m128i cb_b =
        _mm_srai_epi32(_mm_add_epi32(_mm_mullo_epi32(b, _mm_set1_epi32(FIX16(1.77200))), half), SCALEBITS);
    __m128i g = _mm_add_epi32(_mm_add_epi32(_mm_mullo_epi32(b, _mm_set1_epi32(-FIX16(0.34414))), half),
                              _mm_mullo_epi32(r, _mm_set1_epi32(-FIX16(0.71414))));
    *R = _mm_add_epi32(y, cr_r);
    *G = _mm_add_epi32(y, _mm_srai_epi32(g, SCALEBITS));
    *B = _mm_add_epi32(y, cb_b);
}

/* 8 pixels: widen to 32 bits, convert, saturate back to bytes (the clamp: every sum
 * fits in 16 bits), interleave to RGB with two byte shuffles. */
static inline void ycc_to_rgb8(const uint8_t *y, const uint8_t *cb, const uint8_t *cr, uint8_t *rgb) {
    const __m128i c128 = _mm_set1_epi32(128);
    __m128i R[2], G[2], B[2];
    for (int h = 0; h < 2; h++) {
        int32_t y4, b4, r4;
        memcpy(&y4, y + 4 * h, 4), memcpy(&b4, cb + 4 * h, 4), memcpy(&r4, cr + 4 * h, 4);
        __m128i yv = _mm_cvtepu8_epi32(_mm_cvtsi32_si128(y4));
        __m128i bv = _mm_sub_epi32(_mm_cvtepu8_epi32(_mm_cvtsi32_si128(b4)), c128);
        __m128i rv = _mm_sub_epi32(_mm_cvtepu8_epi32(_mm_cvtsi32_si128(r4)), c128);
        ycc_terms4(yv, bv, rv, &R[h], &G[h], &B[h]);
    }
    __m128i r8 = _mm_packus_epi16(_mm_packs_epi32(R[0], R[1]), _mm_setzero_si128());
    __m128i g8 = _mm_packus_epi16(_mm_packs_epi32(G[0], G[1]), _mm_setzero_si128());
    __m128i b8 = _mm_packus_epi16(_mm_packs_epi32(B[0], B[1]), _mm_setzero_si128());
    __m128i rg = _mm_unpacklo_epi64(r8, g8); /* R0..R7 G0..G7 */
    const __m128i lo_rg = _mm_setr_epi8(0, 8, -1, 1, 9, -1, 2, 10, -1, 3, 11, -1, 4, 12, -1, 5);
    const __m128i lo_b = _mm_setr_epi8(-1, -1, 0, -1, -1, 1, -1, -1, 2, -1, -1, 3, -1, -1, 4, -1);
    const __m128i hi_rg = _mm_setr_epi8(13, -1, 6, 14, -1, 7, 15, -1, -1, -1, -1, -1, -1, -1, -1, -1);
    const __m128i hi_b = _mm_setr_epi8(-1, 5, -1, -1, 6, -1, -1, 7, -1, -1, -1, -1, -1, -1, -1, -1);
    _mm_storeu_si128((__m128i *)rgb, _mm_or_si128(_mm_shuffle_epi8(rg, lo_rg), _mm_shuffle_epi8(b8, lo_b)));
    _mm_storel_epi64((__m128i *)(rgb + 16),
                     _mm_or_si128(_mm_shuffle_epi8(rg, hi_rg), _mm_shuffle_epi8(b8, hi_b)));
}
#endif

void ycc_to_rgb_row(const uint8_t *y, const uint8_t *cb, const uint8_t *cr, int n, uint8_t *rgb) {
    int i = 0;
#ifdef __SSE4_1__
    for (; i + 8 <= n; i += 8) ycc_to_rgb8(y + i, cb + i, cr + i, rgb + 3 * i);
#endif
    for (; i < n; i++) ycc_pixel(y[i], cb[i], cr[i], rgb + 3 * i);
}
