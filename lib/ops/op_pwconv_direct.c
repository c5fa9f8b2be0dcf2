/*
 * Pointwise (1x1) convolution without OpenBLAS: a register-blocked GEMM microkernel
 * with the bias and the activation applied in registers before the one store.
 *
 * out[r][j] = act(bias[j] + sum_k in[r][k] * w[k][j]), in NHWC rows of cin floats,
 * w [cin][cout] row-major as the loader leaves it. A tile is M rows x NV vectors of
 * output columns (AVX-512: 8 x 3 or 12 x 2 zmm = 24 accumulators of 32; AVX2: 6 x 2
 * ymm = 12 of 16). For each k the tile loads NV weight vectors (w[k][j0..] is
 * contiguous along cout: no repacking needed) and broadcasts M inputs, M * NV FMAs.
 * The sums run in k order from 0 in fp32, like a plain dot product; the bias is
 * added after the last k.
 *
 * Why not OpenBLAS everywhere: sgemm packs both operands on every call and its
 * Haswell kernels are tuned for large K; the early expansions of EfficientNet
 * (K = 16..40 over 16K-65K rows) spend a large share of their time outside the
 * FMA loop. Which path runs per shape is decided by lib/pwconv_table.h (measured).
 *
 * The cout remainder (cout % lanes) is the last vector of the last panel, loaded and
 * stored with a lane mask (AVX-512 masks; AVX2 vmaskmovps loads and a copy through a
 * buffer for the store, which is slow as vmaskmovps on AMD). The code is generic over
 * mathfun.h's vfloat, so it also builds at the baseline level (SSE), where the table
 * never selects it but the tests still run it.
 */
#include <stdint.h>
#include <string.h>

#include "ops/mathfun.h"
#include "ops/ops.h"

/* Rows per tile for panels of 3, 2 and 1 vectors: accumulators + NV weight vectors +
 * one broadcast must fit the register file (32 zmm with AVX-512, 16 otherwise). */
#if defined(__AVX512F__)
#define PWD_MAX_NV 3
static const int pwd_rows_for_nv[4] = {0, 12, 12, 8};
#else
#define PWD_MAX_NV 2
static const int pwd_rows_for_nv[4] = {0, 12, 6, 0};
#endif
#define PWD_MAX_M 12
#define PWD_PREFETCH_K 8

/* Rows per block: the block's input rows and output rows stay in L2 (~256 KB) while
 * every column panel sweeps them. */
#define PWD_BLOCK_FLOATS 65536
#define PWD_MIN_BLOCK_ROWS 64

/* x in every lane (one vbroadcastss from memory). */
static inline vfloat broadcast(float x) {
#if defined(__AVX512F__)
    return _mm512_set1_ps(x);
#elif defined(__AVX__)
    return _mm256_set1_ps(x);
#else
    return vsplat(x);
#endif
}

typedef struct {
    const float *in, *w, *bias;
    float *out;
    int cin, cout;
    act_kind act;
} pwd_job;

/* A prefetch hint n floats past p. The last tiles' hints point past the arrays, which
 * a prefetch may (it never faults) but pointer arithmetic may not: the address is
 * computed as an integer. */
static inline void prefetch_floats(const float *p, size_t n) {
    __builtin_prefetch((const void *)((uintptr_t)p + n * sizeof(float)));
}

/*
 * One tile: rows [r, r + M), columns [j0, j0 + NV * VLEN), of which the last vector
 * holds `last` valid lanes (VLEN when cout divides evenly). M and NV are literals at
 * every call (the pwd_tile_* wrappers), so after inlining the loops over them unroll
 * and the accumulators live in registers (docs/kernels.md: no VLAs).
 */
static inline __attribute__((always_inline)) void pwd_tile(const pwd_job *job, int r, int j0, int last, int M,
                                                           int NV) {
    const int cin = job->cin, cout = job->cout;
    const float *restrict in = job->in + (size_t)r * cin;
    const float *restrict w = job->w + j0;
    vfloat acc[PWD_MAX_M][PWD_MAX_NV];
#pragma GCC unroll 12
    for (int i = 0; i < M; i++)
#pragma GCC unroll 3
        for (int v = 0; v < NV; v++) acc[i][v] = vsplat(0.0f);
    for (int k = 0; k < cin; k++) {
        const float *wk = w + (size_t)k * cout;
        /* A tile reads its weight panel one row per k, cout floats apart (from L2
         * once the matrix outgrows L1: 672x112 is 300 KB), so fetch the rows
         * PWD_PREFETCH_K ahead; every 16 k (one cache line of one input row) also
         * touch the next tile's input rows. [AMD EPYC Zen 5, 1 thread, D0 forward]
         * 34.8 -> 33.8 ms; distances 4..16 were within 1% of each other. */
#pragma GCC unroll 3
        for (int v = 0; v < NV; v++) prefetch_floats(wk, (size_t)PWD_PREFETCH_K * cout + v * VLEN);
        if ((k & 15) == 0)
#pragma GCC unroll 12
            for (int i = 0; i < M; i++) prefetch_floats(in, (size_t)(i + M) * cin + k);
        vfloat wv[PWD_MAX_NV];
#pragma GCC unroll 3
        for (int v = 0; v < NV; v++)
            wv[v] = v == NV - 1 ? load_part(wk + v * VLEN, last) : vload(wk + v * VLEN);
#pragma GCC unroll 12
        for (int i = 0; i < M; i++) {
            vfloat a = broadcast(in[(size_t)i * cin + k]);
#pragma GCC unroll 3
            for (int v = 0; v < NV; v++) acc[i][v] = vmadd(a, wv[v], acc[i][v]);
        }
    }
    vfloat b[PWD_MAX_NV];
#pragma GCC unroll 3
    for (int v = 0; v < NV; v++)
        b[v] = !job->bias    ? vsplat(0.0f)
               : v == NV - 1 ? load_part(job->bias + j0 + v * VLEN, last)
                             : vload(job->bias + j0 + v * VLEN);
    float *restrict out = job->out + (size_t)r * cout + j0;
#pragma GCC unroll 12
    for (int i = 0; i < M; i++)
#pragma GCC unroll 3
        for (int v = 0; v < NV; v++) {
            vfloat y = vact(acc[i][v] + b[v], job->act);
            if (v == NV - 1)
                store_part(out + (size_t)i * cout + v * VLEN, y, last);
            else
                vstore(out + (size_t)i * cout + v * VLEN, y);
        }
}

typedef void (*pwd_tile_fn)(const pwd_job *job, int r, int j0, int last);

#define PWD_TILE(M, NV)                                                                                      \
    static void pwd_tile_##M##x##NV(const pwd_job *job, int r, int j0, int last) {                           \
        pwd_tile(job, r, j0, last, M, NV);                                                                   \
    }
PWD_TILE(12, 1)
PWD_TILE(4, 1)
PWD_TILE(2, 1)
PWD_TILE(1, 1)
PWD_TILE(4, 2)
PWD_TILE(2, 2)
PWD_TILE(1, 2)
#if defined(__AVX512F__)
PWD_TILE(12, 2)
PWD_TILE(8, 3)
PWD_TILE(4, 3)
PWD_TILE(2, 3)
PWD_TILE(1, 3)
#else
PWD_TILE(6, 2)
#endif

/* [nv][0] the full-height tile (pwd_rows_for_nv rows), then 4, 2, 1 rows for the rest. */
static const pwd_tile_fn pwd_tiles[PWD_MAX_NV + 1][4] = {
    {0, 0, 0, 0},
    {pwd_tile_12x1, pwd_tile_4x1, pwd_tile_2x1, pwd_tile_1x1},
#if defined(__AVX512F__)
    {pwd_tile_12x2, pwd_tile_4x2, pwd_tile_2x2, pwd_tile_1x2},
    {pwd_tile_8x3, pwd_tile_4x3, pwd_tile_2x3, pwd_tile_1x3},
#else
    {pwd_tile_6x2, pwd_tile_4x2, pwd_tile_2x2, pwd_tile_1x2},
#endif
};

/* Rows [r0, r1) of one column panel of nv vectors. */
static void pwd_panel(const pwd_job *job, int r0, int r1, int j0, int nv, int last) {
    const pwd_tile_fn *t = pwd_tiles[nv];
    int m = pwd_rows_for_nv[nv], r = r0;
    for (; r + m <= r1; r += m) t[0](job, r, j0, last);
    for (; r + 4 <= r1; r += 4) t[1](job, r, j0, last);
    for (; r + 2 <= r1; r += 2) t[2](job, r, j0, last);
    for (; r < r1; r++) t[3](job, r, j0, last);
}

/* The column panels of a row block: PWD_MAX_NV vectors each, except that a remainder
 * of one vector after at least one full panel is split 2 + 2 on AVX-512 (a 1-vector
 * panel keeps only 12 accumulators busy). */
static void pwd_block(const pwd_job *job, int r0, int r1) {
    int nvec = (job->cout + VLEN - 1) / VLEN;
    int tail = job->cout - (nvec - 1) * VLEN; /* lanes of the last vector */
    int j = 0;                                /* vectors done */
    while (j < nvec) {
        int left = nvec - j;
        int nv = left >= PWD_MAX_NV ? PWD_MAX_NV : left;
        if (PWD_MAX_NV == 3 && left == 4) nv = 2;
        int last = j + nv == nvec ? tail : VLEN;
        pwd_panel(job, r0, r1, j * VLEN, nv, last);
        j += nv;
    }
}

static void pwd_rows(void *p, int begin, int end) {
    const pwd_job *job = p;
    int block = PWD_BLOCK_FLOATS / (job->cin + job->cout);
    block = block < PWD_MIN_BLOCK_ROWS ? PWD_MIN_BLOCK_ROWS : block / 24 * 24;
    for (int r0 = begin; r0 < end; r0 += block) pwd_block(job, r0, end - r0 < block ? end : r0 + block);
}

void op_pwconv_direct(threadpool *tp, const tensor *in, const float *w, const float *bias, act_kind act,
                      tensor *out) {
    pwd_job job = {in->data, w, bias, out->data, in->c, out->c, act};
    threadpool_run(tp, in->h * in->w, PWD_MIN_BLOCK_ROWS, pwd_rows, &job);
}
