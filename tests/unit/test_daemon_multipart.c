/* multipart/form-data parser: what python-requests, curl and browsers send, and the
 * malformed bodies the daemon must refuse. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../daemon/multipart.h"
#include "testutil.h"

static int split(const char *body, size_t len, const char *boundary, mp_part *parts, int max, int *n,
                 char *err) {
    return multipart_parse((const uint8_t *)body, len, boundary, parts, max, n, err, 256);
}

START_TEST(boundary_from_content_type) {
    char b[MP_MAX_BOUNDARY + 1], err[256];
    ck_assert_int_eq(multipart_boundary("multipart/form-data; boundary=abc123", b, sizeof b, err, sizeof err),
                     0);
    ck_assert_str_eq(b, "abc123");
    ck_assert_int_eq(multipart_boundary("Multipart/Form-Data;charset=utf-8; BOUNDARY=\"a b:c\"", b, sizeof b,
                                        err, sizeof err),
                     0);
    ck_assert_str_eq(b, "a b:c");
    ck_assert_int_eq(multipart_boundary("multipart/form-data", b, sizeof b, err, sizeof err), -1);
    ck_assert_int_eq(multipart_boundary("multipart/form-data; boundary=", b, sizeof b, err, sizeof err), -1);
    ck_assert_int_eq(multipart_boundary("multipart/mixed; boundary=x", b, sizeof b, err, sizeof err), -1);
    ck_assert_int_eq(multipart_boundary("multipart/form-data; boundary=a<b", b, sizeof b, err, sizeof err),
                     -1);
    char longb[128] = "multipart/form-data; boundary=";
    memset(longb + strlen(longb), 'x', 71);
    ck_assert_int_eq(multipart_boundary(longb, b, sizeof b, err, sizeof err), -1);
}
END_TEST

/* Shaped like python-requests' encode_files(): data fields first, then files. */
static const char requests_body[] = "--b0undary\r\n"
                                    "Content-Disposition: form-data; name=\"api_key\"\r\n\r\n"
                                    "k\r\n"
                                    "--b0undary\r\n"
                                    "Content-Disposition: form-data; name=\"min_confidence\"\r\n\r\n"
                                    "0.1\r\n"
                                    "--b0undary\r\n"
                                    "Content-Disposition: form-data; name=\"image\"; filename=\"image\"\r\n"
                                    "Content-Type: image/jpeg\r\n\r\n"
                                    "\xff\xd8\r\n--b0undar\xff\xd9\r\n"
                                    "--b0undary--\r\n";

START_TEST(requests_style_body) {
    mp_part parts[8];
    int n;
    char err[256];
    ck_assert_msg(split(requests_body, sizeof requests_body - 1, "b0undary", parts, 8, &n, err) == 0, "%s",
                  err);
    ck_assert_int_eq(n, 3);
    ck_assert_str_eq(parts[0].name, "api_key");
    ck_assert_int_eq(parts[0].has_filename, 0);
    ck_assert_int_eq(parts[0].len, 1);
    ck_assert_int_eq(memcmp(parts[0].data, "k", 1), 0);
    ck_assert_str_eq(parts[1].name, "min_confidence");
    ck_assert_int_eq(parts[1].len, 3);
    ck_assert_str_eq(parts[2].name, "image");
    ck_assert_str_eq(parts[2].filename, "image");
    ck_assert_int_eq(parts[2].has_filename, 1);
    ck_assert_str_eq(parts[2].content_type, "image/jpeg");
    /* The data holds CRLF and a near-boundary: only "\r\n--b0undary" ends it. */
    static const char want[] = "\xff\xd8\r\n--b0undar\xff\xd9";
    ck_assert_int_eq(parts[2].len, sizeof want - 1);
    ck_assert_int_eq(memcmp(parts[2].data, want, sizeof want - 1), 0);
}
END_TEST

START_TEST(preamble_and_empty_part) {
    static const char body[] = "preamble text\r\n--x\r\n"
                               "Content-Disposition: form-data; name=\"e\"\r\n\r\n"
                               "\r\n--x--";
    mp_part parts[4];
    int n;
    char err[256];
    ck_assert_msg(split(body, sizeof body - 1, "x", parts, 4, &n, err) == 0, "%s", err);
    ck_assert_int_eq(n, 1);
    ck_assert_str_eq(parts[0].name, "e");
    ck_assert_int_eq(parts[0].len, 0);
}
END_TEST

START_TEST(malformed_bodies) {
    mp_part parts[4];
    int n;
    char err[256];
    static const char *bad[] = {
        "no boundary anywhere",
        "--x\r\nContent-Disposition: form-data; name=\"image\"\r\n\r\ndata never closed",
        "--x\r\nContent-Disposition: form-data; name=\"image\"\r\n\r\ndata\r\n--x",
        "--x\r\nContent-Disposition: form-data; name=\"image\"",
        "--x\r\nContent-Type: image/jpeg\r\n\r\ndata\r\n--x--",
        "--x\r\nContent-Disposition: attachment; name=\"image\"\r\n\r\ndata\r\n--x--",
        "--x\r\nContent-Disposition: form-data; name=\"unterminated\r\n\r\ndata\r\n--x--",
        "--xjunk\r\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        err[0] = '\0';
        ck_assert_msg(split(bad[i], strlen(bad[i]), "x", parts, 4, &n, err) == -1, "case %zu accepted", i);
        ck_assert_msg(err[0], "case %zu: no message", i);
    }
    static const char three[] = "--x\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n"
                                "--x\r\nContent-Disposition: form-data; name=\"b\"\r\n\r\n2\r\n"
                                "--x\r\nContent-Disposition: form-data; name=\"c\"\r\n\r\n3\r\n--x--\r\n";
    ck_assert_int_eq(split(three, sizeof three - 1, "x", parts, 2, &n, err), -1);
    ck_assert_str_eq(err, "multipart: more than 2 parts");
    ck_assert_int_eq(split(three, sizeof three - 1, "x", parts, 4, &n, err), 0);
    ck_assert_int_eq(n, 3);
}
END_TEST

START_TEST(huge_part_headers) {
    size_t pad = MP_MAX_PART_HEADERS + 100;
    char *body = malloc(pad + 256);
    int len = sprintf(body, "--x\r\nContent-Disposition: form-data; name=\"image\"\r\nX-Pad: ");
    memset(body + len, 'a', pad);
    len += (int)pad;
    len += sprintf(body + len, "\r\n\r\ndata\r\n--x--\r\n");
    mp_part parts[2];
    int n;
    char err[256];
    ck_assert_int_eq(split(body, (size_t)len, "x", parts, 2, &n, err), -1);
    ck_assert_ptr_nonnull(strstr(err, "part headers larger than"));
    free(body);
}
END_TEST

int main(void) {
    Suite *s = suite_create("daemon_multipart");
    TCase *tc = tcase_create("multipart");
    tcase_add_test(tc, boundary_from_content_type);
    tcase_add_test(tc, requests_style_body);
    tcase_add_test(tc, preamble_and_empty_part);
    tcase_add_test(tc, malformed_bodies);
    tcase_add_test(tc, huge_part_headers);
    suite_add_tcase(s, tc);
    return tu_run_suite(s);
}
