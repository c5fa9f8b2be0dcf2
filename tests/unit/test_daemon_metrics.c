/* metrics_add_label: the `instance` label goes first into every sample of the
 * exposition text, whatever labels it already has; comments pass unchanged. */
#include <check.h>
#include <string.h>

#include "../daemon/metrics.h"
#include "testutil.h"

static void expect(const char *in, const char *want) {
    sbuf out;
    sb_init(&out);
    metrics_add_label(in, strlen(in), "instance", "host:8080", &out);
    sb_put(&out, "", 1); /* NUL */
    ck_assert(!out.oom);
    ck_assert_str_eq(out.data, want);
    sb_free(&out);
}

START_TEST(sample_forms) {
    expect("a_total 3\n", "a_total{instance=\"host:8080\"} 3\n");
    expect("a_total{x=\"1\",y=\"2\"} 3\n", "a_total{instance=\"host:8080\",x=\"1\",y=\"2\"} 3\n");
    expect("a{} 1\n", "a{instance=\"host:8080\"} 1\n");
    /* The last line may lack its newline. */
    expect("a 1\nb{le=\"+Inf\"} 2", "a{instance=\"host:8080\"} 1\nb{instance=\"host:8080\",le=\"+Inf\"} 2");
}
END_TEST

START_TEST(comments_and_blank_lines_unchanged) {
    expect("# HELP a_total Things {x} done.\n# TYPE a_total counter\n\na_total 1\n",
           "# HELP a_total Things {x} done.\n# TYPE a_total counter\n\na_total{instance=\"host:8080\"} 1\n");
    expect("", "");
}
END_TEST

START_TEST(whole_exposition) {
    /* What the daemon writes: every sample line gains exactly one instance label. */
    metrics m;
    memset(&m, 0, sizeof m);
    metrics_request(&m, EP_DETECT, 200);
    metrics_request(&m, EP_DETECT, 503);
    hist_observe(&m.inference, 0.02);
    sbuf text, out;
    sb_init(&text);
    sb_init(&out);
    metrics_write(&m, &text);
    metrics_add_label(text.data, text.len, "instance", "r1", &out);
    sb_put(&out, "", 1);
    int samples = 0;
    for (char *line = out.data; *line;) {
        char *nl = strchr(line, '\n');
        ck_assert_ptr_nonnull(nl);
        char one[512];
        ck_assert_int_lt(nl - line, (long)sizeof one);
        memcpy(one, line, (size_t)(nl - line));
        one[nl - line] = '\0';
        if (one[0] != '#') {
            samples++;
            ck_assert_msg(strstr(one, "{instance=\"r1\"") != NULL, "%s", one);
            ck_assert_msg(strstr(one, "{instance=\"r1\"") == strchr(one, '{'), "%s", one);
            ck_assert_msg(strstr(strstr(one, "instance=") + 1, "instance=") == NULL, "%s", one); /* once */
        }
        line = nl + 1;
    }
    ck_assert_int_gt(samples, 40);
    sb_free(&text);
    sb_free(&out);
}
END_TEST

int main(void) {
    Suite *s = suite_create("daemon_metrics");
    TCase *tc = tcase_create("label");
    tcase_add_test(tc, sample_forms);
    tcase_add_test(tc, comments_and_blank_lines_unchanged);
    tcase_add_test(tc, whole_exposition);
    suite_add_tcase(s, tc);
    return tu_run_suite(s);
}
