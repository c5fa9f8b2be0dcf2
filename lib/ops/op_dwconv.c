/*
 * Depthwise k x k convolution, NHWC. Each output row is swept left to right in blocks
 * of P pixels; inside a block, one channel vector at a time, all P sums stay in
 * registers, every input column vector of the block's window is loaded once and feeds
 * each of the P pixels it touches (a k3 s1 block of 8 needs 30 input loads for 72 FMAs
 * instead of 72), and the activation is applied before the one store. Sweeping the
 * channels innermost reads the k input rows strictly in address order, so they stream
 * through L1 and the hardware prefetchers see plain sequential access.
 *
 * Rows whose whole window is inside the input go in pairs (dw_block_pair: each input
 * row loaded once for both); rows clipped by the top/bottom padding run alone, with
 * fewer kernel rows. The columns whose window crosses the left/right edge run as one
 * unrolled block per side with the padding taps left out (dw_edge), per pixel only
 * where no such block exists. op_dwconv_sum also returns, per output row, the sum of
 * every channel after the activation (what squeeze-and-excitation averages), from the
 * registers.
 */
#include "ops/mathfun.h"
#include <stddef.h>
#include <string.h>

#include "ops/ops.h"

typedef struct {
    const tensor *in;
    const float *w, *bias;
    int k, stride, pad_top, pad_left;
    act_kind act;
    tensor *out;
    float *row_sums; /* NULL, or out->h x c */
    int prefetch;    /* input too big for the caches: prefetch the rows the next output row adds */
    int x_lo, x_hi;  /* output columns [x_lo, x_hi) have their window inside horizontally */
} dwconv_job;

/* Largest block width and kernel size with a register-blocked path. */
#define DW_MAX_P 8
#define DW_MAX_K 5

/* The kernel rows [ky0, ky1) of an output row that lie inside the input. */
typedef struct {
    const float *src; /* input row iy0 + ky0 */
    const float *w;   /* weight row ky0 */
    int nky;          /* ky1 - ky0 */
    int prefetch;     /* prefetch input rows K .. K+S-1 below src (all rows inside) */
} row_window;

/*
 * P interior pixels of one channel vector. src: input at (row ky0, first column of
 * pixel 0's window, this channel vector); w: weights at (ky0, kx 0, this vector);
 * out/sums: this vector's slot of pixel 0 / of the row sums. The window's first J0
 * and last E columns are zero padding (edge blocks; 0 and 0 inside) and are never read.
 * K, S, P, J0, E are literals at every call site, so the column loop unrolls into
 * straight FMAs.
 */
static inline __attribute__((always_inline)) void dw_block(const float *restrict src, size_t row_stride,
                                                           int nky, int prefetch, const float *restrict w,
                                                           vfloat b, int c, act_kind act, float *restrict out,
                                                           float *restrict sums, const int K, const int S,
                                                           const int P, const int J0, const int E) {
    vfloat acc[DW_MAX_P]; /* fixed sizes (not P, K): GCC keeps fixed arrays in registers, VLAs on the stack */
#pragma GCC unroll 8
    for (int p = 0; p < P; p++) acc[p] = b;
    for (int ky = 0; ky < nky; ky++) {
        const float *r = src + ky * row_stride;
        vfloat wk[DW_MAX_K];
#pragma GCC unroll 5
        for (int kx = 0; kx < K; kx++) wk[kx] = vload(w + (size_t)(ky * K + kx) * c);
#pragma GCC unroll 32
        for (int j = 0; j < (P - 1) * S + K; j++) {
            if (j < J0 || j >= (P - 1) * S + K - E) continue; /* zero padding: not in the input */
            vfloat v = vload(r + (ptrdiff_t)j * c);
#pragma GCC unroll 16
            for (int p = 0; p < P; p++) {
                int kx = j - p * S;
                if (kx >= 0 && kx < K) acc[p] = vmadd(v, wk[kx], acc[p]);
            }
        }
    }
    /* The S input rows below this window are what the next output row adds; when they
     * come from DRAM, asking for them now overlaps the wait with this row's work
     * (measured -25% on the 25 MB 256x256x96 k3 s2 input; on inputs that fit in the
     * caches the extra instructions cost more than they save, so only there). */
    if (prefetch)
#pragma GCC unroll 32
        for (int j = 0; j < (P - 1) * S + K; j++)
#pragma GCC unroll 2
            for (int r = 0; r < S; r++) __builtin_prefetch(src + (K + r) * row_stride + (size_t)j * c);
    vfloat total = {0};
#pragma GCC unroll 8
    for (int p = 0; p < P; p++) {
        vfloat y = vact(acc[p], act);
        vstore(out + (size_t)p * c, y);
        total += y;
    }
    if (sums) vstore(sums, vload(sums) + total);
}

/*
 * Two output rows at once (y and y + 1, all K + S input rows inside): each input row
 * is loaded once for both, feeding row y with kernel row i and row y + 1 with kernel
 * row i - S, so a k3 s1 block of 8 pixels makes 144 FMAs from 40 input loads where two
 * single-row blocks load 60, and its 16 accumulators hide the FMA latency better than
 * 8. Each sum still runs over the kernel rows in order, then the columns: the same bits
 * as dw_block. src: input at (row 0 of row y's window, pixel 0's first column, this
 * channel vector); out/sums: row y's slots, row y + 1's are out_stride / c floats on.
 */
static inline __attribute__((always_inline)) void dw_block_pair(const float *restrict src, size_t row_stride,
                                                                const float *restrict w, vfloat b, int c,
                                                                act_kind act, float *restrict out,
                                                                size_t out_stride, float *restrict sums,
                                                                const int K, const int S, const int P) {
    vfloat acc0[DW_MAX_P], acc1[DW_MAX_P];
#pragma GCC unroll 8
    for (int p = 0; p < P; p++) acc0[p] = acc1[p] = b;
#pragma GCC unroll 7
    for (int i = 0; i < K + S; i++) {
        const float *r = src + i * row_stride;
        vfloat w0[DW_MAX_K], w1[DW_MAX_K]; /* kernel rows i (for row y) and i - S (row y + 1) */
#pragma GCC unroll 5
        for (int kx = 0; kx < K; kx++) {
            if (i < K) w0[kx] = vload(w + (size_t)(i * K + kx) * c);
            if (i >= S) w1[kx] = vload(w + (size_t)((i - S) * K + kx) * c);
        }
#pragma GCC unroll 32
        for (int j = 0; j < (P - 1) * S + K; j++) {
            vfloat v = vload(r + (ptrdiff_t)j * c);
            /* One load, used from a register: GCC would fold a load into every FMA. */
            __asm__("" : "+v"(v));
#pragma GCC unroll 16
            for (int p = 0; p < P; p++) {
                int kx = j - p * S;
                if (kx < 0 || kx >= K) continue;
                if (i < K) acc0[p] = vmadd(v, w0[kx], acc0[p]);
                if (i >= S) acc1[p] = vmadd(v, w1[kx], acc1[p]);
            }
        }
    }
    vfloat total0 = {0}, total1 = {0};
#pragma GCC unroll 8
    for (int p = 0; p < P; p++) {
        vfloat y0 = vact(acc0[p], act), y1 = vact(acc1[p], act);
        vstore(out + (size_t)p * c, y0);
        vstore(out + out_stride + (size_t)p * c, y1);
        total0 += y0;
        total1 += y1;
    }
    if (sums) {
        vstore(sums, vload(sums) + total0);
        vstore(sums + c, vload(sums + c) + total1);
    }
}

/* Channels [c0, c) of one pixel with its window clipped to kx in [kx0, kx1), scalar:
 * the channel remainder (c not a multiple of the vector width) of every pixel. */
static void dw_pixel_tail(const row_window *rw, size_t row_stride, const float *restrict bias, int k, int ix0,
                          int kx0, int kx1, int c0, int c, act_kind act, float *restrict out,
                          float *restrict sums) {
    for (int ci = c0; ci < c; ci++) {
        float acc = bias ? bias[ci] : 0.0f;
        for (int ky = 0; ky < rw->nky; ky++)
            for (int kx = kx0; kx < kx1; kx++)
                acc = MADD(rw->src[ky * row_stride + (size_t)(ix0 + kx) * c + ci],
                           rw->w[(ky * k + kx) * c + ci], acc);
        float y = act_scalar(acc, act);
        out[ci] = y;
        if (sums) sums[ci] += y;
    }
}

/* Any pixel, any k: the taps outside the input (zero padding) are left out by clipping
 * the kx range. Used for the edge columns and for kernel sizes without a block path. */
static void dw_pixel_clipped(const row_window *rw, size_t row_stride, int in_w, const float *restrict bias,
                             int k, int ix0, int c, act_kind act, float *restrict out, float *restrict sums) {
    int kx0 = ix0 < 0 ? -ix0 : 0, kx1 = in_w - ix0 < k ? in_w - ix0 : k;
    int cv = c - c % VLEN;
    for (int ci = 0; ci < cv; ci += VLEN) {
        vfloat acc = {0};
        if (bias) acc = vload(bias + ci);
        for (int ky = 0; ky < rw->nky; ky++)
            for (int kx = kx0; kx < kx1; kx++)
                acc = vmadd(vload(rw->src + ky * row_stride + (size_t)(ix0 + kx) * c + ci),
                            vload(rw->w + (size_t)(ky * k + kx) * c + ci), acc);
        vfloat y = vact(acc, act);
        vstore(out + ci, y);
        if (sums) vstore(sums + ci, vload(sums + ci) + y);
    }
    dw_pixel_tail(rw, row_stride, bias, k, ix0, kx0, kx1, cv, c, act, out, sums);
}

/* Channels per sweep of a row: their k*k weight vectors (25 x 128 floats = 12.5 KB at
 * k5) stay in L1 while the row is swept, instead of all c channels' weights (115 KB at
 * c = 1152) cycling through L1 once per block of pixels. */
#define DW_CHANNEL_GROUP 128

/* Output columns x0 .. x0 + P - 1 (all interior), channel vectors [c0, c1), of one row
 * or (ROWS = 2: rw is row y's whole window, dw_block_pair) of rows y and y + 1. */
static inline __attribute__((always_inline)) void dw_columns(const dwconv_job *job, const row_window *rw,
                                                             size_t row_stride, int x0, int c0, int c1,
                                                             float *restrict orow, float *restrict sums,
                                                             const int K, const int S, const int P,
                                                             const int ROWS) {
    int c = job->in->c;
    int ix0 = x0 * S - job->pad_left;
    const float *src = rw->src + (ptrdiff_t)ix0 * c;
    float *out = orow + (size_t)x0 * c;
    for (int ci = c0; ci < c1; ci += VLEN) {
        vfloat b = {0};
        if (job->bias) b = vload(job->bias + ci);
        if (ROWS == 2)
            dw_block_pair(src + ci, row_stride, rw->w + ci, b, c, job->act, out + ci, (size_t)job->out->w * c,
                          sums ? sums + ci : NULL, K, S, P);
        else
            dw_block(src + ci, row_stride, rw->nky, rw->prefetch, rw->w + ci, b, c, job->act, out + ci,
                     sums ? sums + ci : NULL, K, S, P, 0, 0);
    }
}

/* The interior columns [x_lo, x_hi) of one output row (or row pair), one channel group
 * at a time: blocks of 8 pixels, then 4, 2, 1. The scalar channel remainder is
 * interior_tail's, per row. */
static inline __attribute__((always_inline)) void dw_interior(const dwconv_job *job, const row_window *rw,
                                                              size_t row_stride, float *orow, float *sums,
                                                              const int K, const int S, const int ROWS) {
    int c = job->in->c;
    int cv = c - c % VLEN;
    for (int c0 = 0; c0 < cv; c0 += DW_CHANNEL_GROUP) {
        int c1 = cv - c0 < DW_CHANNEL_GROUP ? cv : c0 + DW_CHANNEL_GROUP;
        int x = job->x_lo, end = job->x_hi;
        for (; x + 8 <= end; x += 8) dw_columns(job, rw, row_stride, x, c0, c1, orow, sums, K, S, 8, ROWS);
        if (x + 4 <= end) {
            dw_columns(job, rw, row_stride, x, c0, c1, orow, sums, K, S, 4, ROWS);
            x += 4;
        }
        if (x + 2 <= end) {
            dw_columns(job, rw, row_stride, x, c0, c1, orow, sums, K, S, 2, ROWS);
            x += 2;
        }
        if (x < end) dw_columns(job, rw, row_stride, x, c0, c1, orow, sums, K, S, 1, ROWS);
    }
}

typedef void (*interior_fn)(const dwconv_job *, const row_window *, size_t, float *, float *);

/* One row and row-pair instance per kernel size and stride with a block path. */
#define DW_INTERIOR(K, S)                                                                                    \
    static void dw_row_k##K##s##S(const dwconv_job *j, const row_window *rw, size_t rs, float *o,            \
                                  float *s) {                                                                \
        dw_interior(j, rw, rs, o, s, K, S, 1);                                                               \
    }                                                                                                        \
    static void dw_pair_k##K##s##S(const dwconv_job *j, const row_window *rw, size_t rs, float *o,           \
                                   float *s) {                                                               \
        dw_interior(j, rw, rs, o, s, K, S, 2);                                                               \
    }
DW_INTERIOR(3, 1)
DW_INTERIOR(3, 2)
DW_INTERIOR(5, 1)
DW_INTERIOR(5, 2)

/* The interior sweep of one row (rows = 1) or row pair (2), or NULL (no block path). */
static interior_fn pick_interior(int k, int stride, int rows) {
    static const struct {
        int k, stride;
        interior_fn row, pair;
    } paths[] = {{3, 1, dw_row_k3s1, dw_pair_k3s1},
                 {3, 2, dw_row_k3s2, dw_pair_k3s2},
                 {5, 1, dw_row_k5s1, dw_pair_k5s1},
                 {5, 2, dw_row_k5s2, dw_pair_k5s2}};
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++)
        if (paths[i].k == k && paths[i].stride == stride) return rows == 2 ? paths[i].pair : paths[i].row;
    return NULL;
}

/*
 * The edge columns: the P pixels left of x_lo (or right of x_hi) as one block whose
 * window starts J0 columns before the input (ends E columns past it), so they get the
 * interior's unrolled FMAs, with the padding taps left out, instead of the per-pixel
 * loops of dw_pixel_clipped (25% of the columns of a 16x16 k5 layer are edges). The
 * taps are summed in the same order either way.
 */
typedef void (*edge_fn)(const dwconv_job *job, const row_window *rw, size_t row_stride, int x0,
                        float *restrict orow, float *restrict sums);

static inline __attribute__((always_inline)) void dw_edge(const dwconv_job *job, const row_window *rw,
                                                          size_t row_stride, int x0, float *restrict orow,
                                                          float *restrict sums, const int K, const int S,
                                                          const int P, const int J0, const int E) {
    int c = job->in->c, cv = c - c % VLEN;
    int ix0 = x0 * S - job->pad_left; /* may be < 0: column J0 is the first one read */
    float *out = orow + (size_t)x0 * c;
    for (int ci = 0; ci < cv; ci += VLEN) {
        vfloat b = {0};
        if (job->bias) b = vload(job->bias + ci);
        dw_block(rw->src + (ptrdiff_t)ix0 * c + ci, row_stride, rw->nky, 0, rw->w + ci, b, c, job->act,
                 out + ci, sums ? sums + ci : NULL, K, S, P, J0, E);
    }
    if (cv < c)
        for (int p = 0; p < P; p++) {
            int ixp = ix0 + p * S, kx0 = ixp < 0 ? -ixp : 0,
                kx1 = job->in->w - ixp < K ? job->in->w - ixp : K;
            dw_pixel_tail(rw, row_stride, job->bias, K, ixp, kx0, kx1, cv, c, job->act, out + (size_t)p * c,
                          sums);
        }
}

/* One instance per (k, stride, pixels, padding columns) that EfficientDet's layers have:
 * TF "SAME" and symmetric padding, k3 and k5, stride 1 and 2 (P = 2 only at stride 1,
 * where a k5 window overhangs by 2 for two pixels). */
#define DW_EDGE(K, S, P, J0, E)                                                                              \
    static void dw_edge_k##K##s##S##p##P##l##J0##r##E(const dwconv_job *j, const row_window *rw, size_t rs,  \
                                                      int x0, float *o, float *s) {                          \
        dw_edge(j, rw, rs, x0, o, s, K, S, P, J0, E);                                                        \
    }
DW_EDGE(3, 1, 1, 1, 0)
DW_EDGE(3, 1, 1, 0, 1)
DW_EDGE(3, 2, 1, 1, 0)
DW_EDGE(3, 2, 1, 0, 1)
DW_EDGE(5, 1, 2, 2, 0)
DW_EDGE(5, 1, 2, 0, 2)
DW_EDGE(5, 2, 1, 1, 0)
DW_EDGE(5, 2, 1, 2, 0)
DW_EDGE(5, 2, 1, 0, 1)
DW_EDGE(5, 2, 1, 0, 2)

typedef struct {
    int k, stride, pixels, j0, e;
    edge_fn fn;
} edge_variant;

static const edge_variant edge_variants[] = {
    {3, 1, 1, 1, 0, dw_edge_k3s1p1l1r0}, {3, 1, 1, 0, 1, dw_edge_k3s1p1l0r1},
    {3, 2, 1, 1, 0, dw_edge_k3s2p1l1r0}, {3, 2, 1, 0, 1, dw_edge_k3s2p1l0r1},
    {5, 1, 2, 2, 0, dw_edge_k5s1p2l2r0}, {5, 1, 2, 0, 2, dw_edge_k5s1p2l0r2},
    {5, 2, 1, 1, 0, dw_edge_k5s2p1l1r0}, {5, 2, 1, 2, 0, dw_edge_k5s2p1l2r0},
    {5, 2, 1, 0, 1, dw_edge_k5s2p1l0r1}, {5, 2, 1, 0, 2, dw_edge_k5s2p1l0r2},
};

/* The block for output columns [x0, x1), or NULL (dw_pixel_clipped then takes them). */
static edge_fn pick_edge(const dwconv_job *job, int x0, int x1) {
    int k = job->k, s = job->stride, pixels = x1 - x0;
    int ix0 = x0 * s - job->pad_left, span = (pixels - 1) * s + k;
    int j0 = ix0 < 0 ? -ix0 : 0, e = ix0 + span > job->in->w ? ix0 + span - job->in->w : 0;
    if (pixels <= 0 || (j0 && e)) return NULL;
    for (size_t i = 0; i < sizeof edge_variants / sizeof edge_variants[0]; i++) {
        const edge_variant *v = &edge_variants[i];
        if (v->k == k && v->stride == s && v->pixels == pixels && v->j0 == j0 && v->e == e) return v->fn;
    }
    return NULL;
}

/* Output row y: its kernel rows inside the input, and where its output and row sums go
 * (the sums zeroed). */
typedef struct {
    row_window rw;
    float *out, *sums;
} out_row;

static out_row start_row(const dwconv_job *job, int y) {
    const tensor *in = job->in;
    int c = in->c, k = job->k, s = job->stride;
    size_t row_stride = (size_t)in->w * c;
    int iy0 = y * s - job->pad_top;
    int ky0 = iy0 < 0 ? -iy0 : 0, ky1 = in->h - iy0 < k ? in->h - iy0 : k;
    out_row r = {{in->data + (ptrdiff_t)(iy0 + ky0) * row_stride, job->w + (size_t)ky0 * k * c,
                  ky1 > ky0 ? ky1 - ky0 : 0, job->prefetch && ky0 == 0 && iy0 + k + s <= in->h},
                 job->out->data + (size_t)y * job->out->w * c,
                 job->row_sums ? job->row_sums + (size_t)y * c : NULL};
    if (r.sums) memset(r.sums, 0, (size_t)c * sizeof *r.sums);
    return r;
}

/* The columns left of x_lo (left = 1) or right of the interior, as a block or per pixel. */
static void edge_columns(const dwconv_job *job, const out_row *r, edge_fn block, int x0, int x1) {
    size_t row_stride = (size_t)job->in->w * job->in->c;
    if (block) {
        block(job, &r->rw, row_stride, x0, r->out, r->sums);
        return;
    }
    for (int x = x0; x < x1; x++)
        dw_pixel_clipped(&r->rw, row_stride, job->in->w, job->bias, job->k, x * job->stride - job->pad_left,
                         job->in->c, job->act, r->out + (size_t)x * job->in->c, r->sums);
}

/* The scalar channel remainder of the interior columns, after dw_interior's vectors. */
static void interior_tail(const dwconv_job *job, const out_row *r) {
    int c = job->in->c, cv = c - c % VLEN;
    if (cv == c) return;
    for (int x = job->x_lo; x < job->x_hi; x++)
        dw_pixel_tail(&r->rw, (size_t)job->in->w * c, job->bias, job->k, x * job->stride - job->pad_left, 0,
                      job->k, cv, c, job->act, r->out + (size_t)x * c, r->sums);
}

/* Rows go in pairs (dw_block_pair) where both have their whole window inside the input;
 * every row sum still adds its left edge, interior, right edge in that order, so how
 * rows pair up (thread split, bands) never changes a bit. */
static void dwconv_rows(void *p, int begin, int end) {
    const dwconv_job *job = p;
    const tensor *in = job->in;
    const tensor *out = job->out;
    int k = job->k, s = job->stride;
    size_t row_stride = (size_t)in->w * in->c;
    interior_fn interior = pick_interior(k, s, 1);
    interior_fn pair = job->prefetch ? NULL : pick_interior(k, s, 2);
    int x_lo = interior ? job->x_lo : out->w, x_hi = interior ? job->x_hi : out->w;
    int x_right = x_hi > x_lo ? x_hi : x_lo;
    edge_fn left = interior ? pick_edge(job, 0, x_lo) : NULL;
    edge_fn right = interior ? pick_edge(job, x_right, out->w) : NULL;
    for (int y = begin; y < end; y++) {
        int iy0 = y * s - job->pad_top;
        out_row r0 = start_row(job, y);
        if (pair && x_hi > x_lo && y + 1 < end && iy0 >= 0 && iy0 + k + s <= in->h) {
            out_row r1 = start_row(job, y + 1);
            edge_columns(job, &r0, left, 0, x_lo);
            edge_columns(job, &r1, left, 0, x_lo);
            pair(job, &r0.rw, row_stride, r0.out, r0.sums); /* r0's window: all k rows, from iy0 */
            interior_tail(job, &r0);
            interior_tail(job, &r1);
            edge_columns(job, &r0, right, x_right, out->w);
            edge_columns(job, &r1, right, x_right, out->w);
            y++;
            continue;
        }
        edge_columns(job, &r0, left, 0, x_lo);
        if (x_hi > x_lo) {
            interior(job, &r0.rw, row_stride, r0.out, r0.sums);
            interior_tail(job, &r0);
        }
        edge_columns(job, &r0, right, x_right, out->w);
    }
}

/* Output columns [lo, hi) whose window x*s - pad .. x*s - pad + k - 1 is inside [0, w). */
static void interior_columns(int in_w, int out_w, int k, int stride, int pad, int *lo, int *hi) {
    int first = (pad + stride - 1) / stride;
    int last_start = in_w - k + pad; /* largest x*s with the window's right edge inside */
    int end = last_start < 0 ? 0 : last_start / stride + 1;
    if (first > out_w) first = out_w;
    if (end > out_w) end = out_w;
    if (end < first) end = first;
    *lo = first;
    *hi = end;
}

void op_dwconv_sum(threadpool *tp, const tensor *in, const float *w, const float *bias, int k, int stride,
                   int pad_top, int pad_left, act_kind act, tensor *out, float *row_sums) {
    /* Bigger than a core's share of L3 here (the copy rate halves past ~16 MB). */
    int prefetch = tensor_numel(in) * sizeof(float) > ((size_t)16 << 20);
    dwconv_job job = {in, w, bias, k, stride, pad_top, pad_left, act, out, row_sums, prefetch, 0, 0};
    interior_columns(in->w, out->w, k, stride, pad_left, &job.x_lo, &job.x_hi);
    size_t row_work = (size_t)out->w * out->c * k * k;
    int grain = (int)(65536 / (row_work ? row_work : 1)) + 1;
    threadpool_run(tp, out->h, grain, dwconv_rows, &job);
}

void op_dwconv(threadpool *tp, const tensor *in, const float *w, const float *bias, int k, int stride,
               int pad_top, int pad_left, act_kind act, tensor *out) {
    op_dwconv_sum(tp, in, w, bias, k, stride, pad_top, pad_left, act, out, NULL);
}
