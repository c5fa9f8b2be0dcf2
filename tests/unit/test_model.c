/*
 * Model loading end to end: files that are valid safetensors but the wrong model (a
 * missing, extra or mis-shaped tensor, bad metadata) are refused with a message naming
 * the file and the tensor or field; F16 weights load and widen; one model is shared by
 * concurrent contexts; a forward pass allocates nothing. The bf16 precision mode: names,
 * refusal below the avx512 level (and on CPUs without AVX512_BF16), and a bf16 model's
 * forward pass (arena sized by its measure pass, nothing allocated, the same result at
 * every thread count).
 */
#include <check.h>
#include <json-c/json.h>
#include <malloc.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/cpu.h"
#include "effdet.h"
#include "effdet_debug.h"
#include "testutil.h"

/* ---- a tiny safetensors rewriter: header JSON + data, edited, written back */

typedef struct {
    json_object *header;
    uint8_t *data; /* the data section of the source file */
} st_image;

static void st_image_load(st_image *s, const char *path) {
    size_t len;
    uint8_t *buf = tu_read_file(path, &len);
    ck_assert_ptr_nonnull(buf);
    uint64_t hlen;
    memcpy(&hlen, buf, 8);
    char *hdr = strndup((char *)buf + 8, hlen);
    s->header = json_tokener_parse(hdr);
    ck_assert_ptr_nonnull(s->header);
    s->data = malloc(len - 8 - hlen);
    memcpy(s->data, buf + 8 + hlen, len - 8 - hlen);
    free(hdr);
    free(buf);
}

/* Write the tensors the header lists (in its key order), re-laying out the data; a
 * tensor whose dtype was changed to F16 is converted from its F32 bytes. */
static uint16_t f32_to_f16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000, e = (x >> 23) & 0xff, m = x & 0x7fffff;
    int exp = (int)e - 127 + 15;
    if (exp <= 0) return (uint16_t)sign; /* flush tiny values: fine for this test */
    if (exp >= 31) return (uint16_t)(sign | 0x7c00);
    uint32_t h = sign | ((uint32_t)exp << 10) | (m >> 13);
    if (m & 0x1000) h++; /* round half up */
    return (uint16_t)h;
}

static void st_image_write(const st_image *s, const char *path) {
    json_object *out = json_object_new_object();
    size_t cap = 1 << 20, used = 0;
    uint8_t *data = malloc(cap);
    json_object_object_foreach(s->header, key, val) {
        if (strcmp(key, "__metadata__") == 0) {
            json_object_object_add(out, key, json_object_get(val));
            continue;
        }
        json_object *dt, *offs, *shape;
        json_object_object_get_ex(val, "dtype", &dt);
        json_object_object_get_ex(val, "data_offsets", &offs);
        json_object_object_get_ex(val, "shape", &shape);
        size_t b = (size_t)json_object_get_int64(json_object_array_get_idx(offs, 0));
        size_t e = (size_t)json_object_get_int64(json_object_array_get_idx(offs, 1));
        int f16 = strcmp(json_object_get_string(dt), "F16") == 0;
        size_t n = (e - b) / 4, bytes = f16 ? n * 2 : e - b;
        while (used + bytes > cap) {
            uint8_t *grown = realloc(data, cap *= 2);
            ck_assert_ptr_nonnull(grown);
            data = grown;
        }
        if (f16) {
            for (size_t i = 0; i < n; i++) {
                float f;
                memcpy(&f, s->data + b + 4 * i, 4);
                uint16_t h = f32_to_f16(f);
                memcpy(data + used + 2 * i, &h, 2);
            }
        } else {
            memcpy(data + used, s->data + b, bytes);
        }
        json_object *t = json_object_new_object(), *o = json_object_new_array();
        json_object_object_add(t, "dtype", json_object_get(dt));
        json_object_object_add(t, "shape", json_object_get(shape));
        json_object_array_add(o, json_object_new_int64((int64_t)used));
        json_object_array_add(o, json_object_new_int64((int64_t)(used + bytes)));
        json_object_object_add(t, "data_offsets", o);
        json_object_object_add(out, key, t);
        used += bytes;
    }
    const char *h = json_object_to_json_string_ext(out, JSON_C_TO_STRING_PLAIN);
    uint64_t hlen = (strlen(h) + 7) / 8 * 8;
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    fwrite(&hlen, 8, 1, f);
    fwrite(h, 1, strlen(h), f);
    for (size_t i = strlen(h); i < hlen; i++) fputc(' ', f);
    fwrite(data, 1, used, f);
    fclose(f);
    json_object_put(out);
    free(data);
}

static void st_image_free(st_image *s) {
    json_object_put(s->header);
    free(s->data);
}

static char tmp_path[256];

static void setup(void) { snprintf(tmp_path, sizeof tmp_path, "/tmp/effdet-test-model-%d.safetensors", (int)getpid()); }
static void teardown(void) { unlink(tmp_path); }

/* Load the edited file and require failure with all `needles` in the message. */
static void expect_refused(const st_image *s, const char *n1, const char *n2) {
    st_image_write(s, tmp_path);
    effdet_model *m = NULL;
    effdet_error err = {{0}};
    effdet_status st = effdet_model_load(tmp_path, &m, &err);
    ck_assert_msg(st != EFFDET_OK, "loaded a bad file");
    ck_assert_ptr_null(m);
    ck_assert_msg(strstr(err.msg, tmp_path), "message does not name the file: %s", err.msg);
    ck_assert_msg(strstr(err.msg, n1), "expected '%s' in: %s", n1, err.msg);
    if (n2) ck_assert_msg(strstr(err.msg, n2), "expected '%s' in: %s", n2, err.msg);
}

START_TEST(test_missing_tensor) {
    st_image s;
    st_image_load(&s, tu_fixture("weights.safetensors"));
    json_object_object_del(s.header, "fpn.cell.1.fnode.4.combine.edge_weights");
    expect_refused(&s, "missing tensor", "fpn.cell.1.fnode.4.combine.edge_weights");
    st_image_free(&s);
}
END_TEST

START_TEST(test_extra_tensor) {
    st_image s;
    st_image_load(&s, tu_fixture("weights.safetensors"));
    json_object *src;
    ck_assert(json_object_object_get_ex(s.header, "backbone.bn1.bias", &src));
    json_object_object_add(s.header, "backbone.bn9.bias", json_object_get(src));
    expect_refused(&s, "unexpected tensor", "backbone.bn9.bias");
    st_image_free(&s);
}
END_TEST

START_TEST(test_wrong_shape) {
    /* Claim 5 classes: the class predictor has 9*4 outputs, the metadata now wants 9*5. */
    st_image s;
    st_image_load(&s, tu_fixture("weights.safetensors"));
    json_object *meta, *cfg;
    ck_assert(json_object_object_get_ex(s.header, "__metadata__", &meta));
    ck_assert(json_object_object_get_ex(meta, "config", &cfg));
    json_object *c = json_tokener_parse(json_object_get_string(cfg));
    json_object_object_add(c, "num_classes", json_object_new_int(5));
    json_object_object_add(meta, "config", json_object_new_string(json_object_to_json_string(c)));
    json_object_put(c);
    expect_refused(&s, "class_net.predict.conv_pw.weight", "[45, 16, 1, 1]");
    st_image_free(&s);
}
END_TEST

START_TEST(test_bad_metadata) {
    st_image s;
    st_image_load(&s, tu_fixture("weights.safetensors"));
    json_object *meta;
    ck_assert(json_object_object_get_ex(s.header, "__metadata__", &meta));
    json_object_object_add(meta, "config", json_object_new_string("{\"name\": \"tiny\", \"backbone_name\": \"tf_efficientnet_b0\", \"fpn_channels\": \"16\"}"));
    expect_refused(&s, "'fpn_channels'", "expected an integer");
    json_object_object_del(meta, "config");
    expect_refused(&s, "__metadata__.config", NULL);
    st_image_free(&s);
}
END_TEST

static void forward_tiny(const char *path, effdet_tensor *cls3, float **copy) {
    effdet_model *m;
    effdet_context *ctx;
    effdet_error err;
    ck_assert_msg(effdet_model_load(path, &m, &err) == EFFDET_OK, "%s", err.msg);
    ck_assert_int_eq(effdet_context_create(m, 1, &ctx, &err), EFFDET_OK);
    float *in = tu_read_file(tu_fixture("input.f32"), NULL);
    ck_assert_int_eq(effdet_forward(ctx, in, &err), EFFDET_OK);
    ck_assert_int_eq(effdet_get_tensor(ctx, EFFDET_T_CLASS, 0, cls3), EFFDET_OK);
    size_t n = (size_t)cls3->h * cls3->w * cls3->c;
    *copy = malloc(n * sizeof(float));
    memcpy(*copy, cls3->data, n * sizeof(float));
    free(in);
    effdet_context_free(ctx);
    effdet_model_free(m);
}

START_TEST(test_f16_weights) {
    st_image s;
    st_image_load(&s, tu_fixture("weights.safetensors"));
    json_object_object_foreach(s.header, key, val) {
        if (strcmp(key, "__metadata__") != 0) json_object_object_add(val, "dtype", json_object_new_string("F16"));
    }
    st_image_write(&s, tmp_path);
    effdet_tensor t16, t32;
    float *a, *b;
    forward_tiny(tmp_path, &t16, &a);
    forward_tiny(tu_fixture("weights.safetensors"), &t32, &b);
    double e = tu_rel_err(a, b, (size_t)t32.h * t32.w * t32.c);
    printf("F16 weights vs F32: class_P3 rel err %.3g\n", e);
    ck_assert_msg(e > 0 && e < 3e-2, "F16 result off by %g", e); /* half precision, not garbage */
    free(a);
    free(b);
    st_image_free(&s);
}
END_TEST

/* One model, two contexts, two threads at once: both give the single-thread answer. */
typedef struct {
    const effdet_model *m;
    const float *input;
    float *out;
    size_t n;
} worker_arg;

static void *worker(void *p) {
    worker_arg *w = p;
    effdet_context *ctx;
    effdet_tensor t;
    if (effdet_context_create(w->m, 1, &ctx, NULL)) return NULL;
    for (int i = 0; i < 5; i++) effdet_forward(ctx, w->input, NULL);
    effdet_get_tensor(ctx, EFFDET_T_BOX, 0, &t);
    memcpy(w->out, t.data, w->n * sizeof(float));
    effdet_context_free(ctx);
    return NULL;
}

START_TEST(test_shared_model_concurrent) {
    effdet_model *m;
    effdet_error err;
    ck_assert_int_eq(effdet_model_load(tu_fixture("weights.safetensors"), &m, &err), EFFDET_OK);
    float *in = tu_read_file(tu_fixture("input.f32"), NULL);
    const effdet_info *info = effdet_model_info(m);
    size_t n = (size_t)info->level_h[0] * info->level_w[0] * info->num_anchors * 4;
    worker_arg args[2];
    pthread_t th[2];
    for (int i = 0; i < 2; i++) {
        args[i] = (worker_arg){m, in, calloc(n, sizeof(float)), n};
        pthread_create(&th[i], NULL, worker, &args[i]);
    }
    for (int i = 0; i < 2; i++) pthread_join(th[i], NULL);
    ck_assert(memcmp(args[0].out, args[1].out, n * sizeof(float)) == 0);
    float *ref = tu_read_file(tu_fixture("box_P3.f32"), NULL), *ours = malloc(n * sizeof(float));
    tu_nhwc_to_nchw(args[0].out, info->level_h[0], info->level_w[0], info->num_anchors * 4, ours);
    ck_assert(tu_rel_err(ours, ref, n) < 1e-3);
    for (int i = 0; i < 2; i++) free(args[i].out);
    free(ref), free(ours), free(in);
    effdet_model_free(m);
}
END_TEST

/* The arena is sized at creation: after a warm-up pass (OpenBLAS sets up its buffers on
 * first use), a forward pass and post-processing allocate nothing. */
START_TEST(test_forward_allocates_nothing) {
    effdet_model *m;
    effdet_context *ctx;
    effdet_error err;
    effdet_result r;
    ck_assert_int_eq(effdet_model_load(tu_fixture("weights.safetensors"), &m, &err), EFFDET_OK);
    ck_assert_int_eq(effdet_context_create(m, 1, &ctx, &err), EFFDET_OK);
    float *in = tu_read_file(tu_fixture("input.f32"), NULL);
    ck_assert_int_eq(effdet_forward(ctx, in, &err), EFFDET_OK);
    ck_assert_int_eq(effdet_postprocess(ctx, 0, 0, NULL, &r, &err), EFFDET_OK);
    struct mallinfo2 before = mallinfo2();
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(effdet_forward(ctx, in, &err), EFFDET_OK);
        ck_assert_int_eq(effdet_postprocess(ctx, 0, 0, NULL, &r, &err), EFFDET_OK);
    }
    struct mallinfo2 after = mallinfo2();
    ck_assert_msg(after.uordblks == before.uordblks && after.hblkhd == before.hblkhd,
                  "heap changed during forward: %zu -> %zu bytes", before.uordblks, after.uordblks);
    printf("arena: %zu bytes for %s\n", effdet_model_info(m)->arena_bytes, effdet_model_info(m)->name);
    free(in);
    effdet_context_free(ctx);
    effdet_model_free(m);
}
END_TEST

START_TEST(test_missing_file) {
    effdet_model *m;
    effdet_error err;
    ck_assert_int_eq(effdet_model_load("/nonexistent/w.safetensors", &m, &err), EFFDET_ERR_IO);
    ck_assert_ptr_nonnull(strstr(err.msg, "/nonexistent/w.safetensors"));
}
END_TEST

/* ---- the precision option ---- */

START_TEST(test_precision_names) {
    effdet_precision p = EFFDET_PRECISION_BF16;
    effdet_error err;
    ck_assert_int_eq(effdet_precision_parse("fp32", &p, &err), EFFDET_OK);
    ck_assert_int_eq(p, EFFDET_PRECISION_FP32);
    ck_assert_int_eq(effdet_precision_parse("bf16", &p, &err), EFFDET_OK);
    ck_assert_int_eq(p, EFFDET_PRECISION_BF16);
    ck_assert_str_eq(effdet_precision_name(EFFDET_PRECISION_FP32), "fp32");
    ck_assert_str_eq(effdet_precision_name(EFFDET_PRECISION_BF16), "bf16");
    ck_assert_ptr_null(effdet_precision_name((effdet_precision)7));
    ck_assert_int_eq(effdet_precision_parse("BF16", &p, &err), EFFDET_ERR_ARG);
    ck_assert_ptr_nonnull(strstr(err.msg, "'BF16'"));
    ck_assert_int_eq(effdet_precision_check(EFFDET_PRECISION_FP32, &err), EFFDET_OK);
    effdet_load_opts o;
    effdet_load_opts_default(&o);
    ck_assert_int_eq(o.precision, EFFDET_PRECISION_FP32);
    o.precision = (effdet_precision)7;
    effdet_model *m = NULL;
    ck_assert_int_eq(effdet_model_load_opts(tu_fixture("weights.safetensors"), &o, &m, &err), EFFDET_ERR_ARG);
    ck_assert_ptr_null(m);
}
END_TEST

/* 1 when this CPU can run bf16 at its best level (else says why the test is skipped). */
static int bf16_available(void) {
    effdet_error err;
    if (effdet_precision_check(EFFDET_PRECISION_BF16, &err) == EFFDET_OK) return 1;
    printf("bf16 model tests SKIPPED: %s\n", err.msg);
    return 0;
}

/* Below the avx512 level (EFFDET_ISA=baseline runs on every x86-64 CPU) bf16 is refused
 * with EFFDET_ERR_UNSUPPORTED and a message naming AVX512_BF16: by the check, at load,
 * and by a context of a bf16 model loaded before the level changed. */
START_TEST(test_bf16_refused_below_avx512) {
    effdet_error err;
    effdet_load_opts o;
    effdet_load_opts_default(&o);
    o.precision = EFFDET_PRECISION_BF16;
    effdet_model *m = NULL;
    int loaded = bf16_available() &&
                 effdet_model_load_opts(tu_fixture("weights.safetensors"), &o, &m, &err) == EFFDET_OK;
    setenv("EFFDET_ISA", "baseline", 1);
    ck_assert_int_eq(effdet_precision_check(EFFDET_PRECISION_BF16, &err), EFFDET_ERR_UNSUPPORTED);
    ck_assert_msg(strstr(err.msg, "AVX512_BF16") && !strchr(err.msg, '\n'), "message: %s", err.msg);
    effdet_model *m2 = NULL;
    err.msg[0] = 0;
    ck_assert_int_eq(effdet_model_load_opts(tu_fixture("weights.safetensors"), &o, &m2, &err),
                     EFFDET_ERR_UNSUPPORTED);
    ck_assert_ptr_null(m2);
    ck_assert_ptr_nonnull(strstr(err.msg, "AVX512_BF16"));
    if (loaded) {
        effdet_context *ctx = NULL;
        err.msg[0] = 0;
        ck_assert_int_eq(effdet_context_create(m, 1, &ctx, &err), EFFDET_ERR_UNSUPPORTED);
        ck_assert_ptr_null(ctx);
        ck_assert_ptr_nonnull(strstr(err.msg, "AVX512_BF16"));
    }
    unsetenv("EFFDET_ISA");
    effdet_model_free(m);
}
END_TEST

/* The fixture model twice: in fp32 and in bf16. */
static void load_fp32_and_bf16(effdet_model **m32, effdet_model **m16) {
    effdet_error err;
    effdet_load_opts o;
    effdet_load_opts_default(&o);
    o.precision = EFFDET_PRECISION_BF16;
    ck_assert_int_eq(effdet_model_load(tu_fixture("weights.safetensors"), m32, &err), EFFDET_OK);
    ck_assert_int_eq(effdet_model_load_opts(tu_fixture("weights.safetensors"), &o, m16, &err), EFFDET_OK);
}

/* A bf16 model runs: the arena its measure pass sized holds the bf16 SE folds (an
 * overflow would fail the pass), nothing is allocated, the results are the same at 1 and
 * 2 threads (every 1x1 conv is the row-split bf16 kernel), and they differ from fp32's
 * (the bf16 path ran) by no more than bf16 rounding explains on the first backbone
 * feature: max|bf16 - fp32| <= 0.05 max|fp32| (about 25 bf16 half-ulps; a wrong layout,
 * fold or bias is O(1)). */
START_TEST(test_bf16_forward) {
    if (!bf16_available()) return;
    effdet_model *m32, *m16;
    effdet_context *c32, *c16, *c16b;
    effdet_error err;
    load_fp32_and_bf16(&m32, &m16);
    ck_assert_int_eq(effdet_model_info(m16)->precision, EFFDET_PRECISION_BF16);
    ck_assert_int_eq(effdet_model_info(m32)->precision, EFFDET_PRECISION_FP32);
    ck_assert_int_eq(effdet_context_create(m32, 1, &c32, &err), EFFDET_OK);
    ck_assert_int_eq(effdet_context_create(m16, 1, &c16, &err), EFFDET_OK);
    ck_assert_int_eq(effdet_context_create(m16, 2, &c16b, &err), EFFDET_OK);
    ck_assert_int_eq(effdet_context_keep_tensors(c32, &err), EFFDET_OK); /* for feat_0 below */
    ck_assert_int_eq(effdet_context_keep_tensors(c16, &err), EFFDET_OK);
    float *in = tu_read_file(tu_fixture("input.f32"), NULL);
    ck_assert_int_eq(effdet_forward(c32, in, &err), EFFDET_OK);
    ck_assert_int_eq(effdet_forward(c16, in, &err), EFFDET_OK);
    struct mallinfo2 before = mallinfo2();
    ck_assert_int_eq(effdet_forward(c16b, in, &err), EFFDET_OK);
    struct mallinfo2 after = mallinfo2();
    ck_assert_msg(after.uordblks == before.uordblks, "heap changed during a bf16 forward");
    for (int l = 0; l < EFFDET_NUM_LEVELS; l++) {
        effdet_tensor a, b;
        ck_assert_int_eq(effdet_get_tensor(c16, EFFDET_T_CLASS, l, &a), EFFDET_OK);
        ck_assert_int_eq(effdet_get_tensor(c16b, EFFDET_T_CLASS, l, &b), EFFDET_OK);
        ck_assert_msg(memcmp(a.data, b.data, (size_t)a.h * a.w * a.c * sizeof(float)) == 0,
                      "bf16 class P%d differs between 1 and 2 threads", l + 3);
    }
    effdet_tensor f32, f16;
    ck_assert_int_eq(effdet_get_tensor(c32, EFFDET_T_FEAT, 0, &f32), EFFDET_OK);
    ck_assert_int_eq(effdet_get_tensor(c16, EFFDET_T_FEAT, 0, &f16), EFFDET_OK);
    size_t n = (size_t)f32.h * f32.w * f32.c;
    double e = tu_rel_err(f16.data, f32.data, n);
    printf("bf16 feat_0 (P3): max|bf16 - fp32| / max|fp32| = %.2e\n", e);
    ck_assert_msg(e > 0 && e <= 0.05, "bf16 feat_0 off fp32 by %g of its range", e);
    free(in);
    effdet_context_free(c32);
    effdet_context_free(c16);
    effdet_context_free(c16b);
    effdet_model_free(m32);
    effdet_model_free(m16);
}
END_TEST

/* Which 1x1 kernel a bf16 context runs, and why: none for fp32; "avx512_bf16" with a
 * reason naming EFFDET_AMX when it is 0; otherwise "amx" where this process may use the
 * tiles, or "avx512_bf16" and a reason (on a CPU without AMX: that it has none; on one
 * with AMX, never a failed self-test). With "amx" the class outputs are the vdpbf16ps
 * context's up to fp32 summation order, which later bf16 roundings amplify (the
 * emulated tiles measured 1.5e-3 - 2.6e-3 of the range on the tiny model; a wrong tile
 * is O(1)). */
START_TEST(test_bf16_kernel_choice) {
    if (!bf16_available()) return;
    effdet_model *m32, *m16;
    effdet_context *c32, *c16, *coff;
    effdet_error err;
    load_fp32_and_bf16(&m32, &m16);
    ck_assert_int_eq(effdet_context_create(m32, 1, &c32, &err), EFFDET_OK);
    const char *why = "unset";
    ck_assert_ptr_null(effdet_context_bf16_kernel(c32, &why));
    ck_assert_ptr_null(why);

    setenv("EFFDET_AMX", "0", 1);
    ck_assert_int_eq(effdet_context_create(m16, 1, &coff, &err), EFFDET_OK);
    ck_assert_str_eq(effdet_context_bf16_kernel(coff, &why), "avx512_bf16");
    ck_assert_msg(why && strstr(why, "EFFDET_AMX"), "reason: %s", why ? why : "(none)");
    unsetenv("EFFDET_AMX");

    ck_assert_int_eq(effdet_context_create(m16, 1, &c16, &err), EFFDET_OK);
    const char *k = effdet_context_bf16_kernel(c16, &why);
    cpu_features f;
    cpu_detect(&f);
    printf("bf16 1x1 kernel here: %s%s%s\n", k, why ? " - " : "", why ? why : "");
    if (strcmp(k, "amx") == 0) {
        ck_assert_ptr_null(why);
        float *in = tu_read_file(tu_fixture("input.f32"), NULL);
        ck_assert_int_eq(effdet_forward(c16, in, &err), EFFDET_OK);
        ck_assert_int_eq(effdet_forward(coff, in, &err), EFFDET_OK);
        for (int l = 0; l < EFFDET_NUM_LEVELS; l++) {
            effdet_tensor a, b;
            ck_assert_int_eq(effdet_get_tensor(c16, EFFDET_T_CLASS, l, &a), EFFDET_OK);
            ck_assert_int_eq(effdet_get_tensor(coff, EFFDET_T_CLASS, l, &b), EFFDET_OK);
            double e = tu_rel_err(a.data, b.data, (size_t)a.h * a.w * a.c);
            printf("amx vs vdpbf16ps class P%d: %.2e of its range\n", l + 3, e);
            ck_assert_msg(e <= 0.02, "amx class P%d off vdpbf16ps by %g of its range", l + 3, e);
        }
        free(in);
    } else {
        ck_assert_str_eq(k, "avx512_bf16");
        ck_assert_msg(why && *why && !strchr(why, '\n'), "no reason given");
        if (!f.amx_bf16) ck_assert_msg(strstr(why, "no AMX"), "reason: %s", why);
        if (f.amx_tile && f.amx_bf16 && f.os_amx)
            ck_assert_msg(!strstr(why, "self-test failed"), "the AMX kernel failed its self-test: %s", why);
    }
    effdet_context_free(c32);
    effdet_context_free(c16);
    effdet_context_free(coff);
    effdet_model_free(m32);
    effdet_model_free(m16);
}
END_TEST

int main(void) {
    Suite *s = suite_create("model");
    TCase *tc = tcase_create("model");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_missing_tensor);
    tcase_add_test(tc, test_extra_tensor);
    tcase_add_test(tc, test_wrong_shape);
    tcase_add_test(tc, test_bad_metadata);
    tcase_add_test(tc, test_f16_weights);
    tcase_add_test(tc, test_shared_model_concurrent);
    tcase_add_test(tc, test_forward_allocates_nothing);
    tcase_add_test(tc, test_missing_file);
    tcase_add_test(tc, test_precision_names);
    tcase_add_test(tc, test_bf16_refused_below_avx512);
    tcase_add_test(tc, test_bf16_forward);
    tcase_add_test(tc, test_bf16_kernel_choice);
    suite_add_tcase(s, tc);
    return tu_run_suite(s);
}
