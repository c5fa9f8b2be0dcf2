#include "testutil.h"

#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

void *tu_read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    void *buf = malloc(n > 0 ? (size_t)n : 1);
    if (buf && n > 0 && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    if (buf && len) *len = (size_t)n;
    return buf;
}

const char *tu_shared_dir(void) {
    const char *dir = getenv("EFFDET_SHARED");
    if (!dir || !*dir) dir = "../shared/reference";
    struct stat st;
    if (stat(dir, &st) == 0 && S_ISDIR(st.st_mode)) return dir;
    const char *skip = getenv("EFFDET_SKIP_SHARED");
    fprintf(stderr, "\n*** shared reference fixtures NOT FOUND at %s ***\n", dir);
    if (skip && skip[0] == '1') {
        fprintf(stderr, "*** EFFDET_SKIP_SHARED=1: skipping the tests that need them ***\n\n");
        return NULL;
    }
    ck_abort_msg("shared fixtures missing at %s (set EFFDET_SHARED, or EFFDET_SKIP_SHARED=1 to skip)", dir);
    return NULL;
}

const char *tu_fixture(const char *name) {
    static char buf[1024];
    snprintf(buf, sizeof buf, "tests/fixtures/%s", name);
    return buf;
}

double tu_rel_err(const float *a, const float *b, size_t n) {
    double maxdiff = 0, maxref = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (isnan(d) || d > maxdiff) maxdiff = d; /* a NaN sticks: nothing exceeds it */
        if (fabs(b[i]) > maxref) maxref = fabs(b[i]);
    }
    if (maxref == 0) return maxdiff == 0 ? 0 : INFINITY;
    return maxdiff / maxref;
}

void tu_nchw_to_nhwc(const float *src, int c, int h, int w, float *dst) {
    for (int ch = 0; ch < c; ch++)
        for (int i = 0; i < h * w; i++) dst[(size_t)i * c + ch] = src[(size_t)ch * h * w + i];
}

void tu_nhwc_to_nchw(const float *src, int h, int w, int c, float *dst) {
    for (int ch = 0; ch < c; ch++)
        for (int i = 0; i < h * w; i++) dst[(size_t)ch * h * w + i] = src[(size_t)i * c + ch];
}

void tu_fill_random(float *x, size_t n, float lo, float hi, uint32_t *state) {
    for (size_t i = 0; i < n; i++) {
        *state = *state * 1664525u + 1013904223u;
        x[i] = lo + (hi - lo) * (float)((*state >> 8) / 16777216.0);
    }
}

float *tu_random_floats(size_t n, float lo, float hi, uint32_t *state) {
    float *x = malloc((n ? n : 1) * sizeof *x);
    ck_assert_ptr_nonnull(x);
    tu_fill_random(x, n, lo, hi, state);
    return x;
}

int tu_run_suite(Suite *s) {
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
