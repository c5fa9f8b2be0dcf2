/*
 * Expand + depthwise in bands (mbconv_bands.h). The expanded tensor is the largest
 * activation of the network (D0's first stage-2 block: 256 x 256 x 96 floats, 24 MiB),
 * written once and read once; made a few rows at a time it never leaves the core's L2,
 * which saves the arena that memory and the pass two trips to DRAM.
 *
 * A band of `rows` output rows needs expanded rows [y0 * s - pad, (y1 - 1) * s - pad + k)
 * of the input. Consecutive bands overlap by k - s rows: those are moved to the top of
 * the band buffer rather than computed again, so each thread expands every row of its
 * share once (plus the k - s rows at its share's start). The depthwise kernel then runs
 * on the band as if it were the whole input, with the top padding adjusted: it already
 * treats rows outside its input as zero padding, which they are exactly at the edges.
 */
#include <string.h>

#include "core/mbconv_bands.h"
#include "core/pointwise.h"

/* About half of a 1-2 MB L2: the band, the input rows it reads and the depthwise output
 * it writes all pass through it. */
#define MBCONV_BAND_BYTES ((size_t)512 << 10)

band_shape mbconv_band_shape(int in_w, int mid, const conv_geom *g) {
    size_t row_bytes = (size_t)in_w * mid * sizeof(float);
    int fit = (int)(MBCONV_BAND_BYTES / (row_bytes ? row_bytes : 1)); /* expanded rows that fit */
    int rows = fit >= g->k ? (fit - g->k) / g->stride + 1 : 1;
    if (rows > g->out_h) rows = g->out_h;
    if (rows < 1) rows = 1;
    band_shape bs = {rows, (rows - 1) * g->stride + g->k, 0};
    bs.floats = (size_t)bs.in_rows * in_w * mid;
    return bs;
}

/* Where a band's depthwise input rows come from: the block's expansion 1x1 of x, or (the
 * first block, depthwise-separable) the stem conv of the image. */
typedef enum { FROM_EXPANSION, FROM_STEM } band_source;

typedef struct {
    const effdet_context *ctx;
    band_source source;
    const tensor *x;          /* expansion: the block input; stem: the network input */
    const pw_layer *expand;   /* expansion: the 1x1 (in the model's precision: core/pointwise.h) */
    const float *pw_w, *pw_b; /* stem: its conv */
    conv_geom stem;           /* stem: its window over x */
    int in_h, in_w, mid;      /* the depthwise input (expanded tensor or stem output) */
    const dw_layer *dw;
    const conv_geom *g;
    band_shape bs;
    float *bands;
    tensor *d;
    float *row_sums;
    int nthreads;
} band_job;

/* Rows [lo, hi) of t, as a tensor view. */
static tensor rows_of(const tensor *t, int lo, int hi) {
    tensor v = {t->data + (size_t)lo * t->w * t->c, hi - lo, t->w, t->c, 0};
    return v;
}

/* Depthwise input rows [lo, hi) into dst (hi - lo rows of in_w x mid). */
static void produce_rows(const band_job *j, int lo, int hi, float *dst) {
    tensor out = {dst, hi - lo, j->in_w, j->mid, 0};
    if (j->source == FROM_EXPANSION) {
        tensor src = rows_of(j->x, lo, hi);
        pointwise_run(j->ctx, NULL, &src, j->expand, ACT_SWISH, &out);
        return;
    }
    /* The stem's input rows for output rows [lo, hi), clipped to the image; the top
     * padding shrinks by what the clip removed, as for the depthwise band. */
    const conv_geom *s = &j->stem;
    int first = lo * s->stride - s->pad_top, in_lo = first > 0 ? first : 0;
    int in_hi = (hi - 1) * s->stride - s->pad_top + s->k;
    if (in_hi > j->x->h) in_hi = j->x->h;
    tensor src = rows_of(j->x, in_lo, in_hi);
    j->ctx->k->conv2d(NULL, &src, j->pw_w, j->pw_b, s->k, s->stride, s->pad_top + in_lo - lo * s->stride,
                      s->pad_left, ACT_SWISH, &out);
}

/* One thread's share: output rows [y_begin, y_end), band by band. The buffer holds
 * depthwise input rows [have_lo, have_hi) from its first row. */
static void sweep_share(const band_job *j, float *buf, int y_begin, int y_end) {
    const conv_geom *g = j->g;
    const int s = g->stride;
    const size_t row_floats = (size_t)j->in_w * j->mid;
    int have_lo = 0, have_hi = 0;
    for (int y0 = y_begin; y0 < y_end; y0 += j->bs.rows) {
        int y1 = y0 + j->bs.rows < y_end ? y0 + j->bs.rows : y_end;
        int first = y0 * s - g->pad_top, lo = first > 0 ? first : 0;
        int hi = (y1 - 1) * s - g->pad_top + g->k;
        if (hi > j->in_h) hi = j->in_h;
        /* keep the rows the previous band already produced */
        int kept_hi = have_lo <= lo && lo < have_hi ? have_hi : lo;
        if (kept_hi > lo && lo > have_lo)
            memmove(buf, buf + (size_t)(lo - have_lo) * row_floats, (size_t)(kept_hi - lo) * row_floats * sizeof *buf);
        if (hi > kept_hi) produce_rows(j, kept_hi, hi, buf + (size_t)(kept_hi - lo) * row_floats);
        have_lo = lo;
        have_hi = hi > kept_hi ? hi : kept_hi;
        tensor band = {buf, have_hi - lo, j->in_w, j->mid, 0};
        tensor out = rows_of(j->d, y0, y1);
        j->ctx->k->dwconv_sum(NULL, &band, j->dw->w, j->dw->b, g->k, s, g->pad_top + lo - y0 * s, g->pad_left,
                              ACT_SWISH, &out, j->row_sums + (size_t)y0 * j->mid);
    }
}

static void sweep_thread(void *arg, int begin, int end) {
    const band_job *j = arg;
    int h = j->d->h;
    for (int t = begin; t < end; t++)
        sweep_share(j, j->bands + (size_t)t * j->bs.floats, (int)((long long)h * t / j->nthreads),
                    (int)((long long)h * (t + 1) / j->nthreads));
}

static void sweep(effdet_context *ctx, band_job *j) {
    j->ctx = ctx;
    j->nthreads = threadpool_size(ctx->tp);
    threadpool_run(ctx->tp, j->nthreads, 1, sweep_thread, j);
}

void mbconv_expand_dw(effdet_context *ctx, const tensor *x, const block_layers *bl, const conv_geom *g,
                      band_shape bs, float *bands, tensor *d, float *row_sums) {
    band_job j = {.source = FROM_EXPANSION, .x = x, .expand = &bl->expand,
                  .in_h = x->h, .in_w = x->w, .mid = bl->spec.mid_ch, .dw = &bl->dw, .g = g, .bs = bs,
                  .bands = bands, .d = d, .row_sums = row_sums};
    sweep(ctx, &j);
}

void mbconv_stem_dw(effdet_context *ctx, const tensor *image, const conv_layer *stem, const conv_geom *sg,
                    const block_layers *bl, const conv_geom *g, band_shape bs, float *bands, tensor *d,
                    float *row_sums) {
    band_job j = {.source = FROM_STEM, .x = image, .pw_w = stem->w, .pw_b = stem->b, .stem = *sg,
                  .in_h = sg->out_h, .in_w = sg->out_w, .mid = stem->cout, .dw = &bl->dw, .g = g, .bs = bs,
                  .bands = bands, .d = d, .row_sums = row_sums};
    sweep(ctx, &j);
}
