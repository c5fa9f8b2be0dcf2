/* Query/form parameters of POST /detect and the DeepStack routes. */
#include <check.h>
#include <stdio.h>
#include <string.h>

#include "../daemon/params.h"
#include "testutil.h"

static int parse_query(param_list *p, const char *q, char *err, size_t errlen) {
    params_init(p);
    return params_parse_urlencoded(p, q, strlen(q), err, errlen);
}

static int detect(const char *q, detect_params *out, char *err, size_t errlen) {
    param_list p;
    detect_params d = {0};
    d.threshold = 0.25;
    d.max_detections = 100;
    if (parse_query(&p, q, err, errlen)) return -1;
    return detect_params_parse(&p, &d, out, err, errlen);
}

START_TEST(urlencoded_decoding) {
    param_list p;
    char err[256];
    ck_assert_int_eq(parse_query(&p, "a=1&b=x%20y+z&&c&classes=person%2Ccar", err, sizeof err), 0);
    ck_assert_int_eq(p.count, 4);
    ck_assert_str_eq(params_get(&p, "a", NULL), "1");
    ck_assert_str_eq(params_get(&p, "b", NULL), "x y z");
    ck_assert_str_eq(params_get(&p, "c", NULL), "");
    ck_assert_str_eq(params_get(&p, "classes", NULL), "person,car");
    ck_assert_ptr_null(params_get(&p, "d", NULL));
    ck_assert_int_eq(parse_query(&p, "a=%2", err, sizeof err), -1);
    ck_assert_int_eq(parse_query(&p, "a=%zz", err, sizeof err), -1);
    ck_assert_int_eq(parse_query(&p, "=1", err, sizeof err), -1);
    ck_assert_int_eq(parse_query(&p, "a=%00", err, sizeof err), -1); /* NUL byte */
    char many[PARAMS_MAX * 4 + 16] = "";
    for (int i = 0; i <= PARAMS_MAX; i++) memcpy(many + 4 * i, "k=1&", 5);
    ck_assert_int_eq(parse_query(&p, many, err, sizeof err), -1);
}
END_TEST

START_TEST(detect_values) {
    detect_params d;
    char err[256];
    ck_assert_int_eq(detect("", &d, err, sizeof err), 0);
    ck_assert_double_eq_tol(d.threshold, 0.25, 1e-12);
    ck_assert_int_eq(d.max_detections, 100);
    ck_assert_int_eq(detect("threshold=0.6&max_detections=7&nms=soft&classes=person,car&model=d0&render=jpeg",
                            &d, err, sizeof err),
                     0);
    ck_assert_double_eq_tol(d.threshold, 0.6, 1e-12);
    ck_assert_int_eq(d.max_detections, 7);
    ck_assert_int_eq(d.nms, 1);
    ck_assert_str_eq(d.classes, "person,car");
    ck_assert_str_eq(d.model, "d0");
    ck_assert_int_eq(d.render, RENDER_JPEG);
    ck_assert_int_eq(detect("threshold=0&threshold=1", &d, err, sizeof err), -1);
    ck_assert_str_eq(err, "parameter 'threshold' given 2 times");
    ck_assert_int_eq(detect("treshold=0.5", &d, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "unknown parameter 'treshold'"));
}
END_TEST

START_TEST(detect_bad_values) {
    static const char *bad[] = {
        "threshold=abc",    "threshold=-1",        "threshold=NaN",      "threshold=2",
        "threshold=inf",    "threshold=",          "threshold=0.5x",     "threshold=%200.5",
        "max_detections=0", "max_detections=5001", "max_detections=1.5", "max_detections=",
        "nms=medium",       "render=png"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        detect_params d;
        char err[256] = "";
        ck_assert_msg(detect(bad[i], &d, err, sizeof err) == -1, "%s accepted", bad[i]);
        ck_assert_msg(err[0] != '\0', "%s: no message", bad[i]);
    }
    detect_params d;
    char err[256];
    ck_assert_int_eq(detect("threshold=abc", &d, err, sizeof err), -1);
    ck_assert_str_eq(err, "threshold: 'abc' is not a number");
    ck_assert_int_eq(detect("threshold=2", &d, err, sizeof err), -1);
    ck_assert_str_eq(err, "threshold: 2 is outside [0, 1]");
}
END_TEST

START_TEST(compat_values) {
    param_list p;
    char err[256], key[64];
    double mc;
    ck_assert_int_eq(parse_query(&p, "typ=x&api_key=k1", err, sizeof err), 0);
    ck_assert_int_eq(compat_params_parse(&p, 0.4, &mc, key, sizeof key, err, sizeof err), 0);
    ck_assert_double_eq_tol(mc, 0.4, 1e-12);
    ck_assert_str_eq(key, "k1");
    ck_assert_int_eq(parse_query(&p, "min_confidence=0.1", err, sizeof err), 0);
    ck_assert_int_eq(compat_params_parse(&p, 0.4, &mc, key, sizeof key, err, sizeof err), 0);
    ck_assert_double_eq_tol(mc, 0.1, 1e-12);
    ck_assert_str_eq(key, "");
    ck_assert_int_eq(parse_query(&p, "min_confidence=1.01", err, sizeof err), 0);
    ck_assert_int_eq(compat_params_parse(&p, 0.4, &mc, key, sizeof key, err, sizeof err), -1);
    ck_assert_int_eq(parse_query(&p, "min_confidence=high", err, sizeof err), 0);
    ck_assert_int_eq(compat_params_parse(&p, 0.4, &mc, key, sizeof key, err, sizeof err), -1);
}
END_TEST

static const char *labels4[] = {"person", "bicycle", "car", "traffic light"};
static const char *label4(const void *arg, int c) {
    return c >= 0 && c < 4 ? labels4[c] : NULL;
}

START_TEST(class_mask) {
    uint8_t m[4];
    char err[256];
    ck_assert_int_eq(classes_to_mask(" Person , traffic light,car", 4, label4, NULL, m, err, sizeof err), 0);
    ck_assert_int_eq(m[0], 1);
    ck_assert_int_eq(m[1], 0);
    ck_assert_int_eq(m[2], 1);
    ck_assert_int_eq(m[3], 1);
    ck_assert_int_eq(classes_to_mask("person,dog", 4, label4, NULL, m, err, sizeof err), -1);
    ck_assert_str_eq(err, "classes: unknown label 'dog'");
    ck_assert_int_eq(classes_to_mask(" , ", 4, label4, NULL, m, err, sizeof err), -1);
}
END_TEST

int main(void) {
    Suite *s = suite_create("daemon_params");
    TCase *tc = tcase_create("params");
    tcase_add_test(tc, urlencoded_decoding);
    tcase_add_test(tc, detect_values);
    tcase_add_test(tc, detect_bad_values);
    tcase_add_test(tc, compat_values);
    tcase_add_test(tc, class_mask);
    suite_add_tcase(s, tc);
    return tu_run_suite(s);
}
