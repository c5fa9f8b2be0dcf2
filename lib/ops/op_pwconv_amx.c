/*
 * The bf16 precision mode's 1x1 convolution on AMX tiles (TDPBF16PS): the same
 * arithmetic as op_pwconv_bf16 (inputs rounded to bf16 to nearest even, kernels.h's
 * packed bf16 weights, fp32 sums, bias and activation in fp32), with the multiply-adds
 * done 16 x 16 x 32 at a time by the tile unit.
 *
 *   A tile: 16 input rows x 16 channel pairs (64 bytes of bf16 per row),
 *   B tile: 16 channel pairs x 16 output columns, one 32-bit pair per column: exactly
 *           one 16 x 16-word block of the packed weights, which is why kernels.h pads
 *           the pairs to a multiple of 16,
 *   C tile: 16 rows x 16 columns of fp32 sums.
 *
 * A block of 32 rows x 32 columns keeps 4 C tiles (tmm0-3) and loads 2 A (tmm4-5) and
 * 2 B tiles (tmm6-7) per 16 pairs: 4 TDPBF16PS per 4 tile loads. The block's rows are
 * first rounded into a bf16 buffer on this thread's stack, zero past cin (the padded
 * pairs) and past the last row (a short block computes zero rows it never stores);
 * the C tiles go through a 4 KB buffer for the fp32 epilogue (bias, activation, masked
 * stores of the cout remainder).
 *
 * The instructions come from amx.h: the real ones here; with EFFDET_AMX_EMULATE (the
 * avx512 kernel test's copy) the same code runs on an emulation of the tile unit. The
 * caller has made sure the process may use AMX (core/amx.c: arch_prctl) and that this
 * CPU has it; only the avx512 level builds the kernel.
 */
#include "ops/ops.h"

#if defined(__AVX512F__)
#include <immintrin.h>

#include "ops/amx.h"
#include "ops/bf16_rows.h"
#include "ops/mathfun.h"

#ifdef EFFDET_AMX_EMULATE
#undef op_pwconv_amx
#define op_pwconv_amx op_pwconv_amx_emulated
#endif

#define AMX_TILE_ROWS 16
#define AMX_TILE_COLS 16 /* fp32 columns of a C tile, 32-bit pairs of a B tile */
#define AMX_BLOCK_ROWS 32
#define AMX_BLOCK_COLS 32
/* The bf16 rows of one block: 32 rows of up to 2048 channels, or 16 rows of 4096. */
#define AMX_BUF_BYTES ((size_t)128 << 10)
#define AMX_MIN_ROWS 64 /* per thread: below that a fork/join costs more than the work */

/* Every tile 16 rows x 64 bytes: the A, B and C shapes above. */
static const amx_tilecfg amx_full_tiles = {
    .palette_id = 1,
    .colsb = {64, 64, 64, 64, 64, 64, 64, 64},
    .rows = {16, 16, 16, 16, 16, 16, 16, 16},
};

/* Input rows [r0, r0 + n) rounded to bf16 into a (row i at a + i * kp * 2 words), each
 * zero from cin to its padded end, and rows [n, padded_rows) all zero. */
AMX_FN static void round_rows(const bf16_job *job, int r0, int n, int padded_rows, uint16_t *a) {
    const int words = job->kp * 2;
    for (int i = 0; i < padded_rows; i++) {
        uint16_t *dst = a + (size_t)i * words;
        int c = i < n ? job->cin : 0;
        if (i < n) bf16_round_span(job->in + (size_t)(r0 + i) * job->cin, (size_t)c, dst);
        memset(dst + c, 0, (size_t)(words - c) * sizeof *dst);
    }
}

/* Rows [r0, r0 + n) x columns [j, j + cols) of the output from the C tiles' sums in c
 * (AMX_BLOCK_COLS floats per row): bias, activation, stores masked past cout. */
AMX_FN static void store_block(const bf16_job *job, const float *c, int r0, int n, int j, int cols) {
    int valid = job->cout - j < cols ? job->cout - j : cols;
    for (int i = 0; i < n; i++) {
        float *o = job->out + (size_t)(r0 + i) * job->cout + j;
        for (int v = 0; v * 16 < valid; v++) {
            int lanes = valid - v * 16 < 16 ? valid - v * 16 : 16;
            vfloat y = vload(c + (size_t)i * AMX_BLOCK_COLS + v * 16);
            if (job->bias) y = y + load_part(job->bias + j + v * 16, lanes);
            y = vact(y, job->act);
            if (lanes == 16)
                vstore(o + v * 16, y);
            else
                store_part(o + v * 16, y, lanes);
        }
    }
}

/*
 * Rows [r0, r0 + n), n <= 32, already rounded into a: every 32-column block of the
 * output. The second row tile (tmm5, C tiles 2-3) runs only when n > 16, the second
 * column tile (tmm7, C tiles 1 and 3) only when the padded cout has 16 more columns.
 */
AMX_FN static void tile_rows(const bf16_job *job, const uint16_t *a, int r0, int n, float *c) {
    const long a_stride = (long)job->kp * 4, b_stride = (long)job->cout16 * 4;
    const uint16_t *a_lo = a, *a_hi = a + (size_t)AMX_TILE_ROWS * job->kp * 2;
    const int two_rows = n > AMX_TILE_ROWS;
    for (int j = 0; j < job->cout16; j += AMX_BLOCK_COLS) {
        const int two_cols = j + AMX_TILE_COLS < job->cout16;
        amx_zero(0);
        amx_zero(1);
        amx_zero(2);
        amx_zero(3);
        for (int p = 0; p < job->kp; p += 16) {
            const uint16_t *b = job->w + ((size_t)p * job->cout16 + j) * 2;
            amx_load(4, a_lo + (size_t)p * 2, a_stride);
            amx_load(6, b, b_stride);
            if (two_cols) amx_load(7, b + AMX_TILE_COLS * 2, b_stride);
            amx_dpbf16(0, 4, 6);
            if (two_cols) amx_dpbf16(1, 4, 7);
            if (two_rows) {
                amx_load(5, a_hi + (size_t)p * 2, a_stride);
                amx_dpbf16(2, 5, 6);
                if (two_cols) amx_dpbf16(3, 5, 7);
            }
        }
        const long c_stride = AMX_BLOCK_COLS * sizeof(float);
        float *c_hi = c + AMX_TILE_ROWS * AMX_BLOCK_COLS;
        amx_store(0, c, c_stride);
        if (two_cols) amx_store(1, c + AMX_TILE_COLS, c_stride);
        if (two_rows) {
            amx_store(2, c_hi, c_stride);
            if (two_cols) amx_store(3, c_hi + AMX_TILE_COLS, c_stride);
        }
        store_block(job, c, r0, n, j, two_cols ? AMX_BLOCK_COLS : AMX_TILE_COLS);
    }
}

AMX_FN static void amx_rows(void *p, int begin, int end) {
    const bf16_job *job = p;
    uint16_t a[AMX_BUF_BYTES / sizeof(uint16_t)] __attribute__((aligned(64)));
    float c[AMX_BLOCK_ROWS * AMX_BLOCK_COLS] __attribute__((aligned(64)));
    const size_t row_bytes = (size_t)job->kp * 4;
    const int block = row_bytes * AMX_BLOCK_ROWS <= AMX_BUF_BYTES ? AMX_BLOCK_ROWS : AMX_TILE_ROWS;
    amx_config(&amx_full_tiles);
    for (int r0 = begin; r0 < end; r0 += block) {
        int n = end - r0 < block ? end - r0 : block;
        round_rows(job, r0, n, n > AMX_TILE_ROWS ? AMX_BLOCK_ROWS : AMX_TILE_ROWS, a);
        tile_rows(job, a, r0, n, c); /* amx_load orders its loads after these stores (amx.h) */
    }
    amx_release();
}

void op_pwconv_amx(threadpool *tp, const tensor *in, const uint16_t *wbf, const float *bias, act_kind act,
                   tensor *out) {
    /* 16 rows of a wider input would not fit the row buffer (EfficientDet's widest
     * bf16 1x1 input is 3456 channels). */
    if ((size_t)bf16_pairs_padded(in->c) * 4 * AMX_TILE_ROWS > AMX_BUF_BYTES) {
        op_pwconv_bf16(tp, in, wbf, bias, act, out);
        return;
    }
    bf16_job job = bf16_job_of(in, wbf, bias, act, out, bf16_pairs_padded(in->c));
    threadpool_run(tp, in->h * in->w, AMX_MIN_ROWS, amx_rows, &job);
}
#else
typedef int op_pwconv_amx_not_at_this_level;
#endif
