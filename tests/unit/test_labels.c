/* Label maps: the built-in COCO map (embedded config/coco-labels.txt), `id label` text,
 * JSON arrays, lookups, and parse errors that name the line. */
#include <check.h>
#include <json-c/json.h>
#include <stdlib.h>
#include <string.h>

#include "model/labels.h"
#include "testutil.h"

START_TEST(test_builtin_coco) {
    label_map m;
    effdet_error err;
    ck_assert_int_eq(labels_builtin(&m, "coco", &err), EFFDET_OK);
    ck_assert_int_eq(m.num_classes, 90);
    ck_assert_str_eq(labels_name(&m, 0), "person");      /* id 1 */
    ck_assert_str_eq(labels_name(&m, 89), "toothbrush"); /* id 90 */
    ck_assert_str_eq(labels_name(&m, 43), "bottle");     /* id 44 */
    ck_assert_str_eq(labels_name(&m, 9), "traffic light");
    /* the ids COCO 2017 never annotates keep the COCO paper's names */
    static const struct {
        int id;
        const char *name;
    } gaps[] = {{12, "street sign"}, {26, "hat"},    {29, "shoe"}, {30, "eye glasses"}, {45, "plate"},
                {66, "mirror"},      {68, "window"}, {69, "desk"}, {71, "door"},        {83, "blender"}};
    for (size_t i = 0; i < sizeof gaps / sizeof gaps[0]; i++)
        ck_assert_str_eq(labels_name(&m, gaps[i].id - 1), gaps[i].name);
    ck_assert_int_eq(labels_find(&m, "person"), 0);
    ck_assert_int_eq(labels_find(&m, "toothbrush"), 89);
    ck_assert_int_eq(labels_find(&m, "unicorn"), -1);
    ck_assert_ptr_null(labels_name(&m, 90));
    ck_assert_ptr_null(labels_name(&m, -1));
    labels_free(&m);
    ck_assert_int_eq(labels_builtin(&m, "imagenet", &err), EFFDET_ERR_ARG);
    ck_assert_ptr_nonnull(strstr(err.msg, "imagenet"));
}
END_TEST

START_TEST(test_builtin_is_the_config_file) {
    /* the embedded text is config/coco-labels.txt byte for byte */
    size_t len = 0;
    char *file = tu_read_file("config/coco-labels.txt", &len);
    ck_assert_ptr_nonnull(file);
    const char *text = labels_builtin_text("coco");
    ck_assert_ptr_nonnull(text);
    ck_assert_uint_eq(strlen(text), len);
    ck_assert(memcmp(text, file, len) == 0);
    free(file);
}
END_TEST

START_TEST(test_parse_text) {
    label_map m;
    effdet_error err;
    const char *text = "# a comment\n"
                       "\n"
                       "  1   red  car  \r\n"
                       "\t# indented comment\n"
                       "3 blue\n"
                       "5 x";
    ck_assert_int_eq(labels_parse_text(&m, text, 6, "t.txt", &err), EFFDET_OK);
    ck_assert_int_eq(m.num_classes, 6);
    ck_assert_str_eq(m.names[0], "red  car"); /* inner spaces kept, ends trimmed */
    ck_assert_str_eq(m.names[1], "class2");   /* missing ids are named class<id> */
    ck_assert_str_eq(m.names[2], "blue");
    ck_assert_str_eq(m.names[3], "class4");
    ck_assert_str_eq(m.names[4], "x");
    ck_assert_str_eq(m.names[5], "class6");
    ck_assert_int_eq(labels_find(&m, "blue"), 2);
    labels_free(&m);
    /* num_classes <= 0: the largest id decides */
    ck_assert_int_eq(labels_parse_text(&m, text, 0, "t.txt", &err), EFFDET_OK);
    ck_assert_int_eq(m.num_classes, 5);
    labels_free(&m);
}
END_TEST

static void expect_error(const char *text, int num_classes, const char *want) {
    label_map m;
    effdet_error err = {{0}};
    ck_assert_int_eq(labels_parse_text(&m, text, num_classes, "bad.txt", &err), EFFDET_ERR_FORMAT);
    ck_assert_msg(strstr(err.msg, want) != NULL, "message '%s' lacks '%s'", err.msg, want);
    ck_assert_ptr_null(m.names);
}

START_TEST(test_parse_errors_name_the_line) {
    expect_error("1 a\n2 b\nthree c\n", 4, "bad.txt:3:");
    expect_error("1 a\n\n# c\n2\n", 4, "bad.txt:4: id 2 has no label");
    expect_error("1a b\n", 4, "bad.txt:1:");
    expect_error("1 a\n5 e\n", 4, "bad.txt:2: id 5 out of range 1..4");
    expect_error("0 zero\n", 4, "bad.txt:1: id 0 out of range");
    expect_error("0 zero\n", 0, "bad.txt:1: id 0 out of range");
    expect_error("1 a\n2 b\n1 again\n", 4, "bad.txt:3: duplicate id 1");
    expect_error("99999999999 a\n", 4, "bad.txt:1: id out of range");
    expect_error("# nothing\n", 0, "bad.txt: no labels");
}
END_TEST

START_TEST(test_from_json) {
    label_map m;
    effdet_error err;
    ck_assert_int_eq(labels_from_json_text(&m, "[\"cat\", \"dog\", \"hot dog\"]", 3, "m.safetensors", &err),
                     EFFDET_OK);
    ck_assert_int_eq(m.num_classes, 3);
    ck_assert_str_eq(m.names[2], "hot dog");
    ck_assert_int_eq(labels_find(&m, "dog"), 1);
    labels_free(&m);

    json_object *arr = json_tokener_parse("[\"a\", \"b\"]");
    ck_assert_int_eq(labels_from_json(&m, arr, 0, "m", &err), EFFDET_OK);
    ck_assert_int_eq(m.num_classes, 2);
    labels_free(&m);
    json_object_put(arr);

    ck_assert_int_eq(labels_from_json_text(&m, "[\"a\", \"b\"]", 3, "m.safetensors", &err),
                     EFFDET_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(err.msg, "m.safetensors: labels has 2 entries, the model has 3 classes"));
    ck_assert_int_eq(labels_from_json_text(&m, "[\"a\", 7]", 2, "m", &err), EFFDET_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(err.msg, "labels[1] is not a string"));
    ck_assert_int_eq(labels_from_json_text(&m, "{\"a\": 1}", 0, "m", &err), EFFDET_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(err.msg, "not a JSON array"));
    ck_assert_int_eq(labels_from_json_text(&m, "[\"a\", ", 0, "m", &err), EFFDET_ERR_FORMAT);
    ck_assert_int_eq(labels_from_json_text(&m, "[\"\"]", 0, "m", &err), EFFDET_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(err.msg, "labels[0] has length 0"));
}
END_TEST

static Suite *labels_suite(void) {
    Suite *s = suite_create("labels");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_builtin_coco);
    tcase_add_test(tc, test_builtin_is_the_config_file);
    tcase_add_test(tc, test_parse_text);
    tcase_add_test(tc, test_parse_errors_name_the_line);
    tcase_add_test(tc, test_from_json);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) {
    return tu_run_suite(labels_suite());
}
