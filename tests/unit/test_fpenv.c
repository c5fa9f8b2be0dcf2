/*
 * The floating-point contract of effdet.h, and every kernel level on the frames that
 * made the engine slow (a black frame, uniform noise in [-2, 2]):
 *   - the caller's MXCSR comes back exactly as it was (modes and exception flags), and
 *     the results do not depend on it: the same bits under round-toward-zero, with
 *     FTZ/DAZ already on, or with every exception unmasked (where any inexact float
 *     operation outside the kernel mode would raise SIGFPE);
 *   - the pool's own threads run with FTZ|DAZ;
 *   - on black and noise frames every level (baseline, avx2, avx512 where the CPU has
 *     them) gives finite outputs, the same number of detections, and agrees with the
 *     baseline level: the first backbone feature (P3: stem and the first three stages)
 *     within 1e-4 of its largest value, every BiFPN/head output within 5e-2. Not the
 *     parity tolerance (1e-3) at the end: on these frames, far from any image (and with
 *     random weights), d0 blows activations up to ~1e4 and amplifies rounding 10-100x
 *     per later backbone stage. Measured on an AMD Zen 5, baseline (no FMA) vs the FMA
 *     levels, noise: feat_0 9e-7, feat_1 1e-5, feat_2 1e-3, BiFPN 2.4e-3 (OpenBLAS as
 *     Haswell) and heads up to 1.2e-2 (OpenBLAS's own kernels); black frame 4.3e-4 /
 *     1.2e-3; one level at 1 vs 2 threads: 5e-4. A mishandled subnormal or a wrong
 *     kernel shows up as a non-finite value or an error of order 1.
 */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/cpu.h"
#include "core/threadpool.h"
#include "effdet.h"
#include "effdet_debug.h"
#include "testutil.h"

#if defined(__x86_64__)
#include <xmmintrin.h>
#define MXCSR_DEFAULT 0x1f80u /* what a process starts with: exceptions masked, round to nearest */
#define MXCSR_FTZ 0x8000u
#define MXCSR_DAZ 0x0040u
#define MXCSR_ROUND_ZERO 0x6000u
#define MXCSR_ROUND_UP 0x4000u
#define MXCSR_MASKS 0x1f80u
#endif

static const char *level_name[5] = {"P3", "P4", "P5", "P6", "P7"};

typedef struct {
    effdet_model *m;
    effdet_context *ctx;
} engine;

static void open_engine(engine *e, const char *model, int threads) {
    effdet_error err;
    ck_assert_msg(effdet_model_load(model, &e->m, &err) == EFFDET_OK, "%s", err.msg);
    ck_assert_msg(effdet_context_create(e->m, threads, &e->ctx, &err) == EFFDET_OK, "%s", err.msg);
    ck_assert_msg(effdet_context_keep_tensors(e->ctx, &err) == EFFDET_OK, "%s", err.msg);
}

static void close_engine(engine *e) {
    effdet_context_free(e->ctx);
    effdet_model_free(e->m);
}

/* Every BiFPN, class and box output, concatenated (NHWC as the context holds them).
 * dst NULL: only the count. */
static size_t gather_outputs(const effdet_context *ctx, float *dst) {
    static const effdet_tensor_kind kinds[3] = {EFFDET_T_FPN, EFFDET_T_CLASS, EFFDET_T_BOX};
    size_t n = 0;
    for (int k = 0; k < 3; k++)
        for (int l = 0; l < EFFDET_NUM_LEVELS; l++) {
            effdet_tensor t;
            ck_assert_int_eq(effdet_get_tensor(ctx, kinds[k], l, &t), EFFDET_OK);
            size_t len = (size_t)t.h * t.w * t.c;
            if (dst) memcpy(dst + n, t.data, len * sizeof(float));
            n += len;
        }
    return n;
}

static float *input_noise(const effdet_info *info) {
    size_t n = (size_t)info->input_h * info->input_w * 3;
    float *x = malloc(n * sizeof *x);
    ck_assert_ptr_nonnull(x);
    uint32_t seed = 2024;
    tu_fill_random(x, n, -2.0f, 2.0f, &seed);
    return x;
}

/* A black RGB image (every pixel 0), letterboxed and normalised by the library. */
static effdet_image black_image(int w, int h) {
    effdet_image img = {.rgb = calloc((size_t)w * h * 3, 1), .width = w, .height = h};
    ck_assert_ptr_nonnull(img.rgb);
    return img;
}

#if defined(__x86_64__)
/* Forward + detection with the caller's MXCSR set to `mode`; MXCSR is read back before
 * any other float operation of the test and reset to the default. Returns the outputs
 * (malloc'd) and the detection count; *after gets the caller's MXCSR after each call. */
static float *run_in_mode(engine *e, const float *input, const effdet_image *img, unsigned mode, unsigned *after_forward,
                          unsigned *after_detect, int *ndet) {
    effdet_error err;
    effdet_result r;
    _mm_setcsr(mode);
    effdet_status st = effdet_forward(e->ctx, input, &err);
    *after_forward = _mm_getcsr();
    _mm_setcsr(MXCSR_DEFAULT);
    ck_assert_msg(st == EFFDET_OK, "%s", err.msg);
    float *out = malloc(gather_outputs(e->ctx, NULL) * sizeof(float));
    ck_assert_ptr_nonnull(out);
    gather_outputs(e->ctx, out);
    _mm_setcsr(mode);
    st = effdet_detect_image(e->ctx, img, NULL, &r, &err);
    *after_detect = _mm_getcsr();
    _mm_setcsr(MXCSR_DEFAULT);
    ck_assert_msg(st == EFFDET_OK, "%s", err.msg);
    *ndet = r.count;
    /* effdet_postprocess on its own (a caller that runs effdet_forward first). */
    effdet_result r2;
    _mm_setcsr(mode);
    st = effdet_postprocess(e->ctx, 0, 0, NULL, &r2, &err);
    unsigned after_pp = _mm_getcsr();
    _mm_setcsr(MXCSR_DEFAULT);
    ck_assert_msg(st == EFFDET_OK, "%s", err.msg);
    ck_assert_msg(after_pp == mode, "effdet_postprocess left MXCSR %#x, the caller had %#x", after_pp, mode);
    return out;
}

START_TEST(test_caller_mxcsr_restored) {
    engine e;
    open_engine(&e, tu_fixture("weights.safetensors"), 2);
    float *input = tu_read_file(tu_fixture("input.f32"), NULL);
    ck_assert_ptr_nonnull(input);
    effdet_image img = black_image(200, 150);
    unsigned af, ad;
    int nref, ndet;
    float *ref = run_in_mode(&e, input, &img, MXCSR_DEFAULT, &af, &ad, &nref);
    size_t n = gather_outputs(e.ctx, NULL);
    ck_assert_uint_eq(af, MXCSR_DEFAULT);
    ck_assert_uint_eq(ad, MXCSR_DEFAULT);
    /* Round toward zero; FTZ|DAZ and round up already set; every exception unmasked
     * with a sticky flag (precision) already raised by the caller. */
    static const unsigned modes[3] = {MXCSR_DEFAULT | MXCSR_ROUND_ZERO,
                                      MXCSR_DEFAULT | MXCSR_FTZ | MXCSR_DAZ | MXCSR_ROUND_UP,
                                      (MXCSR_DEFAULT & ~MXCSR_MASKS) | 0x20u};
    for (int i = 0; i < 3; i++) {
        float *out = run_in_mode(&e, input, &img, modes[i], &af, &ad, &ndet);
        ck_assert_msg(af == modes[i], "effdet_forward left MXCSR %#x, the caller had %#x", af, modes[i]);
        ck_assert_msg(ad == modes[i], "effdet_detect_image left MXCSR %#x, the caller had %#x", ad, modes[i]);
        ck_assert_msg(memcmp(out, ref, n * sizeof(float)) == 0, "outputs depend on the caller's MXCSR %#x", modes[i]);
        ck_assert_int_eq(ndet, nref);
        free(out);
    }
    free(ref);
    free(img.rgb);
    free(input);
    close_engine(&e);
}
END_TEST

/* Long enough (~0.2 ms) that a sleeping worker wakes before the caller has run every
 * chunk itself. */
static void record_mxcsr(void *arg, int begin, int end) {
    unsigned *seen = arg;
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    do clock_gettime(CLOCK_MONOTONIC, &t);
    while ((t.tv_sec - t0.tv_sec) * 1000000000L + (t.tv_nsec - t0.tv_nsec) < 200000L);
    for (int i = begin; i < end; i++) seen[i] = _mm_getcsr();
}

/* The pool's threads (not the caller: it may run any chunk, so every chunk is checked
 * for the mode only the workers set at start when the caller has the default). */
START_TEST(test_pool_threads_flush_subnormals) {
    threadpool *tp = threadpool_create(3);
    ck_assert_ptr_nonnull(tp);
    enum { N = 3 };
    int worker_chunks = 0;
    for (int round = 0; round < 200 && worker_chunks == 0; round++) {
        unsigned seen[N] = {0};
        threadpool_run(tp, N, 1, record_mxcsr, seen);
        for (int i = 0; i < N; i++)
            if (seen[i] != MXCSR_DEFAULT) {
                ck_assert_msg((seen[i] & (MXCSR_FTZ | MXCSR_DAZ)) == (MXCSR_FTZ | MXCSR_DAZ),
                              "a pool thread runs with MXCSR %#x: no FTZ|DAZ", seen[i]);
                worker_chunks++;
            }
    }
    ck_assert_msg(worker_chunks > 0, "no chunk ever ran on a pool thread");
    ck_assert_uint_eq(_mm_getcsr(), MXCSR_DEFAULT);
    threadpool_free(tp);
}
END_TEST
#endif

/* Black frame and noise at every level the CPU has: finite, and close to the baseline
 * level's outputs (see the top of the file for the tolerances). */
static void check_levels(const char *model, int threads) {
    cpu_features f;
    cpu_detect(&f);
    const char *saved = getenv("EFFDET_ISA");
    char *saved_copy = saved ? strdup(saved) : NULL;
    float *ref[2] = {NULL, NULL}, *ref_feat[2] = {NULL, NULL};
    int ref_count[2] = {0, 0};
    for (int l = 0; l < ISA_COUNT; l++) {
        if (!cpu_supports(&f, (isa_level)l) && l != ISA_BASELINE) continue;
        setenv("EFFDET_ISA", isa_name((isa_level)l), 1);
        engine e;
        open_engine(&e, model, threads);
        ck_assert_str_eq(effdet_context_isa(e.ctx), isa_name((isa_level)l));
        const effdet_info *info = effdet_model_info(e.m);
        float *noise = input_noise(info);
        effdet_image black = black_image(640, 480);
        for (int which = 0; which < 2; which++) {
            effdet_error err;
            effdet_result r;
            if (which == 0)
                ck_assert_msg(effdet_detect_image(e.ctx, &black, NULL, &r, &err) == EFFDET_OK, "%s", err.msg);
            else {
                ck_assert_msg(effdet_forward(e.ctx, noise, &err) == EFFDET_OK, "%s", err.msg);
                ck_assert_int_eq(effdet_postprocess(e.ctx, 0, 0, NULL, &r, &err), EFFDET_OK);
            }
            size_t n = gather_outputs(e.ctx, NULL);
            float *out = malloc(n * sizeof *out);
            ck_assert_ptr_nonnull(out);
            gather_outputs(e.ctx, out);
            /* One assertion, not one per element: each ck_assert writes to Check's log. */
            size_t bad = 0;
            for (size_t i = 0; i < n; i++) bad += !isfinite(out[i]);
            ck_assert_msg(bad == 0, "%zu outputs are not finite", bad);
            effdet_tensor f0;
            ck_assert_int_eq(effdet_get_tensor(e.ctx, EFFDET_T_FEAT, 0, &f0), EFFDET_OK);
            size_t nf = (size_t)f0.h * f0.w * f0.c;
            if (!ref[which]) {
                ref_feat[which] = malloc(nf * sizeof(float));
                ck_assert_ptr_nonnull(ref_feat[which]);
                memcpy(ref_feat[which], f0.data, nf * sizeof(float));
                ref[which] = out;
                ref_count[which] = r.count;
                printf("  %s %s, %s kernels: %d detections\n", info->name, which ? "noise" : "black frame",
                       effdet_context_isa(e.ctx), r.count);
                continue;
            }
            double df = tu_rel_err(f0.data, ref_feat[which], nf);
            ck_assert_msg(df <= 1e-4, "%s %s, %s kernels: feat_0 differs from baseline by %g", info->name,
                          which ? "noise" : "black frame", effdet_context_isa(e.ctx), df);
            /* Per tensor, like test_parity. */
            size_t at = 0;
            for (int k = 0; k < 3; k++)
                for (int lv = 0; lv < EFFDET_NUM_LEVELS; lv++) {
                    static const effdet_tensor_kind kinds[3] = {EFFDET_T_FPN, EFFDET_T_CLASS, EFFDET_T_BOX};
                    effdet_tensor t;
                    effdet_get_tensor(e.ctx, kinds[k], lv, &t);
                    size_t len = (size_t)t.h * t.w * t.c;
                    double d = tu_rel_err(out + at, ref[which] + at, len);
                    ck_assert_msg(d <= 5e-2, "%s %s, %s kernels: tensor %d %s differs from baseline by %g", info->name,
                                  which ? "noise" : "black frame", effdet_context_isa(e.ctx), k, level_name[lv], d);
                    at += len;
                }
            printf("  %s %s, %s kernels: %d detections, feat_0 within %.2g of baseline, outputs within %.2g\n",
                   info->name, which ? "noise" : "black frame", effdet_context_isa(e.ctx), r.count, df,
                   tu_rel_err(out, ref[which], n));
            ck_assert_int_eq(r.count, ref_count[which]);
            free(out);
        }
        free(black.rgb);
        free(noise);
        close_engine(&e);
    }
    free(ref[0]);
    free(ref[1]);
    free(ref_feat[0]);
    free(ref_feat[1]);
    if (saved_copy) setenv("EFFDET_ISA", saved_copy, 1);
    else
        unsetenv("EFFDET_ISA");
    free(saved_copy);
}

START_TEST(test_black_and_noise_tiny) { check_levels(tu_fixture("weights.safetensors"), 2); }
END_TEST

START_TEST(test_black_and_noise_d0) {
    const char *shared = tu_shared_dir();
    if (!shared) return;
    char model[1100];
    snprintf(model, sizeof model, "%s/d0/weights.safetensors", shared);
    check_levels(model, 2);
}
END_TEST

/* EFFDET_ISA: an unknown level is an error naming the variable; so is a level the CPU
 * lacks (checked with a made-up CPU: this one may have them all). */
START_TEST(test_isa_selection) {
    cpu_features none, all;
    memset(&none, 0, sizeof none);
    cpu_detect(&all);
    isa_level l;
    effdet_error err;
    ck_assert_int_eq(cpu_select_level(&all, "sse9", &l, &err), EFFDET_ERR_ARG);
    ck_assert_ptr_nonnull(strstr(err.msg, "EFFDET_ISA"));
    ck_assert_int_eq(cpu_select_level(&none, "avx512", &l, &err), EFFDET_ERR_ARG);
    ck_assert_ptr_nonnull(strstr(err.msg, "EFFDET_ISA=avx512"));
    ck_assert_int_eq(cpu_select_level(&none, "avx2", &l, &err), EFFDET_ERR_ARG);
    ck_assert_int_eq(cpu_select_level(&none, "baseline", &l, &err), EFFDET_OK);
    ck_assert_int_eq(l, ISA_BASELINE);
    ck_assert_int_eq(cpu_select_level(&none, NULL, &l, &err), EFFDET_OK);
    ck_assert_int_eq(l, ISA_BASELINE);
    /* AVX-512 in CPUID but not enabled by the OS (XCR0): not usable. */
    cpu_features no_os = all;
    no_os.os_avx512 = 0;
    ck_assert(!cpu_supports(&no_os, ISA_AVX512));
    ck_assert_int_eq(cpu_select_level(&all, NULL, &l, &err), EFFDET_OK);
    ck_assert_int_eq(l, cpu_best_level(&all));
    /* Through the public API: context creation fails with the message. */
    const char *saved = getenv("EFFDET_ISA");
    char *saved_copy = saved ? strdup(saved) : NULL;
    setenv("EFFDET_ISA", "sse9", 1);
    effdet_model *m;
    effdet_context *ctx = NULL;
    ck_assert_int_eq(effdet_model_load(tu_fixture("weights.safetensors"), &m, &err), EFFDET_OK);
    ck_assert_int_eq(effdet_context_create(m, 1, &ctx, &err), EFFDET_ERR_ARG);
    ck_assert_ptr_null(ctx);
    ck_assert_ptr_nonnull(strstr(err.msg, "EFFDET_ISA=sse9"));
    effdet_model_free(m);
    if (saved_copy) setenv("EFFDET_ISA", saved_copy, 1);
    else
        unsetenv("EFFDET_ISA");
    free(saved_copy);
}
END_TEST

int main(void) {
    Suite *s = suite_create("fpenv");
    TCase *tc = tcase_create("fpenv");
    tcase_set_timeout(tc, 600);
#if defined(__x86_64__)
    tcase_add_test(tc, test_caller_mxcsr_restored);
    tcase_add_test(tc, test_pool_threads_flush_subnormals);
#endif
    tcase_add_test(tc, test_isa_selection);
    tcase_add_test(tc, test_black_and_noise_tiny);
    tcase_add_test(tc, test_black_and_noise_d0);
    suite_add_tcase(s, tc);
    return tu_run_suite(s);
}
