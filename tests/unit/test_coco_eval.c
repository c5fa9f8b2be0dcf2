/*
 * The COCO metric (tools/coco_eval.c) on hand-made cases. Every expected number is worked
 * out by hand in the comment above its check, from pycocotools' rules (see the top of
 * coco_eval.c), never copied from this code's output.
 *
 * Reminders used below: AP at one IoU threshold is the mean of 101 precision samples;
 * AP is the mean over 10 thresholds .50:.05:.95; a box shifted by 1 px along x in a
 * 10x10 box has IoU 9*10 / (100 + 100 - 90) = 0.818, so it matches at the 7 thresholds
 * .50 .. .80 and misses .85 .90 .95.
 */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coco_eval.h"
#include "testutil.h"

#define TOL 1e-12

enum { AP, AP50, AP75, APS, APM, APL, AR1, AR10, AR100, ARS, ARM, ARL };

static coco_dataset parse_ok(const char *json) {
    coco_dataset d;
    char err[256] = "";
    int rc = coco_dataset_parse(json, strlen(json), "test.json", &d, err, sizeof err);
    ck_assert_msg(rc == 0, "parse failed: %s", err);
    return d;
}

static coco_metrics eval_ok(const coco_dataset *d, const coco_det *dets, size_t n) {
    coco_metrics m;
    char err[256] = "";
    int rc = coco_evaluate(d, dets, n, &m, err, sizeof err);
    ck_assert_msg(rc == 0, "evaluate failed: %s", err);
    return m;
}

#define ck_near(a, b) ck_assert_double_eq_tol((a), (b), TOL)

/* One image, one category "thing", boxes given as a JSON fragment. */
#define ONE_CAT "\"categories\":[{\"id\":1,\"name\":\"thing\"}]"

START_TEST(test_thresholds_match_numpy_linspace) {
    /* numpy.linspace computes start + i*step: the recall point 35 is 35*0.01 =
     * 0.35000000000000003 (just above 0.35), the IoU threshold 8 is 0.5 + 8*0.05 =
     * 0.8999999999999999 (just below 0.9); the end points are exact. */
    ck_assert(coco_recall_threshold(35) > 0.35);
    ck_assert(coco_recall_threshold(35) == 35 * 0.01);
    ck_assert(coco_recall_threshold(29) == 0.29);
    ck_assert(coco_recall_threshold(0) == 0.0);
    ck_assert(coco_recall_threshold(100) == 1.0);
    ck_assert(coco_iou_threshold(0) == 0.5);
    ck_assert(coco_iou_threshold(5) == 0.75); /* summarize() looks .75 up by equality */
    ck_assert(coco_iou_threshold(8) < 0.9);
    ck_assert(coco_iou_threshold(9) == 0.95);
}
END_TEST

START_TEST(test_iou) {
    coco_box g = {0, 0, 10, 10}, shifted = {1, 0, 10, 10}, wide = {0, 0, 20, 10}, apart = {10, 0, 5, 5};
    ck_near(coco_iou(&g, &g, 0), 1.0);
    ck_near(coco_iou(&shifted, &g, 0), 90.0 / 110.0);
    ck_near(coco_iou(&wide, &g, 0), 0.5);  /* 100 / 200 */
    ck_near(coco_iou(&apart, &g, 0), 0.0); /* touching edges: zero width */
    /* crowd: intersection over the detection's own area: 100 / 200 */
    ck_near(coco_iou(&wide, &g, 1), 0.5);
    coco_box inside = {2, 2, 4, 4};
    ck_near(coco_iou(&inside, &g, 1), 1.0); /* 16 / 16 */
}
END_TEST

START_TEST(test_perfect) {
    /* image 1: A 10x10 (area 100, small) and B 50x40 (area 2000, medium); image 2: C
     * 100x100 (area 10000, large). Detections equal the boxes, scores .9 .8 .7.
     * Every threshold, area range: precision 1 at every recall point -> AP* = 1.
     * AR1: one detection per image and category: image 1 keeps only A (.9), so 2 of
     * the 3 objects are found at every threshold -> 2/3. AR10 = AR100 = 1. Each area
     * range holds one object, found -> ARs = ARm = ARl = 1. */
    coco_dataset d =
        parse_ok("{\"images\":[{\"id\":1},{\"id\":2}]," ONE_CAT ",\"annotations\":["
                 "{\"id\":1,\"image_id\":1,\"category_id\":1,\"bbox\":[0,0,10,10],\"area\":100},"
                 "{\"id\":2,\"image_id\":1,\"category_id\":1,\"bbox\":[20,20,50,40],\"area\":2000},"
                 "{\"id\":3,\"image_id\":2,\"category_id\":1,\"bbox\":[0,0,100,100],\"area\":10000}]}");
    coco_det dets[] = {
        {1, 1, {0, 0, 10, 10}, 0.9}, {1, 1, {20, 20, 50, 40}, 0.8}, {2, 1, {0, 0, 100, 100}, 0.7}};
    coco_metrics m = eval_ok(&d, dets, 3);
    for (int s = AP; s <= APL; s++) ck_near(m.stats[s], 1.0);
    ck_near(m.stats[AR1], 2.0 / 3.0);
    for (int s = AR10; s <= ARL; s++) ck_near(m.stats[s], 1.0);
    ck_near(m.category_ap[0], 1.0);
    ck_assert_int_eq(m.category_gts[0], 3);
    coco_metrics_free(&m);
    coco_dataset_free(&d);
}
END_TEST

static const char *one_box =
    "{\"images\":[{\"id\":7}]," ONE_CAT ",\"annotations\":["
    "{\"id\":1,\"image_id\":7,\"category_id\":1,\"bbox\":[0,0,10,10],\"area\":100}]}";

START_TEST(test_shifted) {
    /* IoU 0.818: matched at 7 of 10 thresholds (precision 1 there, 0 elsewhere):
     * AP = AR100 = 0.7, AP50 = AP75 = 1. The object is small (area 100): APs = 0.7 and
     * medium/large have no ground truth: -1. */
    coco_dataset d = parse_ok(one_box);
    coco_det det = {7, 1, {1, 0, 10, 10}, 0.5};
    coco_metrics m = eval_ok(&d, &det, 1);
    ck_near(m.stats[AP], 0.7);
    ck_near(m.stats[AP50], 1.0);
    ck_near(m.stats[AP75], 1.0);
    ck_near(m.stats[APS], 0.7);
    ck_near(m.stats[APM], -1.0);
    ck_near(m.stats[APL], -1.0);
    ck_near(m.stats[AR100], 0.7);
    ck_near(m.stats[ARM], -1.0);
    coco_metrics_free(&m);

    /* twice as wide: IoU exactly 0.5, which matches (IoU >= threshold) at .50 only:
     * AP = 0.1, AP50 = 1, AP75 = 0. Its area 200 is small too. */
    coco_det wide = {7, 1, {0, 0, 20, 10}, 0.5};
    m = eval_ok(&d, &wide, 1);
    ck_near(m.stats[AP], 0.1);
    ck_near(m.stats[AP50], 1.0);
    ck_near(m.stats[AP75], 0.0);
    coco_metrics_free(&m);
    coco_dataset_free(&d);
}
END_TEST

START_TEST(test_duplicates) {
    /* Same box twice, .9 and .8: the second is a false positive after the true one:
     * rc = [1, 1], pr = [1, .5] -> every recall point reads pr[0] = 1: AP = 1. */
    coco_dataset d = parse_ok(one_box);
    coco_det same[] = {{7, 1, {0, 0, 10, 10}, 0.9}, {7, 1, {0, 0, 10, 10}, 0.8}};
    coco_metrics m = eval_ok(&d, same, 2);
    ck_near(m.stats[AP], 1.0);
    coco_metrics_free(&m);

    /* The shifted box first (.9), the exact one second (.8). At .50-.80 the shifted one
     * takes the object (the exact one is a duplicate): precision 1. At .85-.95 the
     * shifted one misses: FP then TP: rc = [0, 1], pr = [0, .5], made monotone [.5, .5]
     * -> 0.5 at every recall point. AP = (7*1 + 3*0.5) / 10 = 0.85; AR100 = 1; with one
     * detection per image only the shifted one counts: AR1 = 0.7. */
    coco_det pair[] = {{7, 1, {1, 0, 10, 10}, 0.9}, {7, 1, {0, 0, 10, 10}, 0.8}};
    m = eval_ok(&d, pair, 2);
    ck_near(m.stats[AP], 0.85);
    ck_near(m.stats[AP50], 1.0);
    ck_near(m.stats[AR100], 1.0);
    ck_near(m.stats[AR1], 0.7);
    coco_metrics_free(&m);
    coco_dataset_free(&d);
}
END_TEST

START_TEST(test_crowd) {
    /* A regular object R [0,0,10,10] and a crowd region C [20,0,40,40]. Two detections
     * inside C (.95, .9) match it by intersection / own area = 1, may both match it
     * (a crowd region is never used up) and are ignored; then the exact R (.8), then a
     * stray box (.6): ignored, ignored, TP, FP: rc = [0,0,1,1], pr[2] = 1/1 -> AP = 1.
     * Had C counted as a regular object, its area-IoU (100/1600) would make the two
     * boxes false positives before the TP: precision 1/3. C is not an object to find:
     * AR100 = 1 with one object. */
    coco_dataset d =
        parse_ok("{\"images\":[{\"id\":1}]," ONE_CAT ",\"annotations\":["
                 "{\"id\":1,\"image_id\":1,\"category_id\":1,\"bbox\":[0,0,10,10],\"area\":100},"
                 "{\"id\":2,\"image_id\":1,\"category_id\":1,\"bbox\":[20,0,40,40],\"area\":1600,"
                 "\"iscrowd\":1}]}");
    coco_det dets[] = {{1, 1, {25, 5, 10, 10}, 0.95},
                       {1, 1, {30, 10, 10, 10}, 0.9},
                       {1, 1, {0, 0, 10, 10}, 0.8},
                       {1, 1, {100, 100, 10, 10}, 0.6}};
    coco_metrics m = eval_ok(&d, dets, 4);
    ck_near(m.stats[AP], 1.0);
    ck_near(m.stats[AR100], 1.0);
    ck_assert_int_eq(m.category_gts[0], 1); /* the crowd region is not counted */
    coco_metrics_free(&m);
    coco_dataset_free(&d);
}
END_TEST

START_TEST(test_crowd_sorted_last) {
    /* The crowd region comes first in the file but is tried last: ground truth is sorted
     * ignored-last. The detection [0,0,10,10] overlaps R = [1,0,10,10] with IoU 0.818
     * and lies inside the crowd C = [0,0,12,12] (crowd IoU 1). At .50-.80 it takes R
     * first and stops at the ignored C: TP. At .85-.95 R is too far, C takes it: ignored
     * (no TP, no FP -> precision 0). AP = 0.7. In file order C would win at every
     * threshold (IoU 1 beats 0.818) and AP would be 0. */
    coco_dataset d =
        parse_ok("{\"images\":[{\"id\":1}]," ONE_CAT ",\"annotations\":["
                 "{\"id\":5,\"image_id\":1,\"category_id\":1,\"bbox\":[0,0,12,12],\"area\":144,"
                 "\"iscrowd\":1},"
                 "{\"id\":6,\"image_id\":1,\"category_id\":1,\"bbox\":[1,0,10,10],\"area\":100}]}");
    coco_det det = {1, 1, {0, 0, 10, 10}, 0.9};
    coco_metrics m = eval_ok(&d, &det, 1);
    ck_near(m.stats[AP], 0.7);
    coco_metrics_free(&m);
    coco_dataset_free(&d);
}
END_TEST

START_TEST(test_category_without_ground_truth) {
    /* "thing" has one object, found exactly; "other" has none but two detections (false
     * positives with nothing to find); "unused" has neither. Categories without ground
     * truth are -1 and left out of the means: AP = 1, per-category AP [1, -1, -1]. */
    coco_dataset d =
        parse_ok("{\"images\":[{\"id\":1}],\"categories\":[{\"id\":1,\"name\":\"thing\"},"
                 "{\"id\":2,\"name\":\"other\"},{\"id\":3,\"name\":\"unused\"}],\"annotations\":["
                 "{\"id\":1,\"image_id\":1,\"category_id\":1,\"bbox\":[0,0,10,10],\"area\":100}]}");
    coco_det dets[] = {
        {1, 2, {0, 0, 10, 10}, 0.99}, {1, 2, {50, 50, 10, 10}, 0.98}, {1, 1, {0, 0, 10, 10}, 0.5}};
    coco_metrics m = eval_ok(&d, dets, 3);
    ck_near(m.stats[AP], 1.0);
    ck_near(m.stats[AR100], 1.0);
    ck_near(m.category_ap[0], 1.0);
    ck_near(m.category_ap[1], -1.0);
    ck_near(m.category_ap[2], -1.0);
    coco_metrics_free(&m);

    /* and a category id that is not in the file: ignored altogether (AP stays 1) */
    coco_det stray[] = {{1, 99, {0, 0, 10, 10}, 0.99}, {1, 1, {0, 0, 10, 10}, 0.5}};
    m = eval_ok(&d, stray, 2);
    ck_near(m.stats[AP], 1.0);
    coco_metrics_free(&m);
    coco_dataset_free(&d);
}
END_TEST

START_TEST(test_more_than_100_detections) {
    /* 150 detections in one image: 99 strays with scores 1.0 - i/1000 (i = 1..99), then
     * the exact box (0.5, rank 100), then 50 more strays below it. Only the first 100
     * count: the TP is the 100th: precision 1/100 at every recall point: AP = 0.01,
     * AR100 = 1, AR10 = 0 (the first 10 are strays). */
    coco_dataset d = parse_ok(one_box);
    coco_det dets[150];
    for (int i = 0; i < 150; i++) {
        double score = i < 99 ? 1.0 - (i + 1) / 1000.0 : i == 99 ? 0.5 : 0.4 - i / 10000.0;
        coco_box b = {200.0 + 20 * i, 0, 10, 10};
        if (i == 99) b = (coco_box){0, 0, 10, 10};
        dets[i] = (coco_det){7, 1, b, score};
    }
    coco_metrics m = eval_ok(&d, dets, 150);
    ck_near(m.stats[AP], 0.01);
    ck_near(m.stats[AR100], 1.0);
    ck_near(m.stats[AR10], 0.0);
    coco_metrics_free(&m);

    /* one more stray above it pushes the TP to rank 101: cut. AP = AR100 = 0. */
    dets[149] = (coco_det){7, 1, {5000, 0, 10, 10}, 0.999};
    m = eval_ok(&d, dets, 150);
    ck_near(m.stats[AP], 0.0);
    ck_near(m.stats[AR100], 0.0);
    coco_metrics_free(&m);
    coco_dataset_free(&d);
}
END_TEST

START_TEST(test_images_without_annotations) {
    /* Image 1 has the object, found at .5; image 2 has none but a detection at .9 (a
     * false positive); image 3 has nothing at all. FP then TP: rc = [0, 1], pr = [0, .5]
     * -> 0.5 everywhere: AP = 0.5, AR100 = 1. */
    coco_dataset d =
        parse_ok("{\"images\":[{\"id\":1},{\"id\":2},{\"id\":3}]," ONE_CAT ",\"annotations\":["
                 "{\"id\":1,\"image_id\":1,\"category_id\":1,\"bbox\":[0,0,10,10],\"area\":100}]}");
    coco_det dets[] = {{1, 1, {0, 0, 10, 10}, 0.5}, {2, 1, {0, 0, 10, 10}, 0.9}};
    coco_metrics m = eval_ok(&d, dets, 2);
    ck_near(m.stats[AP], 0.5);
    ck_near(m.stats[AR100], 1.0);
    coco_metrics_free(&m);
    /* no detections at all: AP = AR = 0 (there is ground truth to find) */
    m = eval_ok(&d, NULL, 0);
    ck_near(m.stats[AP], 0.0);
    ck_near(m.stats[AR100], 0.0);
    ck_near(m.stats[APM], -1.0);
    coco_metrics_free(&m);
    coco_dataset_free(&d);
}
END_TEST

START_TEST(test_ties_follow_image_id_order) {
    /* Equal scores across images keep the images' id order (pycocotools concatenates
     * per image, ids sorted, then sorts stably). Images listed as 2, 1; the object is
     * in image 2; both detections score .5; image 1's is a stray. Id order: FP (image
     * 1) then TP -> AP 0.5. File order would give TP first -> 1. */
    coco_dataset d =
        parse_ok("{\"images\":[{\"id\":2},{\"id\":1}]," ONE_CAT ",\"annotations\":["
                 "{\"id\":1,\"image_id\":2,\"category_id\":1,\"bbox\":[0,0,10,10],\"area\":100}]}");
    coco_det dets[] = {{2, 1, {0, 0, 10, 10}, 0.5}, {1, 1, {0, 0, 10, 10}, 0.5}};
    coco_metrics m = eval_ok(&d, dets, 2);
    ck_near(m.stats[AP], 0.5);
    coco_metrics_free(&m);
    coco_dataset_free(&d);
}
END_TEST

START_TEST(test_recall_points_as_numpy) {
    /* 20 objects in a row; detections: 7 exact (TP), one stray (FP), the other 13 exact.
     * After the 7th TP recall is exactly 7/20 = 0.35, but recall point 35 is
     * 0.35000000000000003, so it is read after the FP, at the next TP, where the
     * monotone precision is the final 20/21: points 0..34 read 1 and points 35..100 read
     * 20/21. AP at every threshold (the boxes are exact) = (35 + 66 * 20/21) / 101.
     * Had point 35 been 0.35 it would read 1: (36 + 65 * 20/21) / 101. */
    char json[8192];
    int n = snprintf(json, sizeof json, "{\"images\":[{\"id\":1}]," ONE_CAT ",\"annotations\":[");
    for (int i = 0; i < 20; i++)
        n += snprintf(json + n, sizeof json - (size_t)n,
                      "%s{\"id\":%d,\"image_id\":1,\"category_id\":1,\"bbox\":[%d,0,10,10],\"area\":100}",
                      i ? "," : "", i + 1, 20 * i);
    snprintf(json + n, sizeof json - (size_t)n, "]}");
    coco_dataset d = parse_ok(json);
    coco_det dets[21];
    for (int i = 0, obj = 0; i < 21; i++) {
        double score = 1.0 - i / 100.0;
        if (i == 7)
            dets[i] = (coco_det){1, 1, {1000, 0, 10, 10}, score};
        else
            dets[i] = (coco_det){1, 1, {20.0 * obj++, 0, 10, 10}, score};
    }
    coco_metrics m = eval_ok(&d, dets, 21);
    double tail = 20.0 / (21.0 + 2.220446049250313e-16);
    ck_near(m.stats[AP], (35 + 66 * tail) / 101);
    ck_near(m.stats[AR100], 1.0);
    coco_metrics_free(&m);
    coco_dataset_free(&d);
}
END_TEST

START_TEST(test_area_ranges_of_detections) {
    /* A medium object (area 2000) found by a box of area 2000, plus a small stray (area
     * 100) above it. APs: no small ground truth: -1. APm: the stray is small and
     * unmatched, so it is ignored in the medium range: precision 1, APm = 1. All areas:
     * FP then TP -> AP = 0.5. Boundary: an area of exactly 32^2 = 1024 is both small and
     * medium (the ranges are inclusive). */
    coco_dataset d =
        parse_ok("{\"images\":[{\"id\":1}]," ONE_CAT ",\"annotations\":["
                 "{\"id\":1,\"image_id\":1,\"category_id\":1,\"bbox\":[0,0,50,40],\"area\":2000},"
                 "{\"id\":2,\"image_id\":1,\"category_id\":1,\"bbox\":[300,0,32,32],\"area\":1024}]}");
    coco_det dets[] = {{1, 1, {200, 200, 10, 10}, 0.9}, {1, 1, {0, 0, 50, 40}, 0.8}};
    coco_metrics m = eval_ok(&d, dets, 2);
    /* all: 2 objects, FP, TP: rc = [0, .5], pr = [0, .5] -> .5 at points 0..50, 0 after:
     * 51 * .5 / 101. small: the 1024 object only, unfound: 0. medium: both objects
     * (2000 and 1024), the small stray ignored, one TP: rc = [.5], precision 1 at
     * points 0..50: 51 / 101. */
    ck_near(m.stats[AP], 51 * (1 / (2 + 2.220446049250313e-16)) / 101);
    ck_near(m.stats[APS], 0.0);
    ck_near(m.stats[APM], 51.0 / 101);
    ck_near(m.stats[ARM], 0.5);
    coco_metrics_free(&m);
    coco_dataset_free(&d);
}
END_TEST

START_TEST(test_parse_errors) {
    static const struct {
        const char *json, *msg;
    } bad[] = {
        {"", "not valid JSON"},
        {"{\"images\":[", "not valid JSON"},
        {"[]", "expected a JSON object"},
        {"{\"annotations\":[],\"categories\":[]}", "images: expected an array"},
        {"{\"images\":[{\"id\":\"x\"}],\"annotations\":[],\"categories\":[]}", "images[0]: id"},
        {"{\"images\":[{\"id\":1},{\"id\":1}],\"annotations\":[],\"categories\":[]}", "id 1 appears twice"},
        {"{\"images\":[{\"id\":1}],\"annotations\":[{\"id\":1,\"image_id\":2,\"category_id\":1,"
         "\"bbox\":[0,0,1,1]}]," ONE_CAT "}",
         "annotations[0]: image_id 2 is not in images"},
        {"{\"images\":[{\"id\":1}],\"annotations\":[{\"id\":1,\"image_id\":1,\"category_id\":1,"
         "\"bbox\":[0,0,1]}]," ONE_CAT "}",
         "annotations[0]: bbox"},
        {"{\"images\":[{\"id\":1}],\"annotations\":[{\"id\":1,\"image_id\":1,\"category_id\":4,"
         "\"bbox\":[0,0,1,1]}]," ONE_CAT "}",
         "annotations[0]: category_id"},
        {"{\"images\":[],\"annotations\":[],\"categories\":[]} x", "unexpected bytes after the end"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        coco_dataset d;
        char err[256] = "";
        ck_assert_int_eq(coco_dataset_parse(bad[i].json, strlen(bad[i].json), "a.json", &d, err, sizeof err),
                         -1);
        ck_assert_msg(strstr(err, bad[i].msg) && strncmp(err, "a.json: ", 8) == 0, "case %zu: '%s'", i, err);
    }
    /* area and iscrowd are optional: area defaults to w*h */
    coco_dataset d = parse_ok("{\"images\":[{\"id\":1,\"file_name\":\"a.jpg\"}]," ONE_CAT ",\"annotations\":["
                              "{\"id\":1,\"image_id\":1,\"category_id\":1,\"bbox\":[0,0,3.5,2]}]}");
    ck_near(d.gts[0].area, 7.0);
    ck_assert_str_eq(d.images[0].file_name, "a.jpg");
    coco_det *dets;
    size_t n;
    char err[256];
    const char *res = "[{\"image_id\":1,\"category_id\":1,\"bbox\":[0,0,1,1],\"score\":0.5}]";
    ck_assert_int_eq(coco_results_parse(res, strlen(res), "r.json", &d, &dets, &n, err, sizeof err), 0);
    ck_assert_uint_eq(n, 1);
    free(dets);
    const char *unknown = "[{\"image_id\":9,\"category_id\":1,\"bbox\":[0,0,1,1],\"score\":0.5}]";
    ck_assert_int_eq(coco_results_parse(unknown, strlen(unknown), "r.json", &d, &dets, &n, err, sizeof err),
                     -1);
    ck_assert_ptr_nonnull(strstr(err, "r.json: [0]: image_id"));
    const char *noscore = "[{\"image_id\":1,\"category_id\":1,\"bbox\":[0,0,1,1]}]";
    ck_assert_int_eq(coco_results_parse(noscore, strlen(noscore), "r.json", &d, &dets, &n, err, sizeof err),
                     -1);
    ck_assert_ptr_nonnull(strstr(err, "score"));
    coco_dataset_free(&d);
}
END_TEST

static Suite *coco_suite(void) {
    Suite *s = suite_create("coco_eval");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_thresholds_match_numpy_linspace);
    tcase_add_test(tc, test_iou);
    tcase_add_test(tc, test_perfect);
    tcase_add_test(tc, test_shifted);
    tcase_add_test(tc, test_duplicates);
    tcase_add_test(tc, test_crowd);
    tcase_add_test(tc, test_crowd_sorted_last);
    tcase_add_test(tc, test_category_without_ground_truth);
    tcase_add_test(tc, test_more_than_100_detections);
    tcase_add_test(tc, test_images_without_annotations);
    tcase_add_test(tc, test_ties_follow_image_id_order);
    tcase_add_test(tc, test_recall_points_as_numpy);
    tcase_add_test(tc, test_area_ranges_of_detections);
    tcase_add_test(tc, test_parse_errors);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) {
    return tu_run_suite(coco_suite());
}
