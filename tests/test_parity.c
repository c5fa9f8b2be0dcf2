/*
 * Engine parity: run the network on the reference input and compare every tensor the
 * reference dumped (backbone features, extra levels, BiFPN outputs, class logits, box
 * deltas) with max|ours - ref| <= 1e-3 * max|ref| (README of the fixtures).
 * tiny lives in tests/fixtures/; d0 is read from the shared reference directory.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "effdet.h"
#include "testutil.h"

#define TOL 1e-3

static const char *level_name[5] = {"P3", "P4", "P5", "P6", "P7"};

/* Compare one of our NHWC tensors with a reference NCHW file; returns the relative error,
 * or -1 when the file is absent. */
static double compare_file(const effdet_tensor *t, const char *dir, const char *file) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    size_t len;
    float *ref = tu_read_file(path, &len);
    if (!ref) return -1;
    size_t n = (size_t)t->h * t->w * t->c;
    ck_assert_msg(len == n * sizeof(float), "%s: %zu bytes, expected %zu", path, len, n * sizeof(float));
    float *ours = malloc(n * sizeof(float));
    tu_nhwc_to_nchw(t->data, t->h, t->w, t->c, ours);
    double e = tu_rel_err(ours, ref, n);
    free(ours);
    free(ref);
    return e;
}

static void check_tensor(effdet_context *ctx, effdet_tensor_kind kind, int idx, const char *dir, const char *file,
                         int required) {
    effdet_tensor t;
    ck_assert_int_eq(effdet_get_tensor(ctx, kind, idx, &t), EFFDET_OK);
    double e = compare_file(&t, dir, file);
    if (e < 0) {
        ck_assert_msg(!required, "%s/%s missing", dir, file);
        return;
    }
    printf("  %-24s rel err %.3g\n", file, e);
    ck_assert_msg(e <= TOL, "%s/%s: max|ours-ref|/max|ref| = %g > %g", dir, file, e, TOL);
}

static void run_parity(const char *model_path, const char *dir, int threads) {
    effdet_model *m;
    effdet_context *ctx;
    effdet_error err;
    ck_assert_msg(effdet_model_load(model_path, &m, &err) == EFFDET_OK, "%s", err.msg);
    ck_assert_msg(effdet_context_create(m, threads, &ctx, &err) == EFFDET_OK, "%s", err.msg);
    char path[1024];
    snprintf(path, sizeof path, "%s/input.f32", dir);
    size_t len;
    float *input = tu_read_file(path, &len);
    const effdet_info *info = effdet_model_info(m);
    ck_assert_ptr_nonnull(input);
    ck_assert_uint_eq(len, (size_t)info->input_h * info->input_w * 3 * sizeof(float));
    ck_assert_msg(effdet_forward(ctx, input, &err) == EFFDET_OK, "%s", err.msg);
    printf("%s (%d thread%s):\n", dir, threads, threads > 1 ? "s" : "");
    char name[64];
    for (int f = 0; f < 3; f++) {
        snprintf(name, sizeof name, "feat_%d.f32", f);
        check_tensor(ctx, EFFDET_T_FEAT, f, dir, name, 1);
    }
    check_tensor(ctx, EFFDET_T_FPN_IN, 0, dir, "fpn_in_P6.f32", 1);
    check_tensor(ctx, EFFDET_T_FPN_IN, 1, dir, "fpn_in_P7.f32", 1);
    for (int l = 0; l < 5; l++) {
        snprintf(name, sizeof name, "fpn_%s.f32", level_name[l]);
        check_tensor(ctx, EFFDET_T_FPN, l, dir, name, 1);
        /* alt directories omit the class logits to save space */
        snprintf(name, sizeof name, "class_%s.f32", level_name[l]);
        check_tensor(ctx, EFFDET_T_CLASS, l, dir, name, 0);
        snprintf(name, sizeof name, "box_%s.f32", level_name[l]);
        check_tensor(ctx, EFFDET_T_BOX, l, dir, name, 1);
    }
    free(input);
    effdet_context_free(ctx);
    effdet_model_free(m);
}

START_TEST(test_tiny_main) { run_parity(tu_fixture("weights.safetensors"), "tests/fixtures", 1); }
END_TEST

START_TEST(test_tiny_alt) { run_parity(tu_fixture("weights.safetensors"), "tests/fixtures/alt", 2); }
END_TEST

/* The float64 reference: report how close float32 gets (the aim is < 1e-4). */
START_TEST(test_tiny_vs_float64) {
    effdet_model *m;
    effdet_context *ctx;
    effdet_error err;
    ck_assert_int_eq(effdet_model_load(tu_fixture("weights.safetensors"), &m, &err), EFFDET_OK);
    ck_assert_int_eq(effdet_context_create(m, 1, &ctx, &err), EFFDET_OK);
    float *input = tu_read_file(tu_fixture("input.f32"), NULL);
    ck_assert_int_eq(effdet_forward(ctx, input, &err), EFFDET_OK);
    printf("tiny vs float64 reference:\n");
    double worst = 0;
    for (int l = 0; l < 5; l++) {
        static const effdet_tensor_kind kinds[3] = {EFFDET_T_FPN, EFFDET_T_CLASS, EFFDET_T_BOX};
        static const char *prefix[3] = {"ref64_fpn", "ref64_class", "ref64_box"};
        for (int k = 0; k < 3; k++) {
            char name[64];
            snprintf(name, sizeof name, "%s_%s.f32", prefix[k], level_name[l]);
            effdet_tensor t;
            effdet_get_tensor(ctx, kinds[k], l, &t);
            double e = compare_file(&t, "tests/fixtures", name);
            ck_assert_msg(e >= 0, "missing %s", name);
            printf("  %-24s rel err %.3g\n", name, e);
            if (e > worst) worst = e;
        }
    }
    printf("  worst vs float64: %.3g (aim < 1e-4)\n", worst);
    ck_assert(worst <= TOL);
    free(input);
    effdet_context_free(ctx);
    effdet_model_free(m);
}
END_TEST

static void run_shared_d0(const char *sub, int threads) {
    const char *shared = tu_shared_dir();
    if (!shared) return;
    char model[1024], dir[1024];
    snprintf(model, sizeof model, "%s/d0/weights.safetensors", shared);
    snprintf(dir, sizeof dir, "%s/d0%s", shared, sub);
    run_parity(model, dir, threads);
}

START_TEST(test_d0_main) { run_shared_d0("", 2); }
END_TEST

START_TEST(test_d0_alt) { run_shared_d0("/alt", 1); }
END_TEST

int main(void) {
    Suite *s = suite_create("parity");
    TCase *tc = tcase_create("parity");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, test_tiny_main);
    tcase_add_test(tc, test_tiny_alt);
    tcase_add_test(tc, test_tiny_vs_float64);
    tcase_add_test(tc, test_d0_main);
    tcase_add_test(tc, test_d0_alt);
    suite_add_tcase(s, tc);
    return tu_run_suite(s);
}
