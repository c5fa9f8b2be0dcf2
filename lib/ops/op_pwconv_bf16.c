/*
 * The bf16 precision mode's 1x1 convolution, by AVX512_BF16's vdpbf16ps
 * (_mm512_dpbf16_ps): each instruction multiplies 16 pairs of bf16 values and adds both
 * products of a pair to one fp32 lane, so a 64-byte weight row of kernels.h's packed
 * layout (16 output columns x one input-channel pair) against one broadcast input pair
 * is 32 multiply-adds, twice an fp32 FMA's 16.
 *
 *   out[r][j] = act(bias[j] + sum_p (a[r][2p] * w[2p][j] + a[r][2p+1] * w[2p+1][j]))
 *
 * with a = the input rounded to bf16 to nearest even (vcvtneps2bf16), w the weights
 * rounded the same way at load (or per request by op_fold_bf16, for the SE-folded
 * projections), sums, bias and activation in fp32.
 *
 * The tile structure is op_pwconv_direct's: a tile of M rows x NV vectors of 16 columns
 * (8 x 3 or 12 x 2 zmm = 24 accumulators of 32), for each input pair NV weight loads
 * and M broadcasts, column panels sweeping a block of rows that stays in L2. The rows of
 * a block are first rounded to bf16 into a buffer on this thread's stack (each row is
 * read once per column panel, so converting them once per block keeps the conversion
 * off the inner loop; the buffer is the block's input at half the bytes).
 *
 * Only the avx512 level builds this (BF16_FN below; the file is compiled out at the other
 * levels, whose kernel table leaves the entries NULL). On a CPU with AMX the same
 * arithmetic runs on the tile unit instead (op_pwconv_amx.c), when core/amx.c allows.
 */
#include "ops/ops.h"

#if defined(__AVX512F__)
#include <immintrin.h>
#include <string.h>

#include "ops/bf16_rows.h"
#include "ops/mathfun.h"

/* The per-thread buffer of bf16 input rows: 96 KB, i.e. 12 rows of the widest
 * EfficientDet 1x1 input (3456 channels), 240 rows of a 192-channel one. */
#define BF_BUF_WORDS 24576
#define BF_MAX_BLOCK_ROWS 240
/* At least one row of the widest input the loader packs, or a block would be 0 rows. */
_Static_assert(BF_BUF_WORDS >= (BF16_MAX_CIN + 1) / 2, "BF_BUF_WORDS must hold one row of BF16_MAX_CIN");
#define BF_MAX_M 12
#define BF_MAX_NV 3
#define BF_MIN_ROWS 64 /* per thread: below that a fork/join costs more than the work */
static const int bf_rows_for_nv[4] = {0, 12, 12, 8};

/* Rows [r0, r1) of the input, rounded to bf16, into buf: row i at buf + i * kp words,
 * the odd channel past an odd cin zero. */
BF16_FN static void round_rows(const bf16_job *job, int r0, int r1, uint32_t *buf) {
    const int cin = job->cin;
    if (cin % 2 == 0) { /* rows are contiguous and pair-aligned: one flat span */
        bf16_round_span(job->in + (size_t)r0 * cin, (size_t)(r1 - r0) * cin, (uint16_t *)buf);
        return;
    }
    for (int r = r0; r < r1; r++) {
        uint16_t *dst = (uint16_t *)(buf + (size_t)(r - r0) * job->kp);
        bf16_round_span(job->in + (size_t)r * cin, (size_t)cin, dst);
        dst[cin] = 0;
    }
}

/*
 * One tile: rows [r, r + M) of the block (a = its bf16 rows, from row r), columns
 * [j0, j0 + NV * 16), the last vector holding `last` valid lanes. M and NV are literals
 * at every call (the bf_tile_* wrappers), so the loops unroll and the accumulators stay
 * in registers.
 */
BF16_FN static inline __attribute__((always_inline)) void bf_tile(const bf16_job *job, const uint32_t *a,
                                                                  int r, int j0, int last, int M, int NV) {
    const int kp = job->kp;
    const uint16_t *restrict w = job->w + (size_t)j0 * 2;
    const size_t wstep = (size_t)job->cout16 * 2;
    __m512 acc[BF_MAX_M][BF_MAX_NV];
#pragma GCC unroll 12
    for (int i = 0; i < M; i++)
#pragma GCC unroll 3
        for (int v = 0; v < NV; v++) acc[i][v] = _mm512_setzero_ps();
    for (int p = 0; p < kp; p++) {
        const uint16_t *wp = w + (size_t)p * wstep;
        __m512bh wv[BF_MAX_NV];
#pragma GCC unroll 3
        for (int v = 0; v < NV; v++) wv[v] = (__m512bh)_mm512_loadu_si512(wp + v * 32);
#pragma GCC unroll 12
        for (int i = 0; i < M; i++) {
            __m512bh av = (__m512bh)_mm512_set1_epi32((int)a[(size_t)i * kp + p]);
#pragma GCC unroll 3
            for (int v = 0; v < NV; v++) acc[i][v] = _mm512_dpbf16_ps(acc[i][v], av, wv[v]);
        }
    }
    __m512 b[BF_MAX_NV];
#pragma GCC unroll 3
    for (int v = 0; v < NV; v++)
        b[v] = !job->bias    ? _mm512_setzero_ps()
               : v == NV - 1 ? (__m512)load_part(job->bias + j0 + v * 16, last)
                             : _mm512_loadu_ps(job->bias + j0 + v * 16);
    float *restrict out = job->out + (size_t)r * job->cout + j0;
#pragma GCC unroll 12
    for (int i = 0; i < M; i++)
#pragma GCC unroll 3
        for (int v = 0; v < NV; v++) {
            vfloat y = vact((vfloat)_mm512_add_ps(acc[i][v], b[v]), job->act);
            float *o = out + (size_t)i * job->cout + v * 16;
            if (v == NV - 1)
                store_part(o, y, last);
            else
                vstore(o, y);
        }
}

typedef void (*bf_tile_fn)(const bf16_job *job, const uint32_t *a, int r, int j0, int last);

#define BF_TILE(M, NV)                                                                                       \
    BF16_FN static void bf_tile_##M##x##NV(const bf16_job *job, const uint32_t *a, int r, int j0,            \
                                           int last) {                                                       \
        bf_tile(job, a, r, j0, last, M, NV);                                                                 \
    }
BF_TILE(12, 1)
BF_TILE(4, 1)
BF_TILE(2, 1)
BF_TILE(1, 1)
BF_TILE(12, 2)
BF_TILE(4, 2)
BF_TILE(2, 2)
BF_TILE(1, 2)
BF_TILE(8, 3)
BF_TILE(4, 3)
BF_TILE(2, 3)
BF_TILE(1, 3)

/* [nv][0] the full-height tile (bf_rows_for_nv rows), then 4, 2, 1 rows for the rest. */
static const bf_tile_fn bf_tiles[BF_MAX_NV + 1][4] = {
    {0, 0, 0, 0},
    {bf_tile_12x1, bf_tile_4x1, bf_tile_2x1, bf_tile_1x1},
    {bf_tile_12x2, bf_tile_4x2, bf_tile_2x2, bf_tile_1x2},
    {bf_tile_8x3, bf_tile_4x3, bf_tile_2x3, bf_tile_1x3},
};

/* Block rows [r0, r1) (already rounded into a) of one column panel of nv vectors. */
static void bf_panel(const bf16_job *job, const uint32_t *a, int r0, int r1, int j0, int nv, int last) {
    const bf_tile_fn *t = bf_tiles[nv];
    int m = bf_rows_for_nv[nv], r = r0;
    const uint32_t *ar = a;
    for (; r + m <= r1; r += m, ar += (size_t)m * job->kp) t[0](job, ar, r, j0, last);
    for (; r + 4 <= r1; r += 4, ar += (size_t)4 * job->kp) t[1](job, ar, r, j0, last);
    for (; r + 2 <= r1; r += 2, ar += (size_t)2 * job->kp) t[2](job, ar, r, j0, last);
    for (; r < r1; r++, ar += job->kp) t[3](job, ar, r, j0, last);
}

/* The column panels of a block: 3 vectors each, a remainder of 4 split 2 + 2 (a
 * 1-vector panel keeps only 12 accumulators busy), as op_pwconv_direct does. */
static void bf_block(const bf16_job *job, const uint32_t *a, int r0, int r1) {
    int nvec = job->cout16 / 16;
    int tail = job->cout - (nvec - 1) * 16;
    for (int j = 0; j < nvec;) {
        int left = nvec - j;
        int nv = left >= BF_MAX_NV ? BF_MAX_NV : left;
        if (left == 4) nv = 2;
        bf_panel(job, a, r0, r1, j * 16, nv, j + nv == nvec ? tail : 16);
        j += nv;
    }
}

static void bf_rows(void *p, int begin, int end) {
    const bf16_job *job = p;
    uint32_t buf[BF_BUF_WORDS] __attribute__((aligned(64)));
    int block = BF_BUF_WORDS / job->kp;
    if (block > BF_MAX_BLOCK_ROWS) block = BF_MAX_BLOCK_ROWS;
    if (block >= 24) block = block / 24 * 24;
    for (int r0 = begin; r0 < end; r0 += block) {
        int r1 = end - r0 < block ? end : r0 + block;
        round_rows(job, r0, r1, buf);
        bf_block(job, buf, r0, r1);
    }
}

void op_pwconv_bf16(threadpool *tp, const tensor *in, const uint16_t *wbf, const float *bias, act_kind act,
                    tensor *out) {
    bf16_job job = bf16_job_of(in, wbf, bias, act, out, bf16_pairs(in->c));
    threadpool_run(tp, in->h * in->w, BF_MIN_ROWS, bf_rows, &job);
}

/* ------------------------------------------------------------------ packing */

typedef struct {
    const float *w, *s;
    int rows, cols, cout16;
    uint16_t *dst;
} fold_job;

/* Pairs [begin, end): rows 2p and 2p + 1, scaled, rounded, interleaved per column. */
BF16_FN static void fold_pairs(void *p, int begin, int end) {
    const fold_job *job = p;
    /* vpermw index: word 2i <- lo[i] (word i), word 2i + 1 <- hi[i] (word 16 + i). */
    const __m512i mix = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7,
                                         22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
    for (int q = begin; q < end; q++) {
        int r = 2 * q;
        int has_hi = r + 1 < job->rows;
        const float *lo_row = job->w + (size_t)r * job->cols;
        const float *hi_row = lo_row + job->cols;
        __m512 s_lo = _mm512_set1_ps(job->s ? job->s[r] : 1.0f);
        __m512 s_hi = _mm512_set1_ps(has_hi ? (job->s ? job->s[r + 1] : 1.0f) : 0.0f);
        uint16_t *dst = job->dst + (size_t)q * job->cout16 * 2;
        for (int j = 0; j < job->cout16; j += 16) {
            int n = job->cols - j < 16 ? job->cols - j : 16;
            __mmask16 m = (__mmask16)((1u << n) - 1u);
            __m512 lo = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, lo_row + j), s_lo);
            __m512 hi =
                has_hi ? _mm512_mul_ps(_mm512_maskz_loadu_ps(m, hi_row + j), s_hi) : _mm512_setzero_ps();
            __m512i both = (__m512i)_mm512_cvtne2ps_pbh(hi, lo); /* words 0-15 lo, 16-31 hi */
            _mm512_storeu_si512(dst + (size_t)j * 2, _mm512_permutexvar_epi16(mix, both));
        }
    }
}

void op_fold_bf16(threadpool *tp, const float *w, const float *s, int rows, int cols, uint16_t *dst) {
    fold_job job = {w, s, rows, cols, bf16_cout_padded(cols), dst};
    int pairs = bf16_pairs(rows);
    /* ~32K floats per chunk, as op_scale_rows. */
    int grain = 16384 / (cols > 0 ? cols : 1) + 1;
    threadpool_run(tp, pairs, grain, fold_pairs, &job);
    /* the zero pairs that round the depth up to whole AMX tiles (kernels.h) */
    size_t row = (size_t)job.cout16 * 2;
    memset(dst + (size_t)pairs * row, 0, (size_t)(bf16_pairs_padded(rows) - pairs) * row * sizeof *dst);
}
#else
/* Other levels: no bf16 kernels (kernels_isa.c leaves the table entries NULL). */
typedef int op_pwconv_bf16_not_at_this_level;
#endif
