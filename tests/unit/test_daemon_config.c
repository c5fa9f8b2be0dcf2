/* effdetd config parser: defaults, file syntax, bounds, file:line errors, overrides. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../daemon/config.h"
#include "testutil.h"

static int parse(effdetd_config *c, const char *text, char *err, size_t errlen) {
    config_defaults(c);
    err[0] = '\0';
    return config_parse_text(c, text, strlen(text), "t.conf", err, errlen);
}

START_TEST(defaults_match_documented_values) {
    effdetd_config c;
    config_defaults(&c);
    ck_assert_str_eq(c.listen, "127.0.0.1:8080");
    ck_assert_int_eq(c.workers, 0);
    ck_assert_int_eq(c.threads_per_worker, 1);
    ck_assert_int_eq(c.queue_size, 0);
    ck_assert_int_eq(c.deadline_ms, 10000);
    ck_assert_int_eq(c.max_body_bytes, 16 * 1024 * 1024);
    ck_assert_int_eq(c.max_pixels, 40000000);
    ck_assert_int_eq(c.compat_max_predictions, 20);
    ck_assert_double_eq_tol(c.compat_min_confidence, 0.40, 1e-12);
    ck_assert_int_eq(c.access_log, 1);
    ck_assert_str_eq(c.log_level, "info");
    /* Every default in the table is itself a valid value. */
    for (const cfg_option *o = config_options(); o->name; o++) {
        char err[256];
        ck_assert_msg(config_set(&c, o->name, o->def, "t", err, sizeof err) == 0, "%s: %s", o->name, err);
    }
}
END_TEST

START_TEST(file_syntax) {
    effdetd_config c;
    char err[512];
    const char *text = "# comment\n"
                       "\n"
                       "  workers 3   # trailing comment\n"
                       "listen \"[::1]:9000\"\r\n"
                       "api_key = s3cret\n"
                       "max_body_bytes 2m\n"
                       "threshold 0.5\n"
                       "access_log off\n"
                       "log_level debug\n"
                       "model \"/srv/models/my model.safetensors\"\n"
                       "models_dir";
    ck_assert_msg(parse(&c, text, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(c.workers, 3);
    ck_assert_str_eq(c.listen, "[::1]:9000");
    ck_assert_str_eq(c.api_key, "s3cret");
    ck_assert_int_eq(c.max_body_bytes, 2 * 1024 * 1024);
    ck_assert_double_eq_tol(c.threshold, 0.5, 1e-12);
    ck_assert_int_eq(c.access_log, 0);
    ck_assert_str_eq(c.log_level, "debug");
    ck_assert_str_eq(c.model, "/srv/models/my model.safetensors");
    ck_assert_str_eq(c.models_dir, "");
}
END_TEST

START_TEST(errors_name_file_and_line) {
    effdetd_config c;
    char err[512];
    ck_assert_int_eq(parse(&c, "workers 2\nbogus 1\n", err, sizeof err), -1);
    ck_assert_str_eq(err, "t.conf:2: unknown option 'bogus'");
    ck_assert_int_eq(parse(&c, "\n\nworkers many\n", err, sizeof err), -1);
    ck_assert_str_eq(err, "t.conf:3: workers: 'many' is not an integer");
    ck_assert_int_eq(parse(&c, "threads_per_worker 0\n", err, sizeof err), -1);
    ck_assert_str_eq(err, "t.conf:1: threads_per_worker: 0 is outside [1, 64]");
    ck_assert_int_eq(parse(&c, "threshold 1.5\n", err, sizeof err), -1);
    ck_assert_str_eq(err, "t.conf:1: threshold: 1.5 is outside [0, 1]");
    ck_assert_int_eq(parse(&c, "threshold nan\n", err, sizeof err), -1);
    ck_assert_int_eq(parse(&c, "access_log maybe\n", err, sizeof err), -1);
    ck_assert_str_eq(err, "t.conf:1: access_log: 'maybe' is not yes/no");
    ck_assert_int_eq(parse(&c, "log_level loud\n", err, sizeof err), -1);
    ck_assert_str_eq(err, "t.conf:1: log_level: 'loud' is not one of error|warn|info|debug");
    ck_assert_int_eq(parse(&c, "listen \"127.0.0.1:80\n", err, sizeof err), -1);
    ck_assert_str_eq(err, "t.conf:1: listen: unterminated quote");
    ck_assert_int_eq(parse(&c, "workers\n", err, sizeof err), -1);
    ck_assert_str_eq(err, "t.conf:1: workers: missing value");
    ck_assert_int_eq(parse(&c, "max_pixels 12x\n", err, sizeof err), -1);
    ck_assert_int_eq(parse(&c, "workers 99999999999999999999\n", err, sizeof err), -1);
}
END_TEST

START_TEST(overrides_win_over_file) {
    char path[] = "/tmp/effdetd-test-XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    const char *text = "workers 2\nqueue_size 5\n";
    ck_assert_int_eq(write(fd, text, strlen(text)), (int)strlen(text));
    close(fd);
    const char *ov[] = {"workers", "7", "model", "/m/x.safetensors"};
    effdetd_config c;
    char err[512];
    ck_assert_msg(config_build(&c, path, ov, 2, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(c.workers, 7);
    ck_assert_int_eq(c.queue_size, 5);
    ck_assert_str_eq(c.model, "/m/x.safetensors");
    const char *bad[] = {"threads_per_worker", "100"};
    ck_assert_int_eq(config_build(&c, path, bad, 1, err, sizeof err), -1);
    ck_assert_str_eq(err, "--threads-per-worker: threads_per_worker: 100 is outside [1, 64]");
    unlink(path);
    ck_assert_int_eq(config_build(&c, path, NULL, 0, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "cannot open"));
}
END_TEST

START_TEST(listen_forms) {
    char host[64];
    int port;
    ck_assert_int_eq(config_split_listen("127.0.0.1:8080", host, sizeof host, &port), 0);
    ck_assert_str_eq(host, "127.0.0.1");
    ck_assert_int_eq(port, 8080);
    ck_assert_int_eq(config_split_listen("[::1]:0", host, sizeof host, &port), 0);
    ck_assert_str_eq(host, "::1");
    ck_assert_int_eq(port, 0);
    ck_assert_int_eq(config_split_listen("9000", host, sizeof host, &port), 0);
    ck_assert_str_eq(host, "0.0.0.0");
    ck_assert_int_eq(port, 9000);
    ck_assert_int_eq(config_split_listen("host:65536", host, sizeof host, &port), -1);
    ck_assert_int_eq(config_split_listen("host:", host, sizeof host, &port), -1);
    ck_assert_int_eq(config_split_listen("::1:80", host, sizeof host, &port), -1);
    ck_assert_int_eq(config_split_listen("[::1]80", host, sizeof host, &port), -1);
}
END_TEST

START_TEST(validate_and_round_trip) {
    effdetd_config c, d;
    char err[512];
    config_defaults(&c);
    ck_assert_int_eq(config_validate(&c, err, sizeof err), -1); /* no model */
    snprintf(c.model, sizeof c.model, "/x y/m.safetensors");
    c.workers = 3;
    c.threshold = 0.125;
    ck_assert_int_eq(config_validate(&c, err, sizeof err), 0);
    /* config_write's output parses back to the same configuration. */
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    config_write(&c, f);
    fclose(f);
    config_defaults(&d);
    ck_assert_msg(config_parse_text(&d, buf, len, "w", err, sizeof err) == 0, "%s", err);
    ck_assert_str_eq(d.model, c.model);
    ck_assert_int_eq(d.workers, 3);
    ck_assert_double_eq_tol(d.threshold, 0.125, 1e-12);
    ck_assert_str_eq(d.listen, c.listen);
    free(buf);
}
END_TEST

/* precision and model_precision NAME=...: per model, the last entry winning, else the
 * global precision. */
START_TEST(model_precision_per_name) {
    effdetd_config c;
    char err[256];
    ck_assert_int_eq(parse(&c, "model /m/d0.safetensors\n", err, sizeof err), 0);
    ck_assert_str_eq(c.precision, "fp32");
    ck_assert_str_eq(config_model_precision(&c, "d0"), "fp32");
    ck_assert_int_eq(parse(&c,
                           "model /m/d0.safetensors\nprecision bf16\n"
                           "model_precision d3=fp32,d0x=fp32,cam=bf16,d3=bf16,d0=fp32\n",
                           err, sizeof err),
                     0);
    ck_assert_int_eq(config_validate(&c, err, sizeof err), 0);
    ck_assert_str_eq(config_model_precision(&c, "d0"), "fp32");   /* its entry */
    ck_assert_str_eq(config_model_precision(&c, "d3"), "bf16");   /* the last entry wins */
    ck_assert_str_eq(config_model_precision(&c, "d"), "bf16");    /* no prefix match: global */
    ck_assert_str_eq(config_model_precision(&c, "yard"), "bf16"); /* global */
    ck_assert_int_eq(parse(&c, "precision fp16\n", err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "t.conf:1"));
    const char *bad[] = {"d0", "d0=", "=bf16", "d0=bf16,", "d0=bf16,,d3=fp32", "d0=BF16"};
    for (int i = 0; i < (int)(sizeof bad / sizeof bad[0]); i++) {
        config_defaults(&c);
        snprintf(c.model, sizeof c.model, "/m/d0.safetensors");
        snprintf(c.model_precision, sizeof c.model_precision, "%s", bad[i]);
        ck_assert_msg(config_validate(&c, err, sizeof err) == -1, "'%s' accepted", bad[i]);
        ck_assert_ptr_nonnull(strstr(err, "model_precision"));
    }
}
END_TEST

/* fuzz_config found it: an unquoted value holding a quote was accepted, and
 * config_write's output for it (--check-config) did not parse again. */
START_TEST(values_with_quotes_or_control_bytes_are_refused) {
    effdetd_config c;
    char err[512];
    config_defaults(&c);
    static const char bad1[] = "listen 127.s 2\024!akeY \"a b#c\n";
    ck_assert_int_eq(config_parse_text(&c, bad1, sizeof bad1 - 1, "f", err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "f:1: listen: a double quote or control character"));
    static const char bad2[] = "api_key ab\"c\n";
    ck_assert_int_eq(config_parse_text(&c, bad2, sizeof bad2 - 1, "f", err, sizeof err), -1);
    static const char good[] = "api_key \"a b#c\"\n";
    ck_assert_int_eq(config_parse_text(&c, good, sizeof good - 1, "f", err, sizeof err), 0);
    ck_assert_str_eq(c.api_key, "a b#c");
}
END_TEST

int main(void) {
    Suite *s = suite_create("daemon_config");
    TCase *tc = tcase_create("config");
    tcase_add_test(tc, defaults_match_documented_values);
    tcase_add_test(tc, file_syntax);
    tcase_add_test(tc, errors_name_file_and_line);
    tcase_add_test(tc, overrides_win_over_file);
    tcase_add_test(tc, listen_forms);
    tcase_add_test(tc, validate_and_round_trip);
    tcase_add_test(tc, values_with_quotes_or_control_bytes_are_refused);
    tcase_add_test(tc, model_precision_per_name);
    suite_add_tcase(s, tc);
    return tu_run_suite(s);
}
