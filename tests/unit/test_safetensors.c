/* lib/model/safetensors.c: validation errors on hand-built files, F16/BF16 widening, the fixture. */
#include <check.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "model/safetensors.h"
#include "testutil.h"

/* ------------------------------------------------------------ file builders */

static char tmp_dir[256];

static void make_tmp_dir(void) {
    snprintf(tmp_dir, sizeof tmp_dir, "/tmp/effdet_st_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmp_dir));
}

static void remove_tmp_dir(void) {
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp_dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmp_dir);
}

static const char *tmp_path(const char *name) {
    static char buf[512];
    snprintf(buf, sizeof buf, "%s/%s", tmp_dir, name);
    return buf;
}

static void write_bytes(const char *path, const void *bytes, size_t n) {
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(bytes, 1, n, f), n);
    fclose(f);
}

/* A safetensors file as the format defines it: u64 LE header length, the header bytes
 * (written as given: no padding, so data may start unaligned), then the data section. */
static const char *write_st(const char *name, const char *header, const void *data, size_t data_len) {
    size_t hlen = strlen(header);
    size_t total = 8 + hlen + data_len;
    uint8_t *buf = malloc(total);
    ck_assert_ptr_nonnull(buf);
    for (int i = 0; i < 8; i++) buf[i] = (uint8_t)((uint64_t)hlen >> (8 * i));
    memcpy(buf + 8, header, hlen);
    if (data_len) memcpy(buf + 8 + hlen, data, data_len);
    const char *path = tmp_path(name);
    write_bytes(path, buf, total);
    free(buf);
    return path;
}

/* Open a file that must be rejected; return the message. */
static const char *open_fails(const char *path, effdet_error *err) {
    st_file f;
    effdet_status s = st_open(path, &f, err);
    ck_assert_int_ne(s, EFFDET_OK);
    ck_assert_ptr_null(f.tensors); /* nothing left allocated */
    ck_assert_ptr_null(f.map);
    ck_assert_msg(strncmp(err->msg, path, strlen(path)) == 0, "message must start with the path: %s",
                  err->msg);
    return err->msg;
}

#define ASSERT_HAS(msg, needle)                                                                              \
    ck_assert_msg(strstr((msg), (needle)) != NULL, "'%s' not in: %s", (needle), (msg))

static const float zeros16[16];

/* ------------------------------------------------------------ rejected files */

START_TEST(test_shorter_than_length_prefix) {
    make_tmp_dir();
    const char *path = tmp_path("short.safetensors");
    write_bytes(path, "\x10\x00\x00", 3);
    effdet_error err;
    const char *msg = open_fails(path, &err);
    ASSERT_HAS(msg, "truncated");
    ASSERT_HAS(msg, "3 bytes");
    remove_tmp_dir();
}
END_TEST

START_TEST(test_empty_file) {
    make_tmp_dir();
    const char *path = tmp_path("empty.safetensors");
    write_bytes(path, "", 0);
    effdet_error err;
    ASSERT_HAS(open_fails(path, &err), "truncated");
    remove_tmp_dir();
}
END_TEST

START_TEST(test_missing_file) {
    effdet_error err;
    ASSERT_HAS(open_fails("/nonexistent/x.safetensors", &err), "cannot open");
}
END_TEST

START_TEST(test_header_length_past_eof) {
    make_tmp_dir();
    const char *path = tmp_path("past.safetensors");
    const uint8_t bytes[12] = {100, 0, 0, 0, 0, 0, 0, 0, '{', '}', ' ', ' '};
    write_bytes(path, bytes, sizeof bytes);
    effdet_error err;
    const char *msg = open_fails(path, &err);
    ASSERT_HAS(msg, "header length 100 runs past the end of the file (12 bytes)");
    remove_tmp_dir();
}
END_TEST

START_TEST(test_header_length_huge) {
    /* A length of 2^64-1 must not wrap any addition. */
    make_tmp_dir();
    const char *path = tmp_path("huge.safetensors");
    const uint8_t bytes[10] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, '{', '}'};
    write_bytes(path, bytes, sizeof bytes);
    effdet_error err;
    ASSERT_HAS(open_fails(path, &err), "runs past the end of the file");
    remove_tmp_dir();
}
END_TEST

START_TEST(test_header_length_absurd) {
    /* A sparse 160 MB file whose header claims 150 MB: inside the file, but no real header
     * is that big. */
    make_tmp_dir();
    const char *path = tmp_path("absurd.safetensors");
    uint64_t hlen = 150u * 1000u * 1000u;
    uint8_t prefix[8];
    for (int i = 0; i < 8; i++) prefix[i] = (uint8_t)(hlen >> (8 * i));
    write_bytes(path, prefix, 8);
    ck_assert_int_eq(truncate(path, 160 * 1000 * 1000), 0);
    effdet_error err;
    ASSERT_HAS(open_fails(path, &err), "header length 150000000 is absurd");
    remove_tmp_dir();
}
END_TEST

START_TEST(test_data_cut_short) {
    make_tmp_dir();
    /* Header promises 16 bytes of data; only 10 are there. */
    const char *path = write_st(
        "cut.safetensors", "{\"w\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", zeros16, 10);
    effdet_error err;
    const char *msg = open_fails(path, &err);
    ASSERT_HAS(msg, "tensor 'w'");
    ASSERT_HAS(msg, "run past the data section (10 bytes)");
    remove_tmp_dir();
}
END_TEST

START_TEST(test_offsets_out_of_range) {
    make_tmp_dir();
    const char *path = write_st("range.safetensors",
                                "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                                "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[56,64]}}",
                                zeros16, 16);
    effdet_error err;
    const char *msg = open_fails(path, &err);
    ASSERT_HAS(msg, "tensor 'b': data_offsets [56, 64] run past the data section (16 bytes)");
    remove_tmp_dir();
}
END_TEST

START_TEST(test_overlapping_offsets) {
    make_tmp_dir();
    const char *path = write_st("overlap.safetensors",
                                "{\"first\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,12]},"
                                "\"second\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[8,20]}}",
                                zeros16, 24);
    effdet_error err;
    const char *msg = open_fails(path, &err);
    ASSERT_HAS(msg, "tensors 'first' and 'second' have overlapping data_offsets");
    remove_tmp_dir();
}
END_TEST

START_TEST(test_adjacent_offsets_accepted) {
    make_tmp_dir();
    const char *path = write_st("adjacent.safetensors",
                                "{\"second\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[12,24]},"
                                "\"first\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,12]},"
                                "\"empty\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[12,12]}}",
                                zeros16, 24);
    st_file f;
    effdet_error err;
    ck_assert_int_eq(st_open(path, &f, &err), EFFDET_OK);
    ck_assert_int_eq(f.num_tensors, 3);
    st_close(&f);
    remove_tmp_dir();
}
END_TEST

START_TEST(test_end_before_begin) {
    make_tmp_dir();
    const char *path =
        write_st("backwards.safetensors", "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,4]}}",
                 zeros16, 16);
    effdet_error err;
    ASSERT_HAS(open_fails(path, &err), "tensor 'w': data_offsets end 4 is before begin 8");
    remove_tmp_dir();
}
END_TEST

START_TEST(test_size_not_numel_times_dtype) {
    make_tmp_dir();
    const char *path =
        write_st("size.safetensors", "{\"w\":{\"dtype\":\"F16\",\"shape\":[2,3],\"data_offsets\":[0,24]}}",
                 zeros16, 24);
    effdet_error err;
    ASSERT_HAS(open_fails(path, &err),
               "tensor 'w': data_offsets span 24 bytes but F16 x 6 elements needs 12");
    remove_tmp_dir();
}
END_TEST

START_TEST(test_numel_overflow) {
    make_tmp_dir();
    const char *path =
        write_st("overflow.safetensors",
                 "{\"w\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,16],\"data_offsets\":[0,0]}}",
                 zeros16, 0);
    effdet_error err;
    ASSERT_HAS(open_fails(path, &err), "tensor 'w': element count overflows");
    remove_tmp_dir();
}
END_TEST

START_TEST(test_unsupported_dtype) {
    make_tmp_dir();
    const char *path =
        write_st("i64.safetensors", "{\"idx\":{\"dtype\":\"I64\",\"shape\":[2],\"data_offsets\":[0,16]}}",
                 zeros16, 16);
    effdet_error err;
    ASSERT_HAS(open_fails(path, &err), "tensor 'idx' has dtype I64; only F32, F16 and BF16 are supported");
    remove_tmp_dir();
}
END_TEST

START_TEST(test_bad_shape) {
    make_tmp_dir();
    const char *path =
        write_st("shape.safetensors", "{\"w\":{\"dtype\":\"F32\",\"shape\":[2,-1],\"data_offsets\":[0,8]}}",
                 zeros16, 16);
    effdet_error err;
    ASSERT_HAS(open_fails(path, &err), "tensor 'w': shape[1] is not a non-negative integer");
    remove_tmp_dir();
}
END_TEST

START_TEST(test_bad_json) {
    make_tmp_dir();
    const char *path = write_st("json.safetensors", "{\"w\":{\"dtype\":\"F32\",", zeros16, 16);
    effdet_error err;
    ASSERT_HAS(open_fails(path, &err), "header is not valid JSON");
    const char *path2 = write_st("json2.safetensors", "{\"w\": nope}", zeros16, 16);
    ASSERT_HAS(open_fails(path2, &err), "header is not valid JSON");
    const char *path3 = write_st("json3.safetensors", "{} {}", zeros16, 16);
    ASSERT_HAS(open_fails(path3, &err), "header is not valid JSON");
    const char *path4 = write_st("json4.safetensors", "[1, 2]", zeros16, 16);
    ASSERT_HAS(open_fails(path4, &err), "header is not a JSON object");
    remove_tmp_dir();
}
END_TEST

START_TEST(test_metadata_must_be_strings) {
    make_tmp_dir();
    const char *path =
        write_st("meta.safetensors", "{\"__metadata__\":{\"config\":{\"name\":\"d0\"}}}", zeros16, 0);
    effdet_error err;
    ASSERT_HAS(open_fails(path, &err), "__metadata__ field 'config' is not a string");
    remove_tmp_dir();
}
END_TEST

/* ------------------------------------------------------------ lookups */

static const char two_tensors[] =
    "{\"__metadata__\":{\"format\":\"pt\",\"config\":\"{\\\"name\\\": \\\"x\\\"}\"},"
    "\"conv.weight\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]},"
    "\"conv.bias\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[24,32]}}";

START_TEST(test_missing_tensor) {
    make_tmp_dir();
    const char *path = write_st("two.safetensors", two_tensors, zeros16, 32);
    st_file f;
    effdet_error err;
    ck_assert_int_eq(st_open(path, &f, &err), EFFDET_OK);
    ck_assert_str_eq(f.metadata_config, "{\"name\": \"x\"}");
    float dst[2];
    int64_t shape[1] = {2};
    ck_assert_int_eq(st_read_f32(&f, "bn.bias", 1, shape, dst, &err), EFFDET_ERR_FORMAT);
    char want[600];
    snprintf(want, sizeof want, "%s: missing tensor 'bn.bias'", path);
    ck_assert_str_eq(err.msg, want);
    st_close(&f);
    remove_tmp_dir();
}
END_TEST

START_TEST(test_wrong_shape) {
    make_tmp_dir();
    const char *path = write_st("two.safetensors", two_tensors, zeros16, 32);
    st_file f;
    effdet_error err;
    ck_assert_int_eq(st_open(path, &f, &err), EFFDET_OK);
    float dst[6];
    int64_t shape[2] = {3, 2};
    ck_assert_int_eq(st_read_f32(&f, "conv.weight", 2, shape, dst, &err), EFFDET_ERR_FORMAT);
    char want[600];
    snprintf(want, sizeof want, "%s: tensor 'conv.weight' has shape [2, 3] but the model expects [3, 2]",
             path);
    ck_assert_str_eq(err.msg, want);
    int64_t shape3[3] = {2, 3, 1};
    ck_assert_int_eq(st_read_f32(&f, "conv.weight", 3, shape3, dst, &err), EFFDET_ERR_FORMAT);
    ASSERT_HAS(err.msg, "has shape [2, 3] but the model expects [2, 3, 1]");
    st_close(&f);
    remove_tmp_dir();
}
END_TEST

START_TEST(test_unexpected_tensor) {
    make_tmp_dir();
    const char *path = write_st("two.safetensors", two_tensors, zeros16, 32);
    st_file f;
    effdet_error err;
    ck_assert_int_eq(st_open(path, &f, &err), EFFDET_OK);
    float dst[6];
    int64_t shape[2] = {2, 3};
    ck_assert_int_eq(st_read_f32(&f, "conv.weight", 2, shape, dst, &err), EFFDET_OK);
    ck_assert_int_eq(st_check_all_used(&f, &err), EFFDET_ERR_FORMAT);
    char want[600];
    snprintf(want, sizeof want, "%s: unexpected tensor 'conv.bias' (not part of this architecture)", path);
    ck_assert_str_eq(err.msg, want);
    ck_assert_ptr_nonnull(st_find(&f, "conv.bias"));
    ck_assert_int_eq(st_check_all_used(&f, &err), EFFDET_OK);
    st_close(&f);
    remove_tmp_dir();
}
END_TEST

/* ------------------------------------------------------------ widening */

START_TEST(test_f32_unaligned) {
    /* A 9-byte header puts the data at file offset 17: reads must not assume alignment. */
    make_tmp_dir();
    const float values[3] = {1.5f, -2.25f, 3.0e-38f};
    char header[64];
    snprintf(header, sizeof header, "{\"w\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,12]}}");
    const char *path = write_st("unaligned.safetensors", header, values, sizeof values);
    ck_assert_uint_eq((8 + strlen(header)) % 4 != 0, 1);
    st_file f;
    effdet_error err;
    ck_assert_int_eq(st_open(path, &f, &err), EFFDET_OK);
    float dst[3];
    int64_t shape[1] = {3};
    ck_assert_int_eq(st_read_f32(&f, "w", 1, shape, dst, &err), EFFDET_OK);
    ck_assert_mem_eq(dst, values, sizeof values);
    st_close(&f);
    remove_tmp_dir();
}
END_TEST

static void read_u16_tensor(const char *dtype, const uint16_t *bits, int n, float *dst) {
    uint8_t data[64];
    for (int i = 0; i < n; i++) {
        data[2 * i] = (uint8_t)(bits[i] & 0xff);
        data[2 * i + 1] = (uint8_t)(bits[i] >> 8);
    }
    char header[128];
    snprintf(header, sizeof header, "{\"h\":{\"dtype\":\"%s\",\"shape\":[%d],\"data_offsets\":[0,%d]}}",
             dtype, n, 2 * n);
    const char *path = write_st("half.safetensors", header, data, (size_t)(2 * n));
    st_file f;
    effdet_error err;
    ck_assert_msg(st_open(path, &f, &err) == EFFDET_OK, "%s", err.msg);
    int64_t shape[1] = {n};
    ck_assert_int_eq(st_read_f32(&f, "h", 1, shape, dst, &err), EFFDET_OK);
    st_close(&f);
}

/* Widen n 16-bit patterns of dtype through the reader; each must equal want[i] exactly,
 * sign of zero included (NaN only needs to stay NaN). */
static void check_widening(const char *dtype, const uint16_t *bits, const float *want, int n) {
    float got[16];
    read_u16_tensor(dtype, bits, n, got);
    for (int i = 0; i < n; i++) {
        if (isnan(want[i])) {
            ck_assert_msg(isnan(got[i]), "%s 0x%04x -> %g, want NaN", dtype, bits[i], (double)got[i]);
        } else {
            ck_assert_msg(got[i] == want[i] && signbit(got[i]) == signbit(want[i]), "%s 0x%04x -> %a, want %a",
                          dtype, bits[i], (double)got[i], (double)want[i]);
        }
    }
}

START_TEST(test_f16_widening) {
    make_tmp_dir();
    /* Bit patterns and their values from the IEEE 754 binary16 definition. */
    const uint16_t bits[] = {0x3c00, 0xc000, 0x3555, 0x7bff, 0x0400, 0x0001, 0x03ff,
                             0x8001, 0x0000, 0x8000, 0x7c00, 0xfc00, 0x7e00, 0x1234};
    const float want[] = {1.0f,
                          -2.0f,
                          0.333251953125f,
                          65504.0f,
                          0x1p-14f,           /* smallest normal */
                          0x1p-24f,           /* smallest subnormal */
                          1023.0f * 0x1p-24f, /* largest subnormal */
                          -0x1p-24f,
                          0.0f,
                          -0.0f,
                          INFINITY,
                          -INFINITY,
                          NAN,
                          (1.0f + 0x234 / 1024.0f) * 0x1p-11f}; /* 0x1234: exp 4 -> 2^(4-15) */
    check_widening("F16", bits, want, (int)(sizeof bits / sizeof bits[0]));
    remove_tmp_dir();
}
END_TEST

START_TEST(test_bf16_widening) {
    make_tmp_dir();
    const uint16_t bits[] = {0x3f80, 0xc040, 0x3eab, 0x0001, 0x8001, 0x7f80, 0xff80, 0x7fc0, 0x8000, 0x4049};
    const float want[] = {1.0f,     -3.0f,     0.333984375f, 0x1p-133f, -0x1p-133f,
                          INFINITY, -INFINITY, NAN,          -0.0f,     3.140625f};
    check_widening("BF16", bits, want, (int)(sizeof bits / sizeof bits[0]));
    remove_tmp_dir();
}
END_TEST

/* ------------------------------------------------------------ the real fixture */

START_TEST(test_fixture_weights) {
    const char *path = tu_fixture("weights.safetensors");
    st_file f;
    effdet_error err;
    ck_assert_msg(st_open(path, &f, &err) == EFFDET_OK, "%s", err.msg);
    ck_assert_int_eq(f.num_tensors, 446); /* 447 header entries minus __metadata__ */
    ck_assert_ptr_nonnull(f.metadata_config);
    json_object *cfg = json_tokener_parse(f.metadata_config);
    ck_assert_ptr_nonnull(cfg);
    json_object *nc = NULL;
    ck_assert(json_object_object_get_ex(cfg, "num_classes", &nc));
    ck_assert_int_eq(json_object_get_int(nc), 4);
    json_object_put(cfg);

    /* The stem conv is the first tensor of the data section: compare with the raw bytes. */
    size_t len = 0;
    uint8_t *raw = tu_read_file(path, &len);
    ck_assert_ptr_nonnull(raw);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | raw[i];
    float stem[8 * 3 * 3 * 3];
    int64_t shape[4] = {8, 3, 3, 3};
    ck_assert_msg(st_read_f32(&f, "backbone.conv_stem.weight", 4, shape, stem, &err) == EFFDET_OK, "%s",
                  err.msg);
    ck_assert_mem_eq(stem, raw + 8 + hlen, sizeof stem);
    free(raw);

    st_tensor *ew = st_find(&f, "fpn.cell.0.fnode.3.combine.edge_weights");
    ck_assert_ptr_nonnull(ew);
    ck_assert_int_eq(ew->ndim, 1);
    ck_assert_int_eq(ew->shape[0], 2);
    ck_assert_int_eq(ew->dtype, ST_F32);
    ck_assert_int_eq(st_check_all_used(&f, &err), EFFDET_ERR_FORMAT);
    st_close(&f);
}
END_TEST

static Suite *safetensors_suite(void) {
    Suite *s = suite_create("safetensors");
    TCase *bad = tcase_create("rejected");
    tcase_add_test(bad, test_shorter_than_length_prefix);
    tcase_add_test(bad, test_empty_file);
    tcase_add_test(bad, test_missing_file);
    tcase_add_test(bad, test_header_length_past_eof);
    tcase_add_test(bad, test_header_length_huge);
    tcase_add_test(bad, test_header_length_absurd);
    tcase_add_test(bad, test_data_cut_short);
    tcase_add_test(bad, test_offsets_out_of_range);
    tcase_add_test(bad, test_overlapping_offsets);
    tcase_add_test(bad, test_adjacent_offsets_accepted);
    tcase_add_test(bad, test_end_before_begin);
    tcase_add_test(bad, test_size_not_numel_times_dtype);
    tcase_add_test(bad, test_numel_overflow);
    tcase_add_test(bad, test_unsupported_dtype);
    tcase_add_test(bad, test_bad_shape);
    tcase_add_test(bad, test_bad_json);
    tcase_add_test(bad, test_metadata_must_be_strings);
    suite_add_tcase(s, bad);
    TCase *look = tcase_create("lookup");
    tcase_add_test(look, test_missing_tensor);
    tcase_add_test(look, test_wrong_shape);
    tcase_add_test(look, test_unexpected_tensor);
    suite_add_tcase(s, look);
    TCase *widen = tcase_create("widen");
    tcase_add_test(widen, test_f32_unaligned);
    tcase_add_test(widen, test_f16_widening);
    tcase_add_test(widen, test_bf16_widening);
    suite_add_tcase(s, widen);
    TCase *fix = tcase_create("fixture");
    tcase_add_test(fix, test_fixture_weights);
    suite_add_tcase(s, fix);
    return s;
}

int main(void) {
    return tu_run_suite(safetensors_suite());
}
