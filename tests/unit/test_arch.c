/* Architecture derivation: parameter counts of every named model must equal the
 * reference implementation's (the numbers the issue quotes from effdet). */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "effdet.h"
#include "model/arch.h"
#include "testutil.h"

static const struct {
    const char *name;
    long long params;
} EXPECTED[] = {
    {"tf_efficientdet_d0", 3880067},  {"tf_efficientdet_d1", 6625898},  {"tf_efficientdet_d2", 8097039},
    {"tf_efficientdet_d3", 12032296}, {"tf_efficientdet_d4", 20723675}, {"tf_efficientdet_d5", 33653315},
    {"tf_efficientdet_d6", 51871782}, {"tf_efficientdet_d7", 51871782}, {"efficientdet_d0", 3877763},
};

START_TEST(test_param_counts) {
    effdet_info info;
    effdet_error err;
    ck_assert_int_eq(effdet_describe(EXPECTED[_i].name, 90, &info, &err), EFFDET_OK);
    ck_assert_msg(info.params == EXPECTED[_i].params, "%s: %lld params, expected %lld", EXPECTED[_i].name,
                  info.params, EXPECTED[_i].params);
}
END_TEST

START_TEST(test_table1_sizes) {
    /* The paper's Table 1: input size, BiFPN width/depth, head depth. */
    static const int t[8][4] = {{512, 64, 3, 3},   {640, 88, 4, 3},   {768, 112, 5, 3},  {896, 160, 6, 4},
                                {1024, 224, 7, 4}, {1280, 288, 7, 4}, {1280, 384, 8, 5}, {1536, 384, 8, 5}};
    for (int d = 0; d < 8; d++) {
        char name[32];
        snprintf(name, sizeof name, "tf_efficientdet_d%d", d);
        effdet_arch a;
        ck_assert_int_eq(arch_from_name(&a, name, 90, NULL), EFFDET_OK);
        ck_assert_int_eq(a.image_h, t[d][0]);
        ck_assert_int_eq(a.fpn_channels, t[d][1]);
        ck_assert_int_eq(a.fpn_repeats, t[d][2]);
        ck_assert_int_eq(a.head_repeats, t[d][3]);
        ck_assert_int_eq(a.fusion, d >= 6 ? FUSE_SUM : FUSE_FASTATTN);
        ck_assert(a.anchor_scale == (d == 7 ? 5.0 : 4.0));
    }
}
END_TEST

START_TEST(test_b0_blocks_and_wiring) {
    effdet_arch a;
    ck_assert_int_eq(arch_from_name(&a, "tf_efficientdet_d0", 90, NULL), EFFDET_OK);
    ck_assert_int_eq(a.stem_ch, 32);
    ck_assert_int_eq(a.num_blocks, 16);
    ck_assert_int_eq(a.feature_ch[0], 40);
    ck_assert_int_eq(a.feature_ch[1], 112);
    ck_assert_int_eq(a.feature_ch[2], 320);
    ck_assert_int_eq(a.level_h[0], 64);
    ck_assert_int_eq(a.level_h[4], 4);
    /* effdet's BiFPN cell (docs/engine.md, BiFPN): nodes 5..12 follow P3..P7 (ids 0..4). */
    static const int inputs[8][3] = {{3, 4, -1}, {2, 5, -1}, {1, 6, -1}, {0, 7, -1},
                                     {1, 7, 8},  {2, 6, 9},  {3, 5, 10}, {4, 11, -1}};
    static const int levels[8] = {6, 5, 4, 3, 4, 5, 6, 7};
    ck_assert_int_eq(a.num_fpn_nodes, 8);
    for (int n = 0; n < 8; n++) {
        ck_assert_int_eq(a.fpn_nodes[n].level, levels[n]);
        ck_assert_int_eq(a.fpn_nodes[n].num_inputs, inputs[n][2] < 0 ? 2 : 3);
        for (int j = 0; j < a.fpn_nodes[n].num_inputs; j++) ck_assert_int_eq(a.fpn_nodes[n].inputs[j], inputs[n][j]);
    }
}
END_TEST

START_TEST(test_round_channels) {
    ck_assert_int_eq(arch_round_channels(32, 1.2), 40); /* 38.4 -> 40 */
    ck_assert_int_eq(arch_round_channels(16, 0.25), 8);  /* never below 8 */
    ck_assert_int_eq(arch_round_channels(320, 1.8), 576);
    ck_assert_int_eq(arch_round_channels(24, 1.1), 24);  /* 26.4 -> 24, within 10% */
}
END_TEST

START_TEST(test_tiny_metadata) {
    size_t len;
    char *buf = tu_read_file(tu_fixture("weights.safetensors"), &len);
    ck_assert_ptr_nonnull(buf);
    /* Pull __metadata__.config out by hand so this test does not depend on the loader. */
    uint64_t hlen;
    memcpy(&hlen, buf, 8);
    char *hdr = strndup(buf + 8, hlen);
    char *p = strstr(hdr, "\"config\"");
    ck_assert_ptr_nonnull(p);
    p = strchr(p + 8, '"');
    /* unescape the JSON string */
    char *cfg = malloc(strlen(p)), *o = cfg;
    for (p++; *p && *p != '"'; p++) {
        if (*p == '\\') p++;
        *o++ = *p;
    }
    *o = 0;
    effdet_arch a;
    effdet_error err;
    ck_assert_msg(arch_from_metadata(&a, cfg, "tiny", &err) == EFFDET_OK, "%s", err.msg);
    ck_assert_int_eq(a.stem_ch, 8);
    ck_assert_int_eq(a.num_blocks, 10); /* repeats 1,1,1,2,2,2,1 */
    ck_assert_int_eq(a.num_classes, 4);
    ck_assert_int_eq(a.fpn_channels, 16);
    ck_assert_int_eq(a.image_h, 128);
    ck_assert_int_eq(a.blocks[0].skip, 1);
    ck_assert_int_eq(a.blocks[1].mid_ch, 48);
    ck_assert_int_eq(a.blocks[3].se_ch, 4);
    ck_assert_int_eq(a.feature_ch[2], 80);
    ck_assert_int_eq(arch_param_count(&a), 188708);
    free(cfg);
    free(hdr);
    free(buf);
}
END_TEST

START_TEST(test_bad_metadata) {
    static const struct {
        const char *json, *expect;
    } cases[] = {
        {"[1,2]", "not a JSON object"},
        {"{}", "'name': missing"},
        {"{\"name\": \"x\", \"backbone_name\": \"resnet50\"}", "'backbone_name': unknown backbone"},
        {"{\"name\": \"x\", \"backbone_name\": \"tf_efficientnet_b0\"}", "'fpn_channels': missing"},
        {"{\"name\": \"tf_efficientdet_d0\", \"num_classes\": \"ninety\"}", "'num_classes': expected an integer"},
        {"{\"name\": \"tf_efficientdet_d0\", \"num_classes\": 0}", "num_classes 0 out of range"},
        {"{\"name\": \"tf_efficientdet_d0\", \"act_type\": \"relu\"}", "'act_type': unsupported value 'relu'"},
        {"{\"name\": \"tf_efficientdet_d0\", \"fpn_name\": \"pan_fa\"}", "'fpn_name': unsupported"},
        {"{\"name\": \"tf_efficientdet_d0\", \"image_size\": [512]}", "'image_size': expected [height, width]"},
        {"{\"name\": \"tf_efficientdet_d0\", \"min_level\": 2}", "levels 2..7 unsupported"},
        {"{\"name\": \"tf_efficientdet_d0\", \"aspect_ratios\": [[1.0, -1]]}", "'aspect_ratios'"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        effdet_arch a;
        effdet_error err = {{0}};
        ck_assert_int_ne(arch_from_metadata(&a, cases[i].json, "m.safetensors", &err), EFFDET_OK);
        ck_assert_msg(strstr(err.msg, cases[i].expect) && strstr(err.msg, "m.safetensors"),
                      "case %zu: got '%s', expected '%s'", i, err.msg, cases[i].expect);
    }
}
END_TEST

/* effdet_known_models() and the table of named architectures list the same models. */
START_TEST(test_known_models_all_describe) {
    int n = 0;
    for (const char *const *name = effdet_known_models(); *name; name++, n++) {
        effdet_info info;
        effdet_error err;
        ck_assert_msg(effdet_describe(*name, 0, &info, &err) == EFFDET_OK, "%s: %s", *name, err.msg);
        ck_assert_str_eq(info.name, *name);
    }
    ck_assert_int_eq(n, 10);
}
END_TEST

START_TEST(test_unknown_name) {
    effdet_info info;
    effdet_error err;
    ck_assert_int_eq(effdet_describe("tf_efficientdet_d9", 90, &info, &err), EFFDET_ERR_ARG);
    ck_assert_ptr_nonnull(strstr(err.msg, "tf_efficientdet_d9"));
}
END_TEST

int main(void) {
    Suite *s = suite_create("arch");
    TCase *tc = tcase_create("arch");
    tcase_add_loop_test(tc, test_param_counts, 0, (int)(sizeof EXPECTED / sizeof EXPECTED[0]));
    tcase_add_test(tc, test_table1_sizes);
    tcase_add_test(tc, test_b0_blocks_and_wiring);
    tcase_add_test(tc, test_round_channels);
    tcase_add_test(tc, test_tiny_metadata);
    tcase_add_test(tc, test_bad_metadata);
    tcase_add_test(tc, test_known_models_all_describe);
    tcase_add_test(tc, test_unknown_name);
    suite_add_tcase(s, tc);
    return tu_run_suite(s);
}
