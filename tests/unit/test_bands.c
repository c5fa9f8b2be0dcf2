/*
 * The band sweep (lib/core/mbconv_bands.c) against the unfused ops it replaces: expand
 * 1x1 + swish over the whole tensor, then depthwise + swish with row sums (and likewise
 * the stem conv + depthwise). Run at every kernel level this CPU has, for k 3/5, stride
 * 1/2, both padding styles, widths and channel counts that leave vector remainders,
 * band sizes from one row to the whole share, and 1, 2 and 3 threads. The per-pixel
 * arithmetic is the same in a band as in the whole tensor, so the results must be equal
 * bit for bit wherever the 1x1 is our own kernel; where a level's table picks OpenBLAS
 * (its blocking depends on the row count) to 1e-6 relative.
 */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/context.h"
#include "core/cpu.h"
#include "core/mbconv_bands.h"
#include "testutil.h"

static uint32_t rng = 4242u;

static float *random_floats(size_t n, float lo, float hi) {
    return tu_random_floats(n, lo, hi, &rng);
}

typedef struct {
    int h, w, cin, mid, k, stride;
    pad_mode pad;
} band_case;

static const band_case cases[] = {
    {37, 29, 16, 96, 3, 2, PAD_TF_SAME}, {33, 31, 24, 40, 3, 1, PAD_TF_SAME}, {20, 19, 40, 72, 5, 2, PAD_TF_SAME},
    {18, 17, 16, 48, 5, 1, PAD_TF_SAME}, {23, 21, 8, 33, 3, 2, PAD_SYMMETRIC}, {17, 16, 12, 20, 5, 1, PAD_SYMMETRIC},
    {5, 4, 16, 32, 5, 2, PAD_TF_SAME},   {1, 7, 8, 16, 3, 1, PAD_TF_SAME},
};

/* The band shape for a budget of `rows` output rows (the real one is sized from bytes). */
static band_shape shape_with_rows(int rows, const conv_geom *g, int in_w, int mid) {
    band_shape bs = {rows, (rows - 1) * g->stride + g->k, 0};
    bs.floats = (size_t)bs.in_rows * in_w * mid;
    return bs;
}

static void check_case(const kernel_table *k, const band_case *c, int threads, int band_rows, int from_stem) {
    effdet_context ctx;
    memset(&ctx, 0, sizeof ctx);
    ctx.k = k;
    ctx.tp = threads > 1 ? threadpool_create(threads) : NULL;
    int T = threadpool_size(ctx.tp);

    /* stem: x is an image (cin = 3) and the depthwise input is its 3x3 s2 conv output */
    conv_geom sg = arch_conv_geom(c->pad, c->h, c->w, 3, 2);
    int in_h = from_stem ? sg.out_h : c->h, in_w = from_stem ? sg.out_w : c->w, cin = from_stem ? 3 : c->cin;
    tensor x = {random_floats((size_t)c->h * c->w * cin, -2, 2), c->h, c->w, cin, 0};
    conv_layer stem = {0};
    block_layers bl;
    memset(&bl, 0, sizeof bl);
    float *pw_w = random_floats((size_t)cin * 9 * c->mid, -0.3f, 0.3f), *pw_b = random_floats((size_t)c->mid, -0.1f, 0.1f);
    if (from_stem) {
        stem.w = pw_w, stem.b = pw_b, stem.k = 3, stem.stride = 2, stem.cout = c->mid;
        bl.spec.type = BLOCK_DS;
    } else {
        bl.expand.w = pw_w, bl.expand.b = pw_b;
        bl.spec.type = BLOCK_IR;
    }
    bl.spec.mid_ch = c->mid;
    bl.dw.w = random_floats((size_t)c->k * c->k * c->mid, -0.5f, 0.5f);
    bl.dw.b = random_floats((size_t)c->mid, -0.1f, 0.1f);
    bl.dw.k = c->k, bl.dw.stride = c->stride;
    conv_geom g = arch_conv_geom(c->pad, in_h, in_w, c->k, c->stride);

    /* unfused */
    tensor e = {malloc((size_t)in_h * in_w * c->mid * sizeof(float)), in_h, in_w, c->mid, 0};
    if (from_stem)
        k->conv2d(NULL, &x, stem.w, stem.b, 3, 2, sg.pad_top, sg.pad_left, ACT_SWISH, &e);
    else
        k->pwconv(NULL, &x, bl.expand.w, bl.expand.b, ACT_SWISH, &e);
    size_t nd = (size_t)g.out_h * g.out_w * c->mid, ns = (size_t)g.out_h * c->mid;
    tensor d_ref = {malloc(nd * sizeof(float)), g.out_h, g.out_w, c->mid, 0};
    float *sums_ref = malloc(ns * sizeof(float));
    k->dwconv_sum(NULL, &e, bl.dw.w, bl.dw.b, c->k, c->stride, g.pad_top, g.pad_left, ACT_SWISH, &d_ref, sums_ref);

    /* fused */
    band_shape bs = band_rows ? shape_with_rows(band_rows, &g, in_w, c->mid) : mbconv_band_shape(in_w, c->mid, &g);
    float *bands = malloc(bs.floats * (size_t)T * sizeof(float));
    tensor d = {malloc(nd * sizeof(float)), g.out_h, g.out_w, c->mid, 0};
    float *sums = malloc(ns * sizeof(float));
    /* NaN where the sweep must write: a row or sum it skips compares as NaN, not 0. */
    for (size_t i = 0; i < nd; i++) d.data[i] = NAN;
    for (size_t i = 0; i < ns; i++) sums[i] = NAN;
    if (from_stem)
        mbconv_stem_dw(&ctx, &x, &stem, &sg, &bl, &g, bs, bands, &d, sums);
    else
        mbconv_expand_dw(&ctx, &x, &bl, &g, bs, bands, &d, sums);

    double tol = 0; /* our 1x1 kernel and the conv/dw kernels: the same sums in the same order */
    if (!from_stem && strcmp(k->isa, "avx512") != 0) tol = 1e-6; /* the table may pick OpenBLAS */
    double dd = tu_rel_err(d.data, d_ref.data, nd), ds = tu_rel_err(sums, sums_ref, ns); /* NaN-aware */
    ck_assert_msg(dd <= tol && ds <= tol,
                  "%s %s %dx%dx%d->%d k%d s%d pad %d, %d thread(s), band %d rows: output differs by %g, row sums by %g",
                  k->isa, from_stem ? "stem" : "expand", c->h, c->w, cin, c->mid, c->k, c->stride, (int)c->pad, T,
                  bs.rows, dd, ds);
    free(x.data), free(pw_w), free(pw_b), free(bl.dw.w), free(bl.dw.b), free(e.data), free(d_ref.data);
    free(sums_ref), free(bands), free(d.data), free(sums);
    threadpool_free(ctx.tp);
}

static void check_level(isa_level l) {
    cpu_features f;
    cpu_detect(&f);
    if (!cpu_supports(&f, l)) return;
    const kernel_table *k = kernels_for_level(l);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        for (int threads = 1; threads <= 3; threads++)
            for (int rows = 0; rows <= 3; rows++) /* 0: the real byte-sized band */
                for (int from_stem = 0; from_stem <= 1; from_stem++) check_case(k, &cases[i], threads, rows, from_stem);
}

START_TEST(test_bands_match_unfused) {
    for (int l = 0; l < ISA_COUNT; l++) check_level((isa_level)l);
}
END_TEST

int main(void) {
    Suite *s = suite_create("bands");
    TCase *tc = tcase_create("bands");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_bands_match_unfused);
    suite_add_tcase(s, tc);
    return tu_run_suite(s);
}
