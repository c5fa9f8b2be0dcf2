/*
 * The compute kernels against straightforward reference implementations written here
 * (plain loops over explicit padding, double accumulation), on odd shapes, both
 * padding styles (TF "SAME" computed from the input size as tf_same() below, and
 * symmetric (k-1)/2), with no pool and with 2- and 3-thread pools. Every op except
 * pwconv must give bit-identical results whatever the thread count; pwconv's sgemm
 * blocking may differ in the last bits.
 */
#include <cblas.h>
#include <check.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "core/amx.h"
#include "core/context.h"
#include "core/cpu.h"
#include "ops/mathfun.h"
#include "ops/ops.h"
#include "testutil.h"

/* ---- helpers ---- */

static uint32_t rng_state = 12345u;

static float *random_floats(size_t n, float lo, float hi) {
    return tu_random_floats(n, lo, hi, &rng_state);
}

static float *alloc_floats(size_t n) {
    float *x = calloc(n ? n : 1, sizeof *x);
    ck_assert_ptr_nonnull(x);
    return x;
}

static double *alloc_doubles(size_t n) {
    double *x = calloc(n ? n : 1, sizeof *x);
    ck_assert_ptr_nonnull(x);
    return x;
}

static double ref_act(double x, act_kind act) {
    switch (act) {
    case ACT_NONE: return x;
    case ACT_SWISH: return x / (1.0 + exp(-x));
    case ACT_SIGMOID: return 1.0 / (1.0 + exp(-x));
    }
    return NAN;
}

/* max|got - ref| <= 1e-5 * max|ref| + 1e-6 (float32 rounding of sums of a few
 * hundred terms stays well inside; a wrong tap or padding side gives ~1e-1). */
static void assert_close(const float *got, const double *ref, size_t n, const char *what) {
    double maxdiff = 0, maxref = 0;
    size_t worst = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - ref[i]);
        if (isnan(d) ? !isnan(maxdiff) : d > maxdiff) { /* the first NaN sticks */
            maxdiff = d;
            worst = i;
        }
        if (fabs(ref[i]) > maxref) maxref = fabs(ref[i]);
    }
    ck_assert_msg(maxdiff <= 1e-5 * maxref + 1e-6, "%s: max diff %g at %zu (got %g, ref %g), max|ref| %g",
                  what, maxdiff, worst, n ? got[worst] : 0.0, n ? ref[worst] : 0.0, maxref);
}

static void assert_identical(const float *a, const float *b, size_t n, const char *what) {
    ck_assert_msg(memcmp(a, b, n * sizeof *a) == 0, "%s: results differ between thread counts", what);
}

/* TF "SAME" (docs/engine.md, Padding): out = ceil(in / s), total = max((out-1)*s + k - in, 0),
 * before = total / 2. Returns the output size. */
static int tf_same(int in, int k, int s, int *before) {
    int out = (in + s - 1) / s;
    int total = (out - 1) * s + k - in;
    if (total < 0) total = 0;
    *before = total / 2;
    return out;
}

/* Symmetric padding p on both sides, floor mode. */
static int symmetric_out(int in, int k, int s, int p) {
    return (in + 2 * p - k) / s + 1;
}

typedef struct {
    threadpool *pools[3]; /* NULL, 2 threads, 3 threads */
} pools;

static pools make_pools(void) {
    pools p = {{NULL, threadpool_create(2), threadpool_create(3)}};
    ck_assert_ptr_nonnull(p.pools[1]);
    ck_assert_ptr_nonnull(p.pools[2]);
    return p;
}

static void free_pools(pools *p) {
    threadpool_free(p->pools[1]);
    threadpool_free(p->pools[2]);
}

/* A geometry case: input h x w, kernel, stride, and whether padding is TF-SAME. */
typedef struct {
    int h, w, k, s, tf;
} geometry;

static void output_geometry(const geometry *g, int *oh, int *ow, int *pt, int *pl) {
    if (g->tf) {
        *oh = tf_same(g->h, g->k, g->s, pt);
        *ow = tf_same(g->w, g->k, g->s, pl);
    } else {
        *pt = *pl = (g->k - 1) / 2;
        *oh = symmetric_out(g->h, g->k, g->s, *pt);
        *ow = symmetric_out(g->w, g->k, g->s, *pl);
    }
}

static const geometry conv_geometries[] = {
    {7, 5, 3, 1, 0},   {7, 5, 3, 2, 1},   {13, 17, 3, 2, 1}, {13, 17, 5, 2, 1}, {16, 16, 3, 2, 1},
    {16, 16, 5, 2, 1}, {12, 10, 5, 1, 0}, {1, 1, 3, 1, 0},   {1, 1, 3, 2, 1},   {2, 2, 5, 1, 0},
    {3, 4, 5, 2, 1},   {9, 9, 3, 2, 0},   {10, 11, 5, 2, 0}, {24, 20, 3, 1, 0}, {6, 40, 5, 1, 0},
};
#define NUM_CONV_GEOMETRIES (int)(sizeof conv_geometries / sizeof conv_geometries[0])

/* ---- references ---- */

/* Input value at (y, x, c), zero outside (conv padding). */
static double at_or_zero(const float *in, int h, int w, int c, int y, int x, int ch) {
    if (y < 0 || y >= h || x < 0 || x >= w) return 0.0;
    return in[((size_t)y * w + x) * c + ch];
}

static void ref_conv2d(const float *in, int h, int w, int cin, const float *wt, const float *bias, int k,
                       int s, int pt, int pl, act_kind act, int oh, int ow, int cout, double *out) {
    for (int y = 0; y < oh; y++)
        for (int x = 0; x < ow; x++)
            for (int co = 0; co < cout; co++) {
                double acc = bias ? bias[co] : 0.0;
                for (int ky = 0; ky < k; ky++)
                    for (int kx = 0; kx < k; kx++)
                        for (int ci = 0; ci < cin; ci++)
                            acc += at_or_zero(in, h, w, cin, y * s - pt + ky, x * s - pl + kx, ci) *
                                   wt[((size_t)(ky * k + kx) * cin + ci) * cout + co];
                out[((size_t)y * ow + x) * cout + co] = ref_act(acc, act);
            }
}

static void ref_dwconv(const float *in, int h, int w, int c, const float *wt, const float *bias, int k, int s,
                       int pt, int pl, act_kind act, int oh, int ow, double *out) {
    for (int y = 0; y < oh; y++)
        for (int x = 0; x < ow; x++)
            for (int ch = 0; ch < c; ch++) {
                double acc = bias ? bias[ch] : 0.0;
                for (int ky = 0; ky < k; ky++)
                    for (int kx = 0; kx < k; kx++)
                        acc += at_or_zero(in, h, w, c, y * s - pt + ky, x * s - pl + kx, ch) *
                               wt[(size_t)(ky * k + kx) * c + ch];
                out[((size_t)y * ow + x) * c + ch] = ref_act(acc, act);
            }
}

/* ---- activations ---- */

START_TEST(test_activation_extremes) {
    const float xs[] = {0.0f,   -0.0f,  1e-30f,  -1e-30f, 1e-40f, -1e-40f, 1e-7f,  -1e-7f, 0.5f,
                        -0.5f,  1.0f,   -1.0f,   5.0f,    -5.0f,  15.0f,   -15.0f, 20.0f,  -20.0f,
                        80.0f,  -80.0f, 87.0f,   -87.0f,  88.5f,  -88.5f,  88.8f,  -88.8f, 89.0f,
                        -89.0f, 100.0f, -100.0f, 1e4f,    -1e4f,  1e30f,   -1e30f};
    int n = (int)(sizeof xs / sizeof xs[0]);
    for (int i = 0; i < n; i++) {
        double x = xs[i];
        double sw = x / (1.0 + exp(-x));
        double sg = 1.0 / (1.0 + exp(-x));
        float got_sw = fast_swishf(xs[i]), got_sg = fast_sigmoidf(xs[i]);
        ck_assert_msg(isfinite(got_sw), "swish(%g) = %g", x, got_sw);
        ck_assert_msg(isfinite(got_sg), "sigmoid(%g) = %g", x, got_sg);
        ck_assert_msg(fabs(got_sw - sw) <= 1e-6 * fabs(sw) + 1e-35, "swish(%g) = %.9g, want %.9g", x, got_sw,
                      sw);
        ck_assert_msg(fabs(got_sg - sg) <= 1e-6 * fabs(sg) + 1e-35, "sigmoid(%g) = %.9g, want %.9g", x,
                      got_sg, sg);
    }
    ck_assert(fast_swishf(100.0f) == 100.0f);
    ck_assert(fast_sigmoidf(100.0f) == 1.0f);
    ck_assert(fast_sigmoidf(-100.0f) == 0.0f);
    ck_assert(fast_swishf(-100.0f) == 0.0f && signbit(fast_swishf(-100.0f)));
}
END_TEST

/* A dense sweep of exp's reduced range and beyond: relative error < 1e-6 everywhere. */
START_TEST(test_expf_sweep) {
    double worst = 0;
    float worst_x = 0;
    for (float x = -87.0f; x < 88.0f; x += 0.00137f) {
        double want = exp((double)x);
        double rel = fabs(fast_expf(x) - want) / want;
        if (rel > worst) {
            worst = rel;
            worst_x = x;
        }
    }
    ck_assert_msg(worst < 1e-6, "fast_expf: relative error %g at x = %g", worst, worst_x);
    ck_assert(fast_expf(89.0f) == INFINITY);
    ck_assert(fast_expf(-89.0f) == 0.0f);
    ck_assert(fast_expf(0.0f) == 1.0f);
}
END_TEST

#ifdef HAVE_VEXP
/* The vector exp that swish and sigmoid use: same accuracy as fast_expf over the
 * finite range, and e^x never NaN at the ends (swish then gives x or -0/tiny). */
START_TEST(test_vexp_sweep) {
    double worst = 0;
    float worst_x = 0;
    for (float x0 = -87.0f; x0 < 88.0f; x0 += 0.00137f * VLEN) {
        float xs[VLEN], ys[VLEN];
        for (int i = 0; i < VLEN; i++) xs[i] = x0 + 0.00137f * i;
        vstore(ys, vexp(vload(xs)));
        for (int i = 0; i < VLEN; i++) {
            double want = exp((double)xs[i]);
            double rel = fabs(ys[i] - want) / want;
            if (rel > worst) {
                worst = rel;
                worst_x = xs[i];
            }
        }
    }
    ck_assert_msg(worst < 1e-6, "vexp: relative error %g at x = %g", worst, worst_x);
    float ends[VLEN], e[VLEN];
    for (int i = 0; i < VLEN; i++) ends[i] = i % 2 ? 1e30f * i : -1e30f * i;
    vstore(e, vexp(vload(ends)));
    for (int i = 0; i < VLEN; i++) {
        ck_assert_msg(!isnan(e[i]) && e[i] >= 0.0f, "vexp(%g) = %g", ends[i], e[i]);
        if (ends[i] < -100.0f) ck_assert_msg(e[i] < 1e-37f, "vexp(%g) = %g", ends[i], e[i]);
        if (ends[i] > 100.0f) ck_assert_msg(e[i] > 1e38f, "vexp(%g) = %g", ends[i], e[i]);
    }
}
END_TEST

/* A channel remainder goes through fast_swishf, its neighbours through vswish; where a
 * thread's span ends decides which, so the two must give the same bits for the
 * results not to depend on the thread count. */
START_TEST(test_vswish_matches_scalar) {
    int differ = 0;
    float first_x = 0;
    for (float x0 = -87.0f; x0 < 87.0f; x0 += 0.00731f * VLEN) {
        float xs[VLEN], ys[VLEN], ss[VLEN];
        for (int i = 0; i < VLEN; i++) xs[i] = x0 + 0.00731f * i;
        vstore(ys, vswish(vload(xs)));
        vstore(ss, vsigmoid(vload(xs)));
        for (int i = 0; i < VLEN; i++)
            if (ys[i] != fast_swishf(xs[i]) || ss[i] != fast_sigmoidf(xs[i])) {
                if (!differ) first_x = xs[i];
                differ++;
            }
    }
    ck_assert_msg(differ == 0, "vector and scalar swish/sigmoid differ at %d points, first x = %g", differ,
                  first_x);
}
END_TEST
#endif

START_TEST(test_op_activate_and_add) {
    pools p = make_pools();
    const size_t sizes[] = {1, 7, 17, 1000, 40000, 100003};
    const act_kind acts[] = {ACT_NONE, ACT_SWISH, ACT_SIGMOID};
    for (int si = 0; si < 6; si++) {
        size_t n = sizes[si];
        float *x = random_floats(n, -30.0f, 30.0f);
        float *y = random_floats(n, -3.0f, 3.0f);
        float *got[3];
        double *ref = alloc_doubles(n);
        for (int ai = 0; ai < 3; ai++) {
            for (size_t i = 0; i < n; i++) ref[i] = ref_act(x[i], acts[ai]);
            for (int t = 0; t < 3; t++) {
                got[t] = alloc_floats(n);
                memcpy(got[t], x, n * sizeof *x);
                op_activate(p.pools[t], got[t], n, acts[ai]);
                assert_close(got[t], ref, n, "op_activate");
                if (t) assert_identical(got[0], got[t], n, "op_activate");
            }
            for (int t = 0; t < 3; t++) free(got[t]);
        }
        for (size_t i = 0; i < n; i++) ref[i] = (double)x[i] + y[i];
        for (int t = 0; t < 3; t++) {
            float *z = alloc_floats(n);
            memcpy(z, x, n * sizeof *x);
            op_add(p.pools[t], z, y, n);
            assert_close(z, ref, n, "op_add");
            free(z);
        }
        free(x);
        free(y);
        free(ref);
    }
    free_pools(&p);
}
END_TEST

/* The shared conv geometries plus rows wide enough for every register block of the
 * interior path (8, 4, 2, 1 pixels) at both strides, and a k7 that has no block path. */
static const geometry dw_extra_geometries[] = {
    {5, 45, 3, 1, 0}, {4, 61, 5, 2, 1}, {6, 38, 3, 2, 1},
    {7, 29, 5, 1, 0}, {9, 11, 7, 1, 0}, {8, 19, 7, 2, 1},
};
#define NUM_DW_GEOMETRIES                                                                                    \
    (NUM_CONV_GEOMETRIES + (int)(sizeof dw_extra_geometries / sizeof dw_extra_geometries[0]))

static const geometry *dw_geometry(int i) {
    return i < NUM_CONV_GEOMETRIES ? &conv_geometries[i] : &dw_extra_geometries[i - NUM_CONV_GEOMETRIES];
}

/* ---- convolutions ---- */

START_TEST(test_conv2d) {
    pools p = make_pools();
    /* Output widths for every path: 2 vectors, 1 vector, the scalar remainder. */
    const int couts[] = {8, 17, 32, 40, 48, 64};
    const int ncouts = (int)(sizeof couts / sizeof couts[0]);
    for (int gi = 0; gi < NUM_DW_GEOMETRIES; gi++)
        for (int ci = 0; ci < ncouts; ci++) {
            const geometry *g = dw_geometry(gi);
            int oh, ow, pt, pl, cin = (gi + ci) % 5 == 4 ? 1 : 3, cout = couts[ci];
            output_geometry(g, &oh, &ow, &pt, &pl);
            act_kind act = (gi + ci) % 2 ? ACT_SWISH : ACT_NONE;
            float *in = random_floats((size_t)g->h * g->w * cin, -2.0f, 2.0f);
            float *wt = random_floats((size_t)g->k * g->k * cin * cout, -0.5f, 0.5f);
            float *bias = (gi + ci) % 7 == 3 ? NULL : random_floats((size_t)cout, -0.5f, 0.5f);
            size_t n = (size_t)oh * ow * cout;
            double *ref = alloc_doubles(n);
            ref_conv2d(in, g->h, g->w, cin, wt, bias, g->k, g->s, pt, pl, act, oh, ow, cout, ref);
            float *got[3];
            for (int t = 0; t < 3; t++) {
                got[t] = alloc_floats(n);
                tensor ti = {in, g->h, g->w, cin, 0}, to = {got[t], oh, ow, cout, 0};
                op_conv2d(p.pools[t], &ti, wt, bias, g->k, g->s, pt, pl, act, &to);
                assert_close(got[t], ref, n, "op_conv2d");
                if (t) assert_identical(got[0], got[t], n, "op_conv2d");
            }
            for (int t = 0; t < 3; t++) free(got[t]);
            free(in);
            free(wt);
            free(bias);
            free(ref);
        }
    free_pools(&p);
}
END_TEST

/* Row sums of op_dwconv_sum against the reference output summed per row in double. */
static void assert_row_sums(const float *sums, const double *ref, int oh, int ow, int c, const char *what) {
    double *want = alloc_doubles((size_t)oh * c);
    for (int y = 0; y < oh; y++)
        for (int x = 0; x < ow; x++)
            for (int ch = 0; ch < c; ch++) want[(size_t)y * c + ch] += ref[((size_t)y * ow + x) * c + ch];
    double scale = 0;
    for (size_t i = 0; i < (size_t)oh * ow * c; i++)
        if (fabs(ref[i]) > scale) scale = fabs(ref[i]);
    /* Each row sum adds ow values, each within the assert_close tolerance. */
    double tol = ow * (1e-5 * scale + 1e-6);
    for (size_t i = 0; i < (size_t)oh * c; i++)
        ck_assert_msg(fabs(sums[i] - want[i]) <= tol, "%s: row sum %zu = %g, want %g", what, i, sums[i],
                      want[i]);
    free(want);
}

START_TEST(test_dwconv) {
    pools p = make_pools();
    const int channels[] = {1, 3, 17, 96, 8, 24, 32, 48};
    const int nchannels = (int)(sizeof channels / sizeof channels[0]);
    for (int gi = 0; gi < NUM_DW_GEOMETRIES; gi++) {
        for (int cc = 0; cc < nchannels; cc++) {
            const geometry *g = dw_geometry(gi);
            int oh, ow, pt, pl, c = channels[cc];
            output_geometry(g, &oh, &ow, &pt, &pl);
            act_kind act = (gi + cc) % 3 == 0 ? ACT_NONE : (gi + cc) % 3 == 1 ? ACT_SWISH : ACT_SIGMOID;
            int with_bias = (gi + cc) % 4 != 3;
            float *in = random_floats((size_t)g->h * g->w * c, -2.0f, 2.0f);
            float *wt = random_floats((size_t)g->k * g->k * c, -0.5f, 0.5f);
            float *bias = with_bias ? random_floats((size_t)c, -0.5f, 0.5f) : NULL;
            size_t n = (size_t)oh * ow * c;
            double *ref = alloc_doubles(n);
            ref_dwconv(in, g->h, g->w, c, wt, bias, g->k, g->s, pt, pl, act, oh, ow, ref);
            float *got[3], *sums[3];
            for (int t = 0; t < 3; t++) {
                got[t] = alloc_floats(n);
                tensor ti = {in, g->h, g->w, c, 0}, to = {got[t], oh, ow, c, 0};
                op_dwconv(p.pools[t], &ti, wt, bias, g->k, g->s, pt, pl, act, &to);
                assert_close(got[t], ref, n, "op_dwconv");
                if (t) assert_identical(got[0], got[t], n, "op_dwconv");
                /* The summing variant: same output, plus row sums (garbage in the
                 * buffer first: the kernel must not rely on it being zeroed). */
                float *out2 = alloc_floats(n);
                sums[t] = random_floats((size_t)oh * c, 100.0f, 200.0f);
                to.data = out2;
                op_dwconv_sum(p.pools[t], &ti, wt, bias, g->k, g->s, pt, pl, act, &to, sums[t]);
                assert_identical(got[t], out2, n, "op_dwconv_sum output");
                assert_row_sums(sums[t], ref, oh, ow, c, "op_dwconv_sum");
                if (t) assert_identical(sums[0], sums[t], (size_t)oh * c, "op_dwconv_sum row sums");
                free(out2);
            }
            for (int t = 0; t < 3; t++) {
                free(got[t]);
                free(sums[t]);
            }
            free(in);
            free(wt);
            free(bias);
            free(ref);
        }
    }
    free_pools(&p);
}
END_TEST

/* out[r][co] = act(bias[co] + sum_ci in[r][ci] * wt[ci][co]) in double; bias may be NULL. */
static void ref_pwconv(const float *in, int rows, int cin, const float *wt, const float *bias, int cout,
                       act_kind act, double *ref) {
    for (int r = 0; r < rows; r++)
        for (int co = 0; co < cout; co++) {
            double acc = bias ? bias[co] : 0.0;
            for (int ci = 0; ci < cin; ci++)
                acc += (double)in[(size_t)r * cin + ci] * wt[(size_t)ci * cout + co];
            ref[(size_t)r * cout + co] = ref_act(acc, act);
        }
}

/* Our own kernel: every cout remainder (1, 15, 17 lanes; 33 = two vectors + 1 lane; 50
 * = 4 vectors, split 2 + 2 with AVX-512; 80 = 5; 88 = 3 + 3 with an 8-lane tail), cin
 * from 1 to 240, rows of one tile, of every tile remainder and of several row blocks,
 * each activation, with and without bias, no pool and 2 and 3 threads (bit-identical
 * results). The output buffer starts as NaN so that a column or row the kernel skips
 * fails. */
START_TEST(test_pwconv_direct) {
    pools p = make_pools();
    const int rows_list[] = {1, 7, 13, 100, 331, 2011};
    const int cins[] = {1, 3, 16, 17, 240};
    const int couts[] = {1, 15, 17, 33, 50, 80, 88};
    int combo = 0;
    for (int i = 0; i < 6; i++)
        for (int j = 0; j < 5; j++)
            for (int c = 0; c < 7; c++, combo++) {
                int rows = rows_list[i], cin = cins[j], cout = couts[c];
                if (rows * cin > 100000) continue; /* the big row counts only with small cin */
                act_kind act = combo % 3 == 0 ? ACT_NONE : combo % 3 == 1 ? ACT_SWISH : ACT_SIGMOID;
                float *in = random_floats((size_t)rows * cin, -2.0f, 2.0f);
                float *wt = random_floats((size_t)cin * cout, -0.5f, 0.5f);
                float *bias = combo % 2 ? random_floats((size_t)cout, -0.5f, 0.5f) : NULL;
                size_t n = (size_t)rows * cout;
                double *ref = alloc_doubles(n);
                ref_pwconv(in, rows, cin, wt, bias, cout, act, ref);
                float *got[3];
                for (int t = 0; t < 3; t++) {
                    got[t] = alloc_floats(n);
                    for (size_t e = 0; e < n; e++) got[t][e] = NAN;
                    tensor tin = {in, rows, 1, cin, 0}, tout = {got[t], rows, 1, cout, 0};
                    op_pwconv_direct(p.pools[t], &tin, wt, bias, act, &tout);
                    assert_close(got[t], ref, n, "op_pwconv_direct");
                    /* Each output is the same k-order sum whichever tile holds its row. */
                    if (t) assert_identical(got[0], got[t], n, "op_pwconv_direct");
                }
                for (int t = 0; t < 3; t++) free(got[t]);
                free(in);
                free(wt);
                free(bias);
                free(ref);
            }
    free_pools(&p);
}
END_TEST

/* The two paths op_pwconv chooses between agree on D0's shapes (scaled-down rows) to
 * ~1e-5 of the output's magnitude: the table can switch a layer without moving the
 * results beyond fp32 rounding. */
START_TEST(test_pwconv_paths_agree) {
    pools p = make_pools();
    static const int shapes[][3] = {{4096, 16, 96}, {1024, 96, 24},  {1024, 24, 144}, {512, 144, 40},
                                    {256, 240, 80}, {256, 480, 112}, {64, 1152, 320}, {256, 64, 64},
                                    {256, 64, 810}, {64, 64, 36},    {64, 320, 64},   {16, 112, 64}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int rows = shapes[s][0], cin = shapes[s][1], cout = shapes[s][2];
        act_kind act = s % 3 == 0 ? ACT_SWISH : s % 3 == 1 ? ACT_NONE : ACT_SIGMOID;
        float *in = random_floats((size_t)rows * cin, -2.0f, 2.0f);
        float *wt = random_floats((size_t)cin * cout, -0.2f, 0.2f);
        float *bias = random_floats((size_t)cout, -0.5f, 0.5f);
        size_t n = (size_t)rows * cout;
        float *blas = alloc_floats(n), *direct = alloc_floats(n), *chosen = alloc_floats(n);
        tensor tin = {in, rows, 1, cin, 0};
        tensor tblas = {blas, rows, 1, cout, 0}, tdirect = {direct, rows, 1, cout, 0},
               tchosen = {chosen, rows, 1, cout, 0};
        op_pwconv_blas(p.pools[1], &tin, wt, bias, act, &tblas);
        op_pwconv_direct(p.pools[2], &tin, wt, bias, act, &tdirect);
        op_pwconv(p.pools[0], &tin, wt, bias, act, &tchosen);
        double maxdiff = 0, maxref = 0, maxchosen = 0;
        for (size_t e = 0; e < n; e++) {
            double d = fabs((double)blas[e] - direct[e]);
            double dc = fmin(fabs((double)chosen[e] - blas[e]), fabs((double)chosen[e] - direct[e]));
            maxdiff = d > maxdiff ? d : maxdiff;
            maxchosen = dc > maxchosen ? dc : maxchosen;
            maxref = fabs(blas[e]) > maxref ? fabs(blas[e]) : maxref;
        }
        ck_assert_msg(maxdiff <= 1e-5 * maxref + 1e-6, "%dx%d->%d: sgemm and direct differ by %g (max %g)",
                      rows, cin, cout, maxdiff, maxref);
        ck_assert_msg(maxchosen <= 1e-5 * maxref + 1e-6, "%dx%d->%d: op_pwconv matches neither path (%g)",
                      rows, cin, cout, maxchosen);
        free(in);
        free(wt);
        free(bias);
        free(blas);
        free(direct);
        free(chosen);
    }
    free_pools(&p);
}
END_TEST

/* The D0 cases, stride 2 on even sizes (k3: 0 before, 1 after; k5: 1 before, 2 after),
 * checked on the helper itself so the geometries above really cover them. */
START_TEST(test_tf_same_padding_cases) {
    int before;
    ck_assert_int_eq(tf_same(16, 3, 2, &before), 8);
    ck_assert_int_eq(before, 0); /* total 1: (0 before, 1 after) */
    ck_assert_int_eq(tf_same(16, 5, 2, &before), 8);
    ck_assert_int_eq(before, 1); /* total 3: (1, 2) */
    ck_assert_int_eq(tf_same(13, 3, 2, &before), 7);
    ck_assert_int_eq(before, 1); /* odd: total 2 */
}
END_TEST

START_TEST(test_pwconv) {
    pools p = make_pools();
    const int rows_list[] = {1, 35, 221, 5000, 64, 130};
    const int cins[] = {1, 3, 17, 96, 32, 40};
    const int couts[] = {17, 96, 1, 24, 810, 36};
    for (int i = 0; i < 6; i++) {
        for (int j = 0; j < 6; j++) {
            int rows = rows_list[i], cin = cins[j], cout = couts[(i + j) % 6];
            act_kind act = (i + j) % 3 == 0 ? ACT_NONE : (i + j) % 3 == 1 ? ACT_SWISH : ACT_SIGMOID;
            float *in = random_floats((size_t)rows * cin, -2.0f, 2.0f);
            float *wt = random_floats((size_t)cin * cout, -0.5f, 0.5f);
            float *bias = random_floats((size_t)cout, -0.5f, 0.5f);
            size_t n = (size_t)rows * cout;
            double *ref = alloc_doubles(n);
            for (int r = 0; r < rows; r++)
                for (int co = 0; co < cout; co++) {
                    double acc = bias[co];
                    for (int ci = 0; ci < cin; ci++)
                        acc += (double)in[(size_t)r * cin + ci] * wt[(size_t)ci * cout + co];
                    ref[(size_t)r * cout + co] = ref_act(acc, act);
                }
            for (int t = 0; t < 3; t++) {
                float *got = alloc_floats(n);
                tensor ti = {in, rows, 1, cin, 0}, to = {got, rows, 1, cout, 0};
                op_pwconv(p.pools[t], &ti, wt, bias, act, &to);
                assert_close(got, ref, n, "op_pwconv");
                free(got);
            }
            free(in);
            free(wt);
            free(bias);
            free(ref);
        }
    }
    free_pools(&p);
}
END_TEST

/* ---- squeeze-and-excitation ---- */

/* The fused SE of run_block: depthwise with row sums -> gates -> gate folded into the
 * projection weights (or applied to the pixels), against depthwise -> mean -> FCs ->
 * x * gate -> projection in double. */
static void ref_se_gate(const double *x, int npix, int c, const float *w1, const float *b1, int rd,
                        const float *w2, const float *b2, double *gate) {
    double *mean = alloc_doubles((size_t)c), *hidden = alloc_doubles((size_t)rd);
    for (size_t i = 0; i < (size_t)npix * c; i++) mean[i % c] += x[i];
    for (int ch = 0; ch < c; ch++) mean[ch] /= npix;
    for (int r = 0; r < rd; r++) {
        double acc = b1[r];
        for (int ch = 0; ch < c; ch++) acc += mean[ch] * w1[(size_t)ch * rd + r];
        hidden[r] = ref_act(acc, ACT_SWISH);
    }
    for (int ch = 0; ch < c; ch++) {
        double acc = b2[ch];
        for (int r = 0; r < rd; r++) acc += hidden[r] * w2[(size_t)r * c + ch];
        gate[ch] = ref_act(acc, ACT_SIGMOID);
    }
    free(mean);
    free(hidden);
}

START_TEST(test_se_fused) {
    pools p = make_pools();
    /* h, w, c, rd, cout, k, stride */
    const int shapes[][7] = {{9, 7, 17, 4, 5, 3, 1},  {16, 16, 32, 8, 16, 3, 2}, {12, 20, 48, 12, 24, 5, 2},
                             {5, 5, 96, 4, 40, 5, 1}, {1, 1, 3, 1, 7, 3, 1},     {33, 21, 24, 6, 12, 3, 1}};
    for (int si = 0; si < 6; si++) {
        int h = shapes[si][0], w = shapes[si][1], c = shapes[si][2], rd = shapes[si][3], cout = shapes[si][4];
        int k = shapes[si][5], st = shapes[si][6];
        int pt, pl, oh = tf_same(h, k, st, &pt), ow = tf_same(w, k, st, &pl), npix = oh * ow;
        float *in = random_floats((size_t)h * w * c, -2.0f, 2.0f);
        float *dw = random_floats((size_t)k * k * c, -0.5f, 0.5f),
              *db = random_floats((size_t)c, -0.5f, 0.5f);
        float *w1 = random_floats((size_t)c * rd, -0.5f, 0.5f), *b1 = random_floats((size_t)rd, -0.5f, 0.5f);
        float *w2 = random_floats((size_t)rd * c, -0.5f, 0.5f), *b2 = random_floats((size_t)c, -0.5f, 0.5f);
        float *pw = random_floats((size_t)c * cout, -0.5f, 0.5f),
              *pb = random_floats((size_t)cout, -0.5f, 0.5f);
        double *d = alloc_doubles((size_t)npix * c), *gate = alloc_doubles((size_t)c);
        double *ref = alloc_doubles((size_t)npix * cout);
        ref_dwconv(in, h, w, c, dw, db, k, st, pt, pl, ACT_SWISH, oh, ow, d);
        ref_se_gate(d, npix, c, w1, b1, rd, w2, b2, gate);
        for (int px = 0; px < npix; px++)
            for (int co = 0; co < cout; co++) {
                double acc = pb[co];
                for (int ch = 0; ch < c; ch++)
                    acc += d[(size_t)px * c + ch] * gate[ch] * pw[(size_t)ch * cout + co];
                ref[(size_t)px * cout + co] = acc;
            }
        for (int t = 0; t < 3; t++)
            for (int fold = 0; fold < 2; fold++) {
                float *dout = alloc_floats((size_t)npix * c), *sums = alloc_floats((size_t)oh * c);
                float *g = alloc_floats((size_t)c), *scratch = alloc_floats((size_t)rd);
                float *folded = alloc_floats((size_t)c * cout), *got = alloc_floats((size_t)npix * cout);
                tensor ti = {in, h, w, c, 0}, to = {dout, oh, ow, c, 0};
                op_dwconv_sum(p.pools[t], &ti, dw, db, k, st, pt, pl, ACT_SWISH, &to, sums);
                op_se_gates(p.pools[t], sums, oh, npix, c, w1, b1, rd, w2, b2, scratch, g);
                for (int ch = 0; ch < c; ch++)
                    ck_assert_msg(fabs(g[ch] - gate[ch]) <= 1e-5, "op_se_gates: gate %d = %g, want %g", ch,
                                  g[ch], gate[ch]);
                const float *wuse = pw;
                if (fold) {
                    op_scale_rows(p.pools[t], pw, g, c, cout, folded);
                    for (int ch = 0; ch < c; ch++)
                        for (int co = 0; co < cout; co++)
                            ck_assert(folded[(size_t)ch * cout + co] == pw[(size_t)ch * cout + co] * g[ch]);
                    wuse = folded;
                } else {
                    op_scale_channels(p.pools[t], &to, g);
                }
                tensor pin = {dout, npix, 1, c, 0}, pout = {got, npix, 1, cout, 0};
                op_pwconv(p.pools[t], &pin, wuse, pb, ACT_NONE, &pout);
                assert_close(got, ref, (size_t)npix * cout, fold ? "SE folded into weights" : "SE on pixels");
                free(dout);
                free(sums);
                free(g);
                free(scratch);
                free(folded);
                free(got);
            }
        free(in);
        free(dw);
        free(db);
        free(w1);
        free(b1);
        free(w2);
        free(b2);
        free(pw);
        free(pb);
        free(d);
        free(gate);
        free(ref);
    }
    free_pools(&p);
}
END_TEST

/* ---- BiFPN resampling and fusion ---- */

START_TEST(test_maxpool) {
    pools p = make_pools();
    const int sizes[][2] = {{16, 16}, {13, 17}, {7, 5}, {1, 1}, {2, 3}, {8, 8}, {4, 4}};
    const int channels[] = {1, 3, 17, 64};
    for (int si = 0; si < 7; si++)
        for (int cc = 0; cc < 4; cc++)
            for (int tf = 0; tf < 2; tf++) {
                int h = sizes[si][0], w = sizes[si][1], c = channels[cc], oh, ow, pt, pl;
                geometry g = {h, w, 3, 2, tf};
                output_geometry(&g, &oh, &ow, &pt, &pl);
                size_t n = (size_t)oh * ow * c;
                /* All negative: a padded -inf (or a wrongly padded 0) must never win. */
                float *in = random_floats((size_t)h * w * c, -5.0f, -1.0f);
                double *ref = alloc_doubles(n);
                for (int y = 0; y < oh; y++)
                    for (int x = 0; x < ow; x++)
                        for (int ch = 0; ch < c; ch++) {
                            double m = -INFINITY;
                            for (int iy = 2 * y - pt; iy < 2 * y - pt + 3; iy++)
                                for (int ix = 2 * x - pl; ix < 2 * x - pl + 3; ix++)
                                    if (iy >= 0 && iy < h && ix >= 0 && ix < w &&
                                        in[((size_t)iy * w + ix) * c + ch] > m)
                                        m = in[((size_t)iy * w + ix) * c + ch];
                            ref[((size_t)y * ow + x) * c + ch] = m;
                        }
                float *got[3];
                for (int t = 0; t < 3; t++) {
                    got[t] = alloc_floats(n);
                    tensor ti = {in, h, w, c, 0}, to = {got[t], oh, ow, c, 0};
                    op_maxpool3s2(p.pools[t], &ti, pt, pl, &to);
                    assert_close(got[t], ref, n, "op_maxpool3s2");
                    if (t) assert_identical(got[0], got[t], n, "op_maxpool3s2");
                }
                for (int t = 0; t < 3; t++) free(got[t]);
                free(in);
                free(ref);
            }
    free_pools(&p);
}
END_TEST

START_TEST(test_upsample) {
    pools p = make_pools();
    const int cases[][4] = {{3, 3, 5, 5}, {4, 4, 8, 8},   {3, 4, 5, 8},
                            {1, 1, 2, 2}, {5, 7, 10, 13}, {2, 2, 7, 3}};
    const int channels[] = {1, 3, 17, 64};
    for (int ci = 0; ci < 6; ci++)
        for (int cc = 0; cc < 4; cc++) {
            int ih = cases[ci][0], iw = cases[ci][1], oh = cases[ci][2], ow = cases[ci][3], c = channels[cc];
            float *in = random_floats((size_t)ih * iw * c, -2.0f, 2.0f);
            size_t n = (size_t)oh * ow * c;
            double *ref = alloc_doubles(n);
            for (int y = 0; y < oh; y++)
                for (int x = 0; x < ow; x++)
                    for (int ch = 0; ch < c; ch++) {
                        int sy = (int)floor((double)y * ih / oh), sx = (int)floor((double)x * iw / ow);
                        ref[((size_t)y * ow + x) * c + ch] = in[((size_t)sy * iw + sx) * c + ch];
                    }
            for (int t = 0; t < 3; t++) {
                float *got = alloc_floats(n);
                tensor ti = {in, ih, iw, c, 0}, to = {got, oh, ow, c, 0};
                op_upsample_nearest(p.pools[t], &ti, &to);
                assert_close(got, ref, n, "op_upsample_nearest");
                for (size_t i = 0; i < n; i++) ck_assert_msg(got[i] == (float)ref[i], "upsample is a copy");
                free(got);
            }
            free(in);
            free(ref);
        }
    free_pools(&p);
}
END_TEST

START_TEST(test_fuse) {
    pools p = make_pools();
    const float weight_sets[][3] = {{0.7f, 1.3f, 0.2f}, {-0.5f, 2.0f, 1.0f}, {1.0f, -1.0f, -2.0f}};
    const int shapes[][3] = {{7, 5, 17}, {64, 64, 64}, {1, 1, 3}, {13, 17, 96}};
    for (int si = 0; si < 4; si++)
        for (int ninputs = 2; ninputs <= 3; ninputs++)
            for (int ws = 0; ws <= 3; ws++) {
                int h = shapes[si][0], w = shapes[si][1], c = shapes[si][2];
                size_t n = (size_t)h * w * c;
                const float *weights = ws < 3 ? weight_sets[ws] : NULL; /* ws == 3: sum fusion */
                act_kind act = ws % 2 ? ACT_SWISH : ACT_NONE;
                float *data[3];
                tensor ts[3];
                const tensor *inputs[3];
                for (int i = 0; i < ninputs; i++) {
                    data[i] = random_floats(n, -3.0f, 3.0f);
                    ts[i] = (tensor){data[i], h, w, c, 0};
                    inputs[i] = &ts[i];
                }
                double *ref = alloc_doubles(n);
                double wsum = 0;
                for (int i = 0; weights && i < ninputs; i++) wsum += weights[i] > 0 ? weights[i] : 0;
                for (size_t e = 0; e < n; e++) {
                    double acc = 0;
                    for (int i = 0; i < ninputs; i++)
                        acc += weights ? data[i][e] * (weights[i] > 0 ? weights[i] : 0.0) / (wsum + 1e-4)
                                       : data[i][e];
                    ref[e] = ref_act(acc, act);
                }
                float *got[3];
                for (int t = 0; t < 3; t++) {
                    got[t] = alloc_floats(n);
                    tensor to = {got[t], h, w, c, 0};
                    op_fuse(p.pools[t], inputs, ninputs, weights, act, &to);
                    assert_close(got[t], ref, n, "op_fuse");
                    if (t) assert_identical(got[0], got[t], n, "op_fuse");
                }
                for (int t = 0; t < 3; t++) free(got[t]);
                for (int i = 0; i < ninputs; i++) free(data[i]);
                free(ref);
            }
    free_pools(&p);
}
END_TEST

#if defined(__AVX512F__)
/* ---- the bf16 precision mode (avx512 level, on CPUs with AVX512_BF16) ---- */

/* x rounded to bfloat16, to nearest even (what vcvtneps2bf16 does for the normal,
 * finite values these tests use), back as a float. */
static float bf16_round(float x) {
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    u += 0x7fffu + (u >> 16 & 1u);
    u &= 0xffff0000u;
    memcpy(&x, &u, sizeof x);
    return x;
}

static int cpu_has_bf16(void) {
    cpu_features f;
    cpu_detect(&f);
    if (!f.avx512_bf16 || !f.os_avx512) {
        printf("bf16 kernel tests SKIPPED: this CPU (%s) lacks AVX512_BF16\n", f.brand);
        return 0;
    }
    return 1;
}

/* op_fold_bf16 writes kernels.h's layout exactly: every word, padding included, from
 * a scalar packing of bf16(w[r][j] * s[r]) (the product is one fp32 multiply in both). */
START_TEST(test_fold_bf16_layout) {
    if (!cpu_has_bf16()) return;
    pools p = make_pools();
    const int shapes[][2] = {{1, 1}, {3, 17}, {16, 16}, {17, 33}, {96, 24}, {240, 50}, {1152, 320}};
    for (int t = 0; t < (int)(sizeof shapes / sizeof shapes[0]); t++) {
        int rows = shapes[t][0], cols = shapes[t][1];
        float *w = random_floats((size_t)rows * cols, -1.0f, 1.0f),
              *s = random_floats((size_t)rows, 0.0f, 1.0f);
        size_t n = bf16_packed_elems(rows, cols);
        uint16_t *got = malloc(n * sizeof *got), *want = calloc(n, sizeof *want);
        ck_assert_ptr_nonnull(got);
        ck_assert_ptr_nonnull(want);
        int c16 = bf16_cout_padded(cols);
        for (int r = 0; r < rows; r++)
            for (int j = 0; j < cols; j++) {
                float v = bf16_round(w[(size_t)r * cols + j] * (t % 2 ? s[r] : 1.0f));
                uint32_t u;
                memcpy(&u, &v, sizeof u);
                want[((size_t)(r / 2) * c16 + j) * 2 + r % 2] = (uint16_t)(u >> 16);
            }
        for (int k = 0; k < 3; k++) {
            memset(got, 0xa5, n * sizeof *got); /* padding the kernel skips fails */
            op_fold_bf16(p.pools[k], w, t % 2 ? s : NULL, rows, cols, got);
            ck_assert_msg(memcmp(got, want, n * sizeof *got) == 0, "op_fold_bf16 %dx%d: layout differs", rows,
                          cols);
        }
        free(w);
        free(s);
        free(got);
        free(want);
    }
    free_pools(&p);
}
END_TEST

typedef void (*bf16_pwconv_fn)(threadpool *tp, const tensor *in, const uint16_t *wbf, const float *bias,
                               act_kind act, tensor *out);

/* A bf16 1x1 kernel against the double reference of the same bf16-rounded operands:
 * what is left is fp32 accumulation (as op_pwconv_direct's tolerance). Shapes as
 * test_pwconv_direct's plus odd cin (the zero-padded pair), cin past one pair block of
 * 16 and past one row block; no pool and 2 and 3 threads (the first `pool_configs`),
 * bit-identical. Shapes above max_macs multiply-adds are left out (the emulated tile
 * unit is slow). */
/* Fill the next 256 KB of this thread's stack with NaN bit patterns, so that a kernel
 * that uses a stack buffer it has not fully written (padding it should zero) returns
 * NaN rather than the zeros a fresh stack would give it by luck. */
__attribute__((noinline)) static void poison_stack(void) {
    volatile unsigned char junk[256 << 10];
    memset((void *)junk, 0xff, sizeof junk);
    __asm__ volatile("" ::"r"(junk) : "memory");
}

static void check_bf16_kernel(bf16_pwconv_fn fn, const char *name, int pool_configs, double max_macs) {
    pools p = make_pools();
    const int rows_list[] = {1, 7, 13, 17, 100, 331, 2011};
    const int cins[] = {1, 3, 16, 17, 33, 240, 3456};
    const int couts[] = {1, 15, 17, 33, 50, 80, 88};
    int combo = 0;
    for (int i = 0; i < 7; i++)
        for (int j = 0; j < 7; j++)
            for (int c = 0; c < 7; c++, combo++) {
                int rows = rows_list[i], cin = cins[j], cout = couts[c];
                if (rows * cin > 400000 || (double)rows * cin * cout > max_macs) continue;
                act_kind act = combo % 3 == 0 ? ACT_NONE : combo % 3 == 1 ? ACT_SWISH : ACT_SIGMOID;
                float *in = random_floats((size_t)rows * cin, -2.0f, 2.0f);
                float *wt = random_floats((size_t)cin * cout, -0.5f, 0.5f);
                float *bias = combo % 2 ? random_floats((size_t)cout, -0.5f, 0.5f) : NULL;
                float *in_r = alloc_floats((size_t)rows * cin), *wt_r = alloc_floats((size_t)cin * cout);
                for (size_t e = 0; e < (size_t)rows * cin; e++) in_r[e] = bf16_round(in[e]);
                for (size_t e = 0; e < (size_t)cin * cout; e++) wt_r[e] = bf16_round(wt[e]);
                uint16_t *wbf = malloc(bf16_packed_elems(cin, cout) * sizeof *wbf);
                ck_assert_ptr_nonnull(wbf);
                op_fold_bf16(NULL, wt, NULL, cin, cout, wbf);
                size_t n = (size_t)rows * cout;
                double *ref = alloc_doubles(n);
                ref_pwconv(in_r, rows, cin, wt_r, bias, cout, act, ref);
                float *got[3];
                for (int t = 0; t < pool_configs; t++) {
                    got[t] = alloc_floats(n);
                    for (size_t e = 0; e < n; e++) got[t][e] = NAN;
                    tensor tin = {in, rows, 1, cin, 0}, tout = {got[t], rows, 1, cout, 0};
                    if (!p.pools[t]) poison_stack();
                    fn(p.pools[t], &tin, wbf, bias, act, &tout);
                    assert_close(got[t], ref, n, name);
                    if (t) assert_identical(got[0], got[t], n, name);
                }
                for (int t = 0; t < pool_configs; t++) free(got[t]);
                free(in);
                free(wt);
                free(bias);
                free(in_r);
                free(wt_r);
                free(wbf);
                free(ref);
            }
    free_pools(&p);
}

START_TEST(test_pwconv_bf16) {
    if (!cpu_has_bf16()) return;
    check_bf16_kernel(op_pwconv_bf16, "op_pwconv_bf16", 3, 1e30);
}
END_TEST

/* The AMX kernel's tiling (row, pair and column tails, the second row and column tile,
 * the padded pairs) on the emulated tile unit, on every CPU with AVX512_BF16; and the
 * real kernel where core/amx.c lets this process use AMX. */
START_TEST(test_pwconv_amx) {
    if (!cpu_has_bf16()) return;
    check_bf16_kernel(op_pwconv_amx_emulated, "op_pwconv_amx (emulated tiles)", 2, 3e6);
    const char *why;
    if (amx_usable(kernels_for_level(ISA_AVX512), &why)) {
        check_bf16_kernel(op_pwconv_amx, "op_pwconv_amx", 3, 1e30);
    } else {
        /* a kernel that fails its own self-test must fail here, not skip */
        ck_assert_msg(!strstr(why, "self-test failed"), "%s", why);
        printf("AMX kernel on the real tile unit SKIPPED: %s\n", why);
    }
}
END_TEST

/* Every 1x1 conv of a real bf16 network through the emulated tile unit, each checked
 * where it runs against op_pwconv_bf16 on the same input (the layer shapes of a real
 * model, row bands on pool threads, the per-request SE folds with their zero pair
 * padding, the dispatch of core/pointwise.c). Per layer the two differ by fp32
 * summation order only (measured <= ~1e-6 of the layer's range); a wrong tile, stride or
 * padding is >= 1e-2. Through a whole network those differences flip bf16 roundings of
 * later inputs and grow (random-weight D0: to ~5% of the class range), so only the tiny
 * model's outputs are compared end to end. */
static pthread_mutex_t amx_check_lock = PTHREAD_MUTEX_INITIALIZER;
static double amx_check_worst;
static int amx_check_calls;

static void checked_amx(threadpool *tp, const tensor *in, const uint16_t *wbf, const float *bias,
                        act_kind act, tensor *out) {
    size_t n = tensor_numel(out);
    float *want = alloc_floats(n);
    tensor t = *out;
    t.data = want;
    op_pwconv_bf16(tp, in, wbf, bias, act, &t);
    op_pwconv_amx_emulated(tp, in, wbf, bias, act, out);
    double e = tu_rel_err(out->data, want, n);
    pthread_mutex_lock(&amx_check_lock);
    if (!(e <= amx_check_worst)) amx_check_worst = e;
    amx_check_calls++;
    pthread_mutex_unlock(&amx_check_lock);
    free(want);
}

static void check_amx_emulated_forward(const char *weights, const char *input, int compare_outputs) {
    effdet_model *m;
    effdet_context *ref, *amx;
    effdet_error err;
    effdet_load_opts o;
    effdet_load_opts_default(&o);
    o.precision = EFFDET_PRECISION_BF16;
    ck_assert_msg(effdet_model_load_opts(weights, &o, &m, &err) == EFFDET_OK, "%s", err.msg);
    setenv("EFFDET_AMX", "0", 1);
    ck_assert_int_eq(effdet_context_create(m, 1, &ref, &err), EFFDET_OK);
    unsetenv("EFFDET_AMX");
    ck_assert_int_eq(effdet_context_create(m, 2, &amx, &err), EFFDET_OK);
    kernel_table emulated = *amx->k;
    emulated.pwconv_amx = checked_amx;
    amx->k = &emulated;
    amx->amx = 1;
    float *in = tu_read_file(input, NULL);
    ck_assert_ptr_nonnull(in);
    amx_check_worst = 0, amx_check_calls = 0;
    ck_assert_int_eq(effdet_forward(ref, in, &err), EFFDET_OK);
    ck_assert_int_eq(effdet_forward(amx, in, &err), EFFDET_OK);
    const char *name = effdet_model_info(m)->name;
    printf("%s: %d bf16 1x1 calls on emulated tiles, worst %.2e of a layer's range off vdpbf16ps\n", name,
           amx_check_calls, amx_check_worst);
    ck_assert_msg(amx_check_calls > 0, "%s: no 1x1 conv reached the AMX kernel", name);
    ck_assert_msg(amx_check_worst <= 1e-4, "%s: emulated amx off vdpbf16ps by %g of a layer's range", name,
                  amx_check_worst);
    for (int kind = 0; compare_outputs && kind < 2; kind++)
        for (int l = 0; l < EFFDET_NUM_LEVELS; l++) {
            effdet_tensor a, b;
            effdet_tensor_kind k = kind ? EFFDET_T_BOX : EFFDET_T_CLASS;
            ck_assert_int_eq(effdet_get_tensor(amx, k, l, &a), EFFDET_OK);
            ck_assert_int_eq(effdet_get_tensor(ref, k, l, &b), EFFDET_OK);
            double e = tu_rel_err(a.data, b.data, (size_t)a.h * a.w * a.c);
            ck_assert_msg(e <= 0.02, "%s: emulated amx %s P%d off by %g of its range", name,
                          kind ? "box" : "class", l + 3, e);
        }
    free(in);
    effdet_context_free(ref);
    effdet_context_free(amx);
    effdet_model_free(m);
}

START_TEST(test_amx_emulated_forward) {
    if (!cpu_has_bf16()) return;
    char w[1024], in[1024];
    snprintf(w, sizeof w, "%s", tu_fixture("weights.safetensors")); /* tu_fixture's buffer is static */
    snprintf(in, sizeof in, "%s", tu_fixture("input.f32"));
    check_amx_emulated_forward(w, in, 1);
    snprintf(w, sizeof w, "%s/d0/weights.safetensors", tu_shared_dir());
    snprintf(in, sizeof in, "%s/d0/input.f32", tu_shared_dir());
    check_amx_emulated_forward(w, in, 0);
}
END_TEST
#endif

static Suite *ops_suite(void) {
    Suite *s = suite_create("ops");
    TCase *tc = tcase_create("kernels");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_activation_extremes);
    tcase_add_test(tc, test_expf_sweep);
#ifdef HAVE_VEXP
    tcase_add_test(tc, test_vexp_sweep);
    tcase_add_test(tc, test_vswish_matches_scalar);
#endif
    tcase_add_test(tc, test_op_activate_and_add);
    tcase_add_test(tc, test_tf_same_padding_cases);
    tcase_add_test(tc, test_conv2d);
    tcase_add_test(tc, test_dwconv);
    tcase_add_test(tc, test_pwconv);
    tcase_add_test(tc, test_pwconv_direct);
    tcase_add_test(tc, test_pwconv_paths_agree);
    tcase_add_test(tc, test_se_fused);
    tcase_add_test(tc, test_maxpool);
    tcase_add_test(tc, test_upsample);
    tcase_add_test(tc, test_fuse);
#if defined(__AVX512F__)
    tcase_add_test(tc, test_fold_bf16_layout);
    tcase_add_test(tc, test_pwconv_bf16);
    tcase_add_test(tc, test_pwconv_amx);
    tcase_add_test(tc, test_amx_emulated_forward);
#endif
    suite_add_tcase(s, tc);
    return s;
}

int main(void) {
    /* The kernels parallelise across our own pool; OpenBLAS must not add its own. */
    openblas_set_num_threads(1);
    return tu_run_suite(ops_suite());
}
