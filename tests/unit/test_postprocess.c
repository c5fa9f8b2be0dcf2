/*
 * Post-processing against the reference: anchors from effdet's formula (below), top-k
 * against topk_*.{f32,i32} and a full stable sort, detections against detections.json,
 * and NMS / soft-NMS against straightforward re-implementations written here.
 */
#include <check.h>
#include <json-c/json.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/clock.h"
#include "model/arch.h"
#include "post/anchors.h"
#include "post/nms.h"
#include "post/postprocess.h"
#include "post/rank.h"
#include "post/topk.h"
#include "testutil.h"

/* ------------------------------------------------------------------ setup */

/* The anchor settings every EfficientDet uses; level sizes by ceil-halving. */
static void make_arch(effdet_arch *a, int image_h, int image_w, int num_classes) {
    memset(a, 0, sizeof *a);
    a->image_h = image_h;
    a->image_w = image_w;
    a->min_level = 3;
    a->max_level = 7;
    a->num_scales = 3;
    a->num_aspects = 3;
    const float aspect[3][2] = {{1.0f, 1.0f}, {1.4f, 0.7f}, {0.7f, 1.4f}};
    memcpy(a->aspect, aspect, sizeof aspect);
    a->anchor_scale = 4.0;
    a->num_classes = num_classes;
    a->num_anchors = 9;
    int h = image_h, w = image_w;
    for (int level = 1; level <= 7; level++) {
        h = (h + 1) / 2;
        w = (w + 1) / 2;
        if (level >= 3) {
            a->level_h[level - 3] = h;
            a->level_w[level - 3] = w;
        }
    }
}

/* Reference head outputs of one fixture directory, transposed to channels-last. */
typedef struct {
    float *cls[EFFDET_NUM_LEVELS], *box[EFFDET_NUM_LEVELS];
    head_outputs h;
} heads;

static float *load_nhwc(const char *dir, const char *prefix, int level, int c, int hh, int ww) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s_P%d.f32", dir, prefix, level);
    size_t len = 0;
    float *nchw = tu_read_file(path, &len);
    ck_assert_msg(nchw != NULL, "cannot read %s", path);
    ck_assert_msg(len == (size_t)c * hh * ww * sizeof(float), "%s: %zu bytes", path, len);
    float *nhwc = malloc(len);
    tu_nchw_to_nhwc(nchw, c, hh, ww, nhwc);
    free(nchw);
    return nhwc;
}

static void load_heads(heads *hd, const char *dir, const anchor_grid *g) {
    for (int l = 0; l < EFFDET_NUM_LEVELS; l++) {
        hd->cls[l] =
            load_nhwc(dir, "class", l + 3, g->num_anchors * g->num_classes, g->level_h[l], g->level_w[l]);
        hd->box[l] = load_nhwc(dir, "box", l + 3, g->num_anchors * 4, g->level_h[l], g->level_w[l]);
        hd->h.cls[l] = hd->cls[l];
        hd->h.box[l] = hd->box[l];
    }
}

static void free_heads(heads *hd) {
    for (int l = 0; l < EFFDET_NUM_LEVELS; l++) {
        free(hd->cls[l]);
        free(hd->box[l]);
    }
}

/* Synthetic heads: random logits and small random deltas. */
static void random_heads(heads *hd, const anchor_grid *g, float lo, float hi, float dmax, uint32_t seed) {
    for (int l = 0; l < EFFDET_NUM_LEVELS; l++) {
        size_t n = (size_t)g->level_h[l] * g->level_w[l] * g->num_anchors;
        hd->cls[l] = malloc(n * g->num_classes * sizeof(float));
        hd->box[l] = malloc(n * 4 * sizeof(float));
        tu_fill_random(hd->cls[l], n * g->num_classes, lo, hi, &seed);
        tu_fill_random(hd->box[l], n * 4, -dmax, dmax, &seed);
        hd->h.cls[l] = hd->cls[l];
        hd->h.box[l] = hd->box[l];
    }
}

static void *read_i32_or_f32(const char *dir, const char *name, size_t expect_len) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    size_t len = 0;
    void *p = tu_read_file(path, &len);
    ck_assert_msg(p != NULL, "cannot read %s", path);
    ck_assert_msg(len == expect_len, "%s: %zu bytes, expected %zu", path, len, expect_len);
    return p;
}

/* ---------------------------------------------------------------- anchors */

/* effdet's anchor for one global anchor index (level P3 first, row-major over (y, x), then
 * a = octave * 3 + aspect; docs/engine.md, Anchors), written out independently of anchors.c. */
static void anchor_by_formula(const effdet_arch *a, int index, float out[4]) {
    static const double aspect[3][2] = {{1.0, 1.0}, {1.4, 0.7}, {0.7, 1.4}};
    int l = 0, offset = 0;
    while (index >= offset + a->level_h[l] * a->level_w[l] * 9) {
        offset += a->level_h[l] * a->level_w[l] * 9;
        l++;
    }
    int local = index - offset, k = local % 9, loc = local / 9;
    int y = loc / a->level_w[l], x = loc % a->level_w[l];
    int octave = k / 3, r = k % 3;
    double sy = (double)a->image_h / a->level_h[l], sx = (double)a->image_w / a->level_w[l];
    double cy = sy / 2 + y * sy, cx = sx / 2 + x * sx;
    double hw = a->anchor_scale * sx * pow(2.0, octave / 3.0) * aspect[r][0] / 2.0;
    double hh = a->anchor_scale * sy * pow(2.0, octave / 3.0) * aspect[r][1] / 2.0;
    out[0] = (float)(cy - hh);
    out[1] = (float)(cx - hw);
    out[2] = (float)(cy + hh);
    out[3] = (float)(cx + hw);
}

static void check_anchor_spots(const effdet_arch *a, const anchor_grid *g) {
    uint32_t seed = 7;
    for (int i = 0; i < 400; i++) {
        int idx;
        if (i < 2 * EFFDET_NUM_LEVELS) /* first and last anchor of each level */
            idx = i % 2 == 0 ? g->level_offset[i / 2]
                             : (i / 2 + 1 < EFFDET_NUM_LEVELS ? g->level_offset[i / 2 + 1] : g->total) - 1;
        else {
            seed = seed * 1664525u + 1013904223u;
            idx = (int)((seed >> 8) % (uint32_t)g->total);
        }
        float want[4];
        anchor_by_formula(a, idx, want);
        for (int k = 0; k < 4; k++)
            ck_assert_msg(g->boxes[idx * 4 + k] == want[k], "anchor %d coord %d: %.9g, formula %.9g", idx, k,
                          g->boxes[idx * 4 + k], want[k]);
    }
}

START_TEST(test_anchors_d0) {
    effdet_arch a;
    make_arch(&a, 512, 512, 90);
    anchor_grid g;
    effdet_error err;
    ck_assert_int_eq(anchors_build(&g, &a, &err), EFFDET_OK);
    ck_assert_int_eq(g.total, 49104);
    static const int offsets[5] = {0, 36864, 46080, 48384, 48960};
    for (int l = 0; l < 5; l++) ck_assert_int_eq(g.level_offset[l], offsets[l]);
    /* P3 (0, 0), octave 0, aspect (1, 1): centre 4, half size 4 * 8 / 2 = 16 */
    ck_assert(g.boxes[0] == -12.0f && g.boxes[1] == -12.0f && g.boxes[2] == 20.0f && g.boxes[3] == 20.0f);
    check_anchor_spots(&a, &g);
    anchors_free(&g);
}
END_TEST

START_TEST(test_anchors_tiny_and_nonsquare) {
    effdet_arch a;
    anchor_grid g;
    make_arch(&a, 128, 128, 4);
    ck_assert_int_eq(anchors_build(&g, &a, NULL), EFFDET_OK);
    ck_assert_int_eq(g.total, (256 + 64 + 16 + 4 + 1) * 9);
    check_anchor_spots(&a, &g);
    anchors_free(&g);
    /* Non-square and not a multiple of 128: strides differ per axis and are fractional. */
    make_arch(&a, 384, 640, 3);
    ck_assert_int_eq(anchors_build(&g, &a, NULL), EFFDET_OK);
    ck_assert_int_eq(g.level_h[0], 48);
    ck_assert_int_eq(g.level_w[0], 80);
    check_anchor_spots(&a, &g);
    anchors_free(&g);
    make_arch(&a, 300, 200, 3);
    ck_assert_int_eq(anchors_build(&g, &a, NULL), EFFDET_OK);
    check_anchor_spots(&a, &g);
    anchors_free(&g);
}
END_TEST

START_TEST(test_anchors_reject_bad_arch) {
    effdet_arch a;
    anchor_grid g;
    effdet_error err;
    make_arch(&a, 512, 512, 90);
    a.num_anchors = 8;
    ck_assert_int_eq(anchors_build(&g, &a, &err), EFFDET_ERR_ARG);
    ck_assert_ptr_nonnull(strstr(err.msg, "num_anchors"));
    make_arch(&a, 512, 512, 0);
    ck_assert_int_eq(anchors_build(&g, &a, &err), EFFDET_ERR_ARG);
    ck_assert_ptr_nonnull(strstr(err.msg, "num_classes"));
}
END_TEST

/* ------------------------------------------------------------------ top-k */

typedef struct {
    float v;
    int32_t flat;
} flat_value;

/* Descending value, then ascending flat index: what a stable descending sort gives. */
static int cmp_flat_desc(const void *pa, const void *pb) {
    const flat_value *a = pa, *b = pb;
    if (a->v != b->v) return a->v > b->v ? -1 : 1;
    return (a->flat > b->flat) - (a->flat < b->flat);
}

/* The straightforward top-k: gather every allowed (anchor, class) logit, sort them all. */
static int topk_by_full_sort(const anchor_grid *g, const head_outputs *h, int k, const uint8_t *mask,
                             topk_item *out) {
    int C = g->num_classes;
    flat_value *all = malloc((size_t)g->total * C * sizeof *all);
    size_t n = 0;
    for (int l = 0; l < EFFDET_NUM_LEVELS; l++) {
        size_t count = (size_t)g->level_h[l] * g->level_w[l] * g->num_anchors * C;
        for (size_t i = 0; i < count; i++) {
            int32_t flat = (int32_t)((size_t)g->level_offset[l] * C + i);
            if (mask && !mask[flat % C]) continue;
            all[n].v = h->cls[l][i];
            all[n++].flat = flat;
        }
    }
    qsort(all, n, sizeof *all, cmp_flat_desc);
    int m = (size_t)k < n ? k : (int)n;
    for (int i = 0; i < m; i++) {
        out[i].logit = all[i].v;
        out[i].anchor = all[i].flat / C;
        out[i].cls = all[i].flat % C;
    }
    free(all);
    return m;
}

static void assert_topk_equal(const topk_item *got, const topk_item *want, int n, const char *what) {
    for (int i = 0; i < n; i++)
        ck_assert_msg(got[i].logit == want[i].logit && got[i].anchor == want[i].anchor &&
                          got[i].cls == want[i].cls,
                      "%s: rank %d: (%.9g, anchor %d, class %d), expected (%.9g, anchor %d, class %d)", what,
                      i, got[i].logit, got[i].anchor, got[i].cls, want[i].logit, want[i].anchor, want[i].cls);
}

/* The reference's torch.topk orders exactly equal logits in no fixed way (its fixtures
 * have both orders), so within a run of equal logits compare the (anchor, class) sets;
 * everything else must match exactly. Our own order inside a run is lowest flat index
 * first, checked here too. */
static void assert_topk_matches_reference(const char *dir, const topk_item *got, int n, int C) {
    ck_assert_int_eq(n, 5000);
    float *logit = read_i32_or_f32(dir, "topk_logit.f32", 5000 * 4);
    int32_t *anchor = read_i32_or_f32(dir, "topk_anchor.i32", 5000 * 4);
    int32_t *cls = read_i32_or_f32(dir, "topk_class.i32", 5000 * 4);
    int ties = 0;
    for (int i = 0; i < n;) {
        int j = i + 1;
        while (j < n && logit[j] == logit[i]) j++;
        for (int r = i; r < j; r++) {
            ck_assert_msg(got[r].logit == logit[r], "%s: rank %d logit %.9g, reference %.9g", dir, r,
                          got[r].logit, logit[r]);
            int found = 0;
            for (int q = i; q < j; q++) found |= got[q].anchor == anchor[r] && got[q].cls == cls[r];
            ck_assert_msg(found, "%s: rank %d: reference (anchor %d, class %d) not selected", dir, r,
                          anchor[r], cls[r]);
            if (r > i)
                ck_assert_msg((long)got[r].anchor * C + got[r].cls >
                                  (long)got[r - 1].anchor * C + got[r - 1].cls,
                              "%s: tie at rank %d not in flat index order", dir, r);
        }
        ties += j - i > 1;
        i = j;
    }
    printf("%s: top-5000 matches the reference (%d runs of tied logits)\n", dir, ties);
    free(logit);
    free(anchor);
    free(cls);
}

START_TEST(test_topk_tiny) {
    effdet_arch a;
    anchor_grid g;
    make_arch(&a, 128, 128, 4);
    ck_assert_int_eq(anchors_build(&g, &a, NULL), EFFDET_OK);
    heads hd;
    load_heads(&hd, "tests/fixtures", &g);
    void *scratch = malloc(postprocess_scratch_bytes(&g, 5000));
    topk_item *got = malloc(5000 * sizeof *got), *want = malloc(5000 * sizeof *want);
    int n = topk_select(&g, &hd.h, 5000, NULL, got, scratch);
    assert_topk_matches_reference("tests/fixtures", got, n, 4);
    ck_assert_int_eq(topk_by_full_sort(&g, &hd.h, 5000, NULL, want), n);
    assert_topk_equal(got, want, n, "tiny vs full sort");
    /* Excluding classes happens before the selection: 2 classes x 3069 anchors still fill 5000. */
    const uint8_t mask[4] = {1, 0, 1, 0};
    n = topk_select(&g, &hd.h, 5000, mask, got, scratch);
    ck_assert_int_eq(topk_by_full_sort(&g, &hd.h, 5000, mask, want), n);
    ck_assert_int_eq(n, 5000);
    assert_topk_equal(got, want, n, "tiny, classes 0 and 2");
    /* k beyond the number of logits returns them all, sorted */
    const uint8_t one[4] = {0, 0, 0, 1};
    n = topk_select(&g, &hd.h, 5000, one, got, scratch);
    ck_assert_int_eq(n, g.total);
    ck_assert_int_eq(topk_by_full_sort(&g, &hd.h, 5000, one, want), n);
    assert_topk_equal(got, want, n, "tiny, class 3 only");
    free(got);
    free(want);
    free(scratch);
    free_heads(&hd);
    anchors_free(&g);
}
END_TEST

START_TEST(test_topk_ties_and_specials) {
    /* Logits quantised to a few values: thousands of exact ties, which must come out in
     * flat index order whatever the buffer schedule. -0 ties with +0; -inf is selectable. */
    effdet_arch a;
    anchor_grid g;
    make_arch(&a, 128, 128, 4);
    ck_assert_int_eq(anchors_build(&g, &a, NULL), EFFDET_OK);
    heads hd;
    random_heads(&hd, &g, -3, 3, 0.1f, 99);
    for (int l = 0; l < EFFDET_NUM_LEVELS; l++) {
        size_t n = (size_t)g.level_h[l] * g.level_w[l] * 9 * 4;
        for (size_t i = 0; i < n; i++) {
            float v = floorf(hd.cls[l][i] * 2) / 2; /* 12 distinct values */
            if (v == 0 && i % 2) v = -0.0f;
            if (v == -3 && i % 3 == 0) v = -INFINITY;
            hd.cls[l][i] = v;
        }
    }
    int ks[] = {1, 2, 7, 1000, 5000, 12276};
    for (size_t t = 0; t < sizeof ks / sizeof ks[0]; t++) {
        int k = ks[t];
        void *scratch = malloc(postprocess_scratch_bytes(&g, k));
        topk_item *got = malloc(k * sizeof *got), *want = malloc(k * sizeof *want);
        int n = topk_select(&g, &hd.h, k, NULL, got, scratch);
        ck_assert_int_eq(n, topk_by_full_sort(&g, &hd.h, k, NULL, want));
        for (int i = 0; i < n; i++) /* -0 and +0 tie: compare the values numerically */
            ck_assert_msg(got[i].logit == want[i].logit && got[i].anchor == want[i].anchor &&
                              got[i].cls == want[i].cls,
                          "k %d rank %d: (%g, %d, %d) vs (%g, %d, %d)", k, i, got[i].logit, got[i].anchor,
                          got[i].cls, want[i].logit, want[i].anchor, want[i].cls);
        free(got);
        free(want);
        free(scratch);
    }
    free_heads(&hd);
    anchors_free(&g);
}
END_TEST

/* Split across a pool (2 and 3 threads: 2 and 3 parts of a D0-sized grid), the top-k is
 * the single-threaded one bit for bit: thousands of exact ties across part boundaries,
 * -0 / +0, -inf and NaN among the candidates, with and without a class mask, small and
 * large k. */
START_TEST(test_topk_threads_match_single) {
    effdet_arch a;
    anchor_grid g;
    make_arch(&a, 512, 512, 90);
    ck_assert_int_eq(anchors_build(&g, &a, NULL), EFFDET_OK);
    heads hd;
    random_heads(&hd, &g, -6, 2, 0.1f, 4242);
    for (int l = 0; l < EFFDET_NUM_LEVELS; l++) {
        size_t n = (size_t)g.level_h[l] * g.level_w[l] * 9 * 90;
        for (size_t i = 0; i < n; i++) {
            float v = floorf(hd.cls[l][i] * 4) / 4; /* 32 distinct values: many ties */
            if (v == 0 && i % 2) v = -0.0f;
            if (i % 100003 == 7) v = NAN;
            if (i % 70001 == 3) v = -INFINITY;
            hd.cls[l][i] = v;
        }
    }
    /* The anchors around the split points of 2 and 3 parts hold the largest finite value
     * (ties across a split), so a part that lost or doubled its edge would show. */
    for (int parts = 2; parts <= 3; parts++)
        for (int p = 1; p < parts; p++) {
            int edge = (int)((long long)g.total * p / parts);
            for (int an = edge - 1; an <= edge; an++) {
                int l = EFFDET_NUM_LEVELS - 1;
                while (l > 0 && an < g.level_offset[l]) l--;
                for (int c = 0; c < 90; c++) hd.cls[l][(size_t)(an - g.level_offset[l]) * 90 + c] = 3.0f;
            }
        }
    uint8_t mask[90];
    for (int c = 0; c < 90; c++) mask[c] = c % 3 != 1;
    threadpool *pools[2] = {threadpool_create(2), threadpool_create(3)};
    ck_assert(pools[0] && pools[1]);
    int ks[] = {1, 100, 5000};
    for (size_t t = 0; t < sizeof ks / sizeof ks[0]; t++)
        for (int masked = 0; masked < 2; masked++) {
            int k = ks[t];
            void *scratch = malloc(postprocess_scratch_bytes(&g, k));
            topk_item *want = malloc(k * sizeof *want), *got = malloc(k * sizeof *got);
            int n = topk_select(&g, &hd.h, k, masked ? mask : NULL, want, scratch);
            ck_assert_int_eq(n, k);
            for (int p = 0; p < 2; p++) {
                memset(got, 0, k * sizeof *got);
                int m = topk_select_mt(&g, &hd.h, k, masked ? mask : NULL, got, scratch, pools[p]);
                ck_assert_int_eq(m, n);
                ck_assert_msg(memcmp(got, want, (size_t)n * sizeof *got) == 0,
                              "k %d, %s, %d threads: the top-k differs from one thread's", k,
                              masked ? "masked" : "all classes", threadpool_size(pools[p]));
            }
            free(got);
            free(want);
            free(scratch);
        }
    threadpool_free(pools[0]);
    threadpool_free(pools[1]);
    free_heads(&hd);
    anchors_free(&g);
}
END_TEST

/* On a D0-sized grid the scan starts from a threshold guessed from a sample (topk.c);
 * the result must still be the full sort's, with ties, -0 and -inf among the candidates,
 * and when the guess is too high (every logit equal: nothing is above the sampled value)
 * the selection must notice and scan again. */
START_TEST(test_topk_guessed_threshold_exact) {
    effdet_arch a;
    anchor_grid g;
    make_arch(&a, 512, 512, 90);
    ck_assert_int_eq(anchors_build(&g, &a, NULL), EFFDET_OK);
    heads hd;
    random_heads(&hd, &g, -6, 2, 0.1f, 777);
    for (int l = 0; l < EFFDET_NUM_LEVELS; l++) {
        size_t n = (size_t)g.level_h[l] * g.level_w[l] * 9 * 90;
        for (size_t i = 0; i < n; i++) {
            float v = floorf(hd.cls[l][i] * 16) / 16; /* 128 distinct values */
            if (v == 0 && i % 2) v = -0.0f;
            if (i % 70001 == 3) v = -INFINITY;
            hd.cls[l][i] = v;
        }
    }
    void *scratch = malloc(postprocess_scratch_bytes(&g, 5000));
    topk_item *got = malloc(5000 * sizeof *got), *want = malloc(5000 * sizeof *want);
    ck_assert_int_eq(topk_by_full_sort(&g, &hd.h, 5000, NULL, want), 5000);
    ck_assert_int_eq(topk_select(&g, &hd.h, 5000, NULL, got, scratch), 5000);
    assert_topk_equal(got, want, 5000, "D0 grid, k 5000");
    ck_assert_int_eq(topk_select(&g, &hd.h, 100, NULL, got, scratch), 100);
    assert_topk_equal(got, want, 100, "D0 grid, k 100");
    /* every logit 1: the guess is 1, no logit is above it, the scan is redone from NaN */
    for (int l = 0; l < EFFDET_NUM_LEVELS; l++) {
        size_t n = (size_t)g.level_h[l] * g.level_w[l] * 9 * 90;
        for (size_t i = 0; i < n; i++) hd.cls[l][i] = 1.0f;
    }
    ck_assert_int_eq(topk_select(&g, &hd.h, 5000, NULL, got, scratch), 5000);
    for (int i = 0; i < 5000; i++)
        ck_assert_msg(got[i].logit == 1.0f && got[i].anchor * 90 + got[i].cls == i,
                      "all equal: rank %d is (%g, anchor %d, class %d)", i, got[i].logit, got[i].anchor,
                      got[i].cls);
    free(got);
    free(want);
    free(scratch);
    free_heads(&hd);
    anchors_free(&g);
}
END_TEST

START_TEST(test_topk_d0) {
    const char *shared = tu_shared_dir();
    if (!shared) return;
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/d0", shared);
    effdet_arch a;
    anchor_grid g;
    make_arch(&a, 512, 512, 90);
    ck_assert_int_eq(anchors_build(&g, &a, NULL), EFFDET_OK);
    heads hd;
    load_heads(&hd, dir, &g);
    void *scratch = malloc(postprocess_scratch_bytes(&g, 5000));
    topk_item *got = malloc(5000 * sizeof *got);
    double best = 1e9;
    int n = 0;
    for (int rep = 0; rep < 5; rep++) {
        double t0 = now_ms();
        n = topk_select(&g, &hd.h, 5000, NULL, got, scratch);
        double t = now_ms() - t0;
        if (t < best) best = t;
    }
    printf("timing: top-5000 of %d D0 logits: %.2f ms (best of 5; PyTorch ~230 ms)\n", g.total * 90, best);
    assert_topk_matches_reference(dir, got, n, 90);
    free(got);
    free(scratch);
    free_heads(&hd);
    anchors_free(&g);
}
END_TEST

/* ------------------------------------------------------------- detections */

static double json_num(json_object *o, const char *key) {
    json_object *v;
    ck_assert_msg(json_object_object_get_ex(o, key, &v), "detections.json: no field %s", key);
    return json_object_get_double(v);
}

static void assert_detections_match(const char *what, json_object *want, const effdet_detection *got, int n) {
    int nw = (int)json_object_array_length(want);
    ck_assert_msg(n == nw, "%s: %d detections, reference %d", what, n, nw);
    for (int i = 0; i < n; i++) {
        json_object *r = json_object_array_get_idx(want, i);
        ck_assert_msg(got[i].class_id == (int)json_num(r, "cls"), "%s: row %d class %d, reference %d", what,
                      i, got[i].class_id, (int)json_num(r, "cls"));
        ck_assert_msg(fabs(got[i].score - json_num(r, "score")) <= 1e-4,
                      "%s: row %d score %.7f, reference %.7f", what, i, got[i].score, json_num(r, "score"));
        const float g4[4] = {got[i].x1, got[i].y1, got[i].x2, got[i].y2};
        const char *keys[4] = {"x1", "y1", "x2", "y2"};
        for (int k = 0; k < 4; k++) {
            double w = json_num(r, keys[k]);
            ck_assert_msg(fabs(g4[k] - w) <= 1e-3 * fmax(fabs(w), 1.0), "%s: row %d %s %.6f, reference %.6f",
                          what, i, keys[k], g4[k], w);
        }
    }
}

static void check_detections(const char *dir, int image_size, int num_classes) {
    effdet_arch a;
    anchor_grid g;
    make_arch(&a, image_size, image_size, num_classes);
    ck_assert_int_eq(anchors_build(&g, &a, NULL), EFFDET_OK);
    heads hd;
    load_heads(&hd, dir, &g);
    char path[1024];
    snprintf(path, sizeof path, "%s/detections.json", dir);
    json_object *ref = json_object_from_file(path);
    ck_assert_msg(ref != NULL, "cannot parse %s", path);
    json_object *size, *net, *img;
    ck_assert(json_object_object_get_ex(ref, "orig_size_wh", &size));
    ck_assert(json_object_object_get_ex(ref, "detections_network", &net));
    ck_assert(json_object_object_get_ex(ref, "detections_image", &img));
    float img_scale = (float)json_num(ref, "img_scale");
    float orig_w = (float)json_object_get_double(json_object_array_get_idx(size, 0));
    float orig_h = (float)json_object_get_double(json_object_array_get_idx(size, 1));

    void *scratch = malloc(postprocess_scratch_bytes(&g, 5000));
    effdet_detection out[100];
    postprocess_params p = {.topk = 5000, .out_scale = 1, .max_detections = 100, .nms = EFFDET_NMS_HARD};
    double best = 1e9;
    int n = 0;
    for (int rep = 0; rep < 3; rep++) {
        double t0 = now_ms();
        n = postprocess(&g, &hd.h, &p, scratch, out);
        if (now_ms() - t0 < best) best = now_ms() - t0;
    }
    printf("timing: %s post-process, hard NMS (network frame): %.2f ms (best of 3)\n", dir, best);
    assert_detections_match("detections_network", net, out, n);

    p.clip = 1;
    p.clip_w = orig_w / img_scale; /* effdet: img_size / img_scale, in float32 */
    p.clip_h = orig_h / img_scale;
    p.out_scale = img_scale;
    n = postprocess(&g, &hd.h, &p, scratch, out);
    assert_detections_match("detections_image", img, out, n);

    json_object_put(ref);
    free(scratch);
    free_heads(&hd);
    anchors_free(&g);
}

START_TEST(test_detections_tiny) {
    check_detections("tests/fixtures", 128, 4);
}
END_TEST

START_TEST(test_detections_d0) {
    const char *shared = tu_shared_dir();
    if (!shared) return;
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/d0", shared);
    check_detections(dir, 512, 90);
}
END_TEST

/* ------------------------------------------------------ filters and caps */

static int run_pp(const anchor_grid *g, const head_outputs *h, postprocess_params p, effdet_detection *out) {
    void *scratch = malloc(postprocess_scratch_bytes(g, p.topk));
    int n = postprocess(g, h, &p, scratch, out);
    free(scratch);
    return n;
}

static void assert_same_detections(const effdet_detection *a, const effdet_detection *b, int n,
                                   const char *what) {
    for (int i = 0; i < n; i++)
        ck_assert_msg(memcmp(&a[i], &b[i], sizeof a[i]) == 0, "%s: row %d differs", what, i);
}

START_TEST(test_threshold_cap_and_class_mask) {
    effdet_arch a;
    anchor_grid g;
    make_arch(&a, 128, 128, 4);
    ck_assert_int_eq(anchors_build(&g, &a, NULL), EFFDET_OK);
    heads hd;
    load_heads(&hd, "tests/fixtures", &g);
    static effdet_detection all[5000], some[5000];
    postprocess_params p = {.topk = 5000, .out_scale = 1, .max_detections = 5000, .nms = EFFDET_NMS_HARD};
    int n_all = run_pp(&g, &hd.h, p, all);
    ck_assert_int_gt(n_all, 200);
    for (int i = 1; i < n_all; i++) ck_assert(all[i].score <= all[i - 1].score);

    /* max_detections: a prefix of the uncapped list */
    p.max_detections = 37;
    ck_assert_int_eq(run_pp(&g, &hd.h, p, some), 37);
    assert_same_detections(some, all, 37, "max_detections 37");

    /* score_threshold: exactly the uncapped rows with score >= threshold */
    for (int t = 0; t < 3; t++) {
        p.max_detections = 5000;
        p.score_threshold = t == 0 ? all[150].score : t == 1 ? 0.3f : 0.9999f;
        int expect = 0;
        while (expect < n_all && all[expect].score >= p.score_threshold) expect++;
        int n = run_pp(&g, &hd.h, p, some);
        ck_assert_msg(n == expect, "threshold %g: %d rows, expected %d", p.score_threshold, n, expect);
        assert_same_detections(some, all, n, "threshold");
    }

    /* class_mask: as if the excluded classes' logits were -inf (2 classes x 3069 anchors
     * still fill the 5000 candidates, so no -inf is selected) */
    const uint8_t mask[4] = {0, 1, 0, 1};
    p.score_threshold = 0;
    p.class_mask = mask;
    int n_mask = run_pp(&g, &hd.h, p, some);
    for (int i = 0; i < n_mask; i++) ck_assert(some[i].class_id == 2 || some[i].class_id == 4);
    for (int l = 0; l < EFFDET_NUM_LEVELS; l++) {
        size_t n = (size_t)g.level_h[l] * g.level_w[l] * 9 * 4;
        for (size_t i = 0; i < n; i++)
            if (!mask[i % 4]) hd.cls[l][i] = -INFINITY;
    }
    p.class_mask = NULL;
    ck_assert_int_eq(run_pp(&g, &hd.h, p, all), n_mask);
    assert_same_detections(some, all, n_mask, "class_mask vs -inf logits");

    free_heads(&hd);
    anchors_free(&g);
}
END_TEST

/* --------------------------------------------------------------- IoU, NMS */

START_TEST(test_iou_edge_cases) {
    const float a[4] = {0, 0, 10, 10}, half[4] = {0, 0, 10, 5}, touch[4] = {10, 0, 20, 10};
    const float inside[4] = {2, 2, 4, 4}, pt[4] = {3, 3, 3, 3}, line[4] = {1, 5, 9, 5};
    ck_assert(iou_hard(a, a, box_area(a), box_area(a)) == 1.0f);
    ck_assert(iou_hard(a, half, box_area(a), box_area(half)) == 0.5f);
    ck_assert(iou_hard(a, touch, box_area(a), box_area(touch)) == 0.0f);
    ck_assert(iou_hard(a, inside, box_area(a), box_area(inside)) == 0.04f);
    ck_assert(iou_hard(a, pt, box_area(a), box_area(pt)) == 0.0f);
    ck_assert(isnan(iou_hard(pt, pt, 0, 0))); /* 0 / 0 */
    ck_assert(isnan(iou_hard(line, line, 0, 0)));
    ck_assert(iou_soft(pt, pt, 0, 0) == 0.0f); /* soft_nms.py: 0 unless inter > 0 */
    ck_assert(iou_soft(a, half, box_area(a), box_area(half)) == 0.5f);
    ck_assert(iou_soft(a, touch, box_area(a), box_area(touch)) == 0.0f);

    /* Hard NMS: IoU exactly 0.5 does not suppress (strict >), NaN does not, > 0.5 does. */
    const float boxes[6][4] = {{0, 0, 10, 10}, {0, 0, 10, 5}, {0, 0, 10, 6},
                               {3, 3, 3, 3},   {3, 3, 3, 3},  {10, 0, 20, 10}};
    float area[6];
    for (int i = 0; i < 6; i++) area[i] = box_area(boxes[i]);
    const int32_t cls[6] = {0, 0, 0, 0, 0, 0};
    const uint8_t all[6] = {1, 1, 1, 1, 1, 1};
    uint8_t keep[6];
    int32_t head[1], next[6];
    ck_assert_int_eq(nms_hard(&boxes[0][0], area, cls, all, 6, 1, 100, keep, head, next), 5);
    const uint8_t want[6] = {1, 1, 0, 1, 1, 1}; /* box 2: IoU 0.6 with box 0 */
    for (int i = 0; i < 6; i++) ck_assert_msg(keep[i] == want[i], "box %d keep %d", i, keep[i]);
    /* max_keep stops early; excluded candidates take no part (box 2 survives without box 0) */
    ck_assert_int_eq(nms_hard(&boxes[0][0], area, cls, all, 6, 1, 2, keep, head, next), 2);
    ck_assert(keep[0] && keep[1] && !keep[2] && !keep[3] && !keep[4] && !keep[5]);
    const uint8_t no_first[6] = {0, 1, 1, 1, 1, 1};
    ck_assert_int_eq(nms_hard(&boxes[0][0], area, cls, no_first, 6, 1, 100, keep, head, next), 4);
    ck_assert(!keep[0] && keep[1] && !keep[2]); /* box 2 vs box 1: IoU 5/6 */
    /* boxes of different classes never suppress each other */
    const int32_t cls2[6] = {0, 1, 1, 0, 0, 0};
    int32_t head2[2];
    ck_assert_int_eq(nms_hard(&boxes[0][0], area, cls2, all, 6, 2, 100, keep, head2, next), 5);
    ck_assert(keep[0] && keep[1] && !keep[2]);
}
END_TEST

START_TEST(test_soft_nms_decay) {
    /* A (0.9) and B (0.8, IoU 0.5 with A): B decays by exp(-0.5^2 / 0.5); C (0.7) is disjoint;
     * D (0.0015) overlaps A and drops below 0.001 after decay; E (0.0005) starts below it. */
    const float boxes[5][4] = {
        {0, 0, 10, 10}, {0, 0, 10, 5}, {20, 20, 30, 30}, {0, 0, 10, 9}, {40, 40, 50, 50}};
    float area[5], score[5] = {0.9f, 0.8f, 0.7f, 0.0015f, 0.0005f};
    for (int i = 0; i < 5; i++) area[i] = box_area(boxes[i]);
    int32_t cand[5] = {0, 1, 2, 3, 4}, picked[5];
    float picked_score[5];
    int n = nms_soft_class(&boxes[0][0], area, cand, 5, score, -1, SOFT_NMS_SIGMA, SOFT_NMS_MIN_SCORE, picked,
                           picked_score);
    ck_assert_int_eq(n, 3);
    ck_assert(picked[0] == 0 && picked[1] == 2 && picked[2] == 1);
    ck_assert(picked_score[0] == 0.9f && picked_score[1] == 0.7f);
    ck_assert_msg(fabsf(picked_score[2] - 0.8f * expf(-0.5f)) < 1e-7f, "B: %.9g", picked_score[2]);
    /* exempt: a lone candidate below the threshold is still picked when exempt */
    float low[1] = {0.0005f};
    int32_t one[1] = {0};
    ck_assert_int_eq(nms_soft_class(&boxes[0][0], area, one, 1, low, 0, 0.5f, 0.001f, picked, picked_score),
                     1);
    one[0] = 0;
    ck_assert_int_eq(nms_soft_class(&boxes[0][0], area, one, 1, low, -1, 0.5f, 0.001f, picked, picked_score),
                     0);
}
END_TEST

/* decode_box_outputs(), written out: x1, y1, x2, y2 of one anchor's decoded box. */
static void decode_reference(const anchor_grid *g, const head_outputs *h, int an, float *out) {
    int l = 0;
    while (l + 1 < EFFDET_NUM_LEVELS && an >= g->level_offset[l + 1]) l++;
    const float *d = h->box[l] + (size_t)(an - g->level_offset[l]) * 4, *q = g->boxes + (size_t)an * 4;
    float ha = q[2] - q[0], wa = q[3] - q[1];
    float cy = d[0] * ha + (q[0] + q[2]) / 2, cx = d[1] * wa + (q[1] + q[3]) / 2;
    float hh = expf(d[2]) * ha, ww = expf(d[3]) * wa;
    out[0] = cx - ww / 2;
    out[1] = cy - hh / 2;
    out[2] = cx + ww / 2;
    out[3] = cy + hh / 2;
}

/* effdet's plain per-class greedy NMS (best first; drop every later box of the class with
 * IoU > 0.5, strictly) over all candidates, then the kept boxes of all classes in score
 * (= top-k) order. */
START_TEST(test_hard_nms_vs_reference) {
    effdet_arch a;
    anchor_grid g;
    make_arch(&a, 128, 128, 4);
    ck_assert_int_eq(anchors_build(&g, &a, NULL), EFFDET_OK);
    heads hd;
    load_heads(&hd, "tests/fixtures", &g);
    const int K = 5000;
    topk_item *items = malloc(K * sizeof *items);
    ck_assert_int_eq(topk_by_full_sort(&g, &hd.h, K, NULL, items), K);
    float *box = malloc(K * 4 * sizeof(float));
    uint8_t *suppressed = calloc(K, 1);
    for (int i = 0; i < K; i++) decode_reference(&g, &hd.h, items[i].anchor, box + i * 4);
    for (int c = 0; c < 4; c++)
        for (int i = 0; i < K; i++) {
            if (items[i].cls != c || suppressed[i]) continue;
            const float *p = box + i * 4;
            for (int j = i + 1; j < K; j++) {
                if (items[j].cls != c || suppressed[j]) continue;
                const float *q = box + j * 4;
                float w = fmaxf(0, fminf(p[2], q[2]) - fmaxf(p[0], q[0]));
                float h = fmaxf(0, fminf(p[3], q[3]) - fmaxf(p[1], q[1]));
                float inter = w * h, ap = (p[2] - p[0]) * (p[3] - p[1]), aq = (q[2] - q[0]) * (q[3] - q[1]);
                if (inter / (ap + aq - inter) > 0.5f) suppressed[j] = 1;
            }
        }
    effdet_detection *out = malloc(K * sizeof *out);
    postprocess_params p = {.topk = K, .out_scale = 1, .max_detections = K, .nms = EFFDET_NMS_HARD};
    int n = run_pp(&g, &hd.h, p, out), r = 0;
    for (int i = 0; i < K; i++) {
        if (suppressed[i]) continue;
        ck_assert_msg(r < n, "only %d kept, reference keeps more", n);
        ck_assert_msg(out[r].class_id == items[i].cls + 1 && out[r].x1 == box[i * 4] &&
                          out[r].y2 == box[i * 4 + 3],
                      "kept row %d is not candidate %d", r, i);
        r++;
    }
    ck_assert_int_eq(n, r);
    printf("hard NMS keeps %d of %d tiny candidates, as the plain per-class loop does\n", n, K);
    free(items);
    free(box);
    free(suppressed);
    free(out);
    free_heads(&hd);
    anchors_free(&g);
}
END_TEST

/* effdet's batched_soft_nms as written: one global loop, argmax over all remaining
 * (first on ties), IoU 0 across classes, decay, prune <= 0.001. Returns picks in order. */
static int soft_nms_reference(const float *box, const int32_t *cls, float *score, int n, int32_t *out_idx,
                              float *out_score) {
    int32_t *remain = malloc(n * sizeof *remain);
    int m = n, count = 0;
    for (int i = 0; i < n; i++) remain[i] = i;
    while (m > 0) {
        int top = 0;
        for (int i = 1; i < m; i++)
            if (score[remain[i]] > score[remain[top]]) top = i;
        int t = remain[top];
        out_idx[count] = t;
        out_score[count++] = score[t];
        int k = 0;
        for (int i = 0; i < m; i++) {
            int j = remain[i];
            float iou = 0;
            if (cls[j] == cls[t]) {
                const float *p = box + t * 4, *q = box + j * 4;
                float w = fminf(p[2], q[2]) - fmaxf(p[0], q[0]), h = fminf(p[3], q[3]) - fmaxf(p[1], q[1]);
                float inter = (w > 0 ? w : 0) * (h > 0 ? h : 0);
                float a1 = (p[2] - p[0]) * (p[3] - p[1]), a2 = (q[2] - q[0]) * (q[3] - q[1]);
                iou = inter > 0 ? inter / (a1 + a2 - inter) : 0;
            }
            score[j] *= expf(-(iou * iou) / 0.5f);
            if (i != top && score[j] > 0.001f) remain[k++] = j;
        }
        m = k;
    }
    free(remain);
    return count;
}

START_TEST(test_soft_nms_vs_reference) {
    /* Dense random heads on the tiny grid: many overlapping candidates per class. */
    effdet_arch a;
    anchor_grid g;
    make_arch(&a, 128, 128, 4);
    ck_assert_int_eq(anchors_build(&g, &a, NULL), EFFDET_OK);
    heads hd;
    random_heads(&hd, &g, -9, 3, 0.4f, 2024);
    const int K = 400;
    topk_item *items = malloc(K * sizeof *items);
    ck_assert_int_eq(topk_by_full_sort(&g, &hd.h, K, NULL, items), K);
    float *box = malloc(K * 4 * sizeof(float)), *score = malloc(K * sizeof(float)),
          *ps = malloc(K * sizeof(float));
    int32_t *cls = malloc(K * sizeof(int32_t)), *pi = malloc(K * sizeof(int32_t));
    for (int i = 0; i < K; i++) {
        decode_reference(&g, &hd.h, items[i].anchor, box + i * 4);
        score[i] = 1.0f / (1.0f + expf(-items[i].logit));
        cls[i] = items[i].cls;
    }
    int n_ref = soft_nms_reference(box, cls, score, K, pi, ps);
    ck_assert_int_gt(n_ref, 100);

    effdet_detection *out = malloc(K * sizeof *out);
    postprocess_params p = {.topk = K, .out_scale = 2, .max_detections = K, .nms = EFFDET_NMS_SOFT};
    int n = run_pp(&g, &hd.h, p, out);
    ck_assert_int_eq(n, n_ref);
    int decayed = 0;
    for (int i = 0; i < n; i++) {
        int r = pi[i];
        ck_assert_msg(out[i].class_id == cls[r] + 1, "row %d class", i);
        ck_assert_msg(out[i].score == ps[i], "row %d score %.9g, reference %.9g", i, out[i].score, ps[i]);
        ck_assert(out[i].x1 == box[r * 4] * 2 && out[i].y1 == box[r * 4 + 1] * 2);
        ck_assert(out[i].x2 == box[r * 4 + 2] * 2 && out[i].y2 == box[r * 4 + 3] * 2);
        decayed += ps[i] < 1.0f / (1.0f + expf(-items[r].logit));
    }
    ck_assert_int_gt(decayed, 50); /* the test set really exercises the decay */
    /* threshold and cap apply to the decayed scores */
    p.score_threshold = ps[60];
    p.max_detections = 50;
    n = run_pp(&g, &hd.h, p, out);
    ck_assert_int_eq(n, 50);
    for (int i = 0; i < n; i++) ck_assert(out[i].score == ps[i]);

    free(items);
    free(box);
    free(score);
    free(ps);
    free(cls);
    free(pi);
    free(out);
    free_heads(&hd);
    anchors_free(&g);
}
END_TEST

static Suite *postprocess_suite(void) {
    Suite *s = suite_create("postprocess");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_anchors_d0);
    tcase_add_test(tc, test_anchors_tiny_and_nonsquare);
    tcase_add_test(tc, test_anchors_reject_bad_arch);
    tcase_add_test(tc, test_topk_tiny);
    tcase_add_test(tc, test_topk_ties_and_specials);
    tcase_add_test(tc, test_topk_threads_match_single);
    tcase_add_test(tc, test_topk_guessed_threshold_exact);
    tcase_add_test(tc, test_topk_d0);
    tcase_add_test(tc, test_detections_tiny);
    tcase_add_test(tc, test_detections_d0);
    tcase_add_test(tc, test_threshold_cap_and_class_mask);
    tcase_add_test(tc, test_iou_edge_cases);
    tcase_add_test(tc, test_hard_nms_vs_reference);
    tcase_add_test(tc, test_soft_nms_decay);
    tcase_add_test(tc, test_soft_nms_vs_reference);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) {
    return tu_run_suite(postprocess_suite());
}
