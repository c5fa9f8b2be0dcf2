/*
 * Images: JPEG decode parity with Pillow (decoded_rgb.u8), letterbox + normalise parity
 * (input_u8.bin, input.f32), hostile inputs, CMYK / progressive / DCT-scaled decoding,
 * drawing and encoding. Test JPEGs are made here with libjpeg directly, so the decoder
 * is never checked against data produced by the library's own encoder.
 */
#include <check.h>
#include <math.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jpeglib.h>

#include "effdet.h"
#include "image/draw.h"
#include "image/jpeg_decode.h"
#include "image/letterbox.h"
#include "testutil.h"

/* ---------------------------------------------------------------- helpers */

static uint8_t *read_or_fail(const char *path, size_t *len) {
    uint8_t *p = tu_read_file(path, len);
    ck_assert_msg(p != NULL, "cannot read %s", path);
    return p;
}

static effdet_image decode_file_or_fail(const char *path) {
    size_t n;
    uint8_t *jpg = read_or_fail(path, &n);
    effdet_image img;
    effdet_error err = {{0}};
    effdet_status st = effdet_image_decode_jpeg(jpg, n, NULL, &img, &err);
    ck_assert_msg(st == EFFDET_OK, "decoding %s: %s", path, err.msg);
    free(jpg);
    return img;
}

/* Plain libjpeg compression (no effdet code involved). components 3 = RGB, 4 = CMYK. */
static uint8_t *libjpeg_encode(const uint8_t *px, int w, int h, int components, int quality, int progressive,
                               size_t *len) {
    struct jpeg_compress_struct c;
    struct jpeg_error_mgr jerr;
    c.err = jpeg_std_error(&jerr);
    jpeg_create_compress(&c);
    unsigned char *buf = NULL;
    unsigned long size = 0;
    jpeg_mem_dest(&c, &buf, &size);
    c.image_width = (JDIMENSION)w;
    c.image_height = (JDIMENSION)h;
    c.input_components = components;
    c.in_color_space = components == 4 ? JCS_CMYK : components == 1 ? JCS_GRAYSCALE : JCS_RGB;
    jpeg_set_defaults(&c);
    jpeg_set_quality(&c, quality, TRUE);
    if (progressive) jpeg_simple_progression(&c);
    jpeg_start_compress(&c, TRUE);
    while (c.next_scanline < c.image_height) {
        JSAMPROW row = (JSAMPROW)(px + (size_t)c.next_scanline * w * components);
        jpeg_write_scanlines(&c, &row, 1);
    }
    jpeg_finish_compress(&c);
    jpeg_destroy_compress(&c);
    *len = size;
    return buf;
}

static int max_abs_diff_u8(const uint8_t *a, const uint8_t *b, size_t n, size_t *count) {
    int mx = 0;
    size_t cnt = 0;
    for (size_t i = 0; i < n; i++) {
        int d = abs((int)a[i] - (int)b[i]);
        if (d) cnt++;
        if (d > mx) mx = d;
    }
    if (count) *count = cnt;
    return mx;
}

static void join(char *buf, size_t n, const char *dir, const char *file) {
    if (snprintf(buf, n, "%s/%s", dir, file) >= (int)n) ck_abort_msg("path too long: %s/%s", dir, file);
}

/* ------------------------------------------------------------ decode parity */

static void check_decode_parity(const char *dir) {
    char p[1024];
    join(p, sizeof p, dir, "input.jpg");
    effdet_image img = decode_file_or_fail(p);
    join(p, sizeof p, dir, "decoded_rgb.u8");
    size_t n;
    uint8_t *ref = read_or_fail(p, &n);
    ck_assert_uint_eq(n, (size_t)img.width * img.height * 3);
    size_t count;
    int mx = max_abs_diff_u8(img.rgb, ref, n, &count);
    printf("decode %s: %dx%d, %zu of %zu bytes differ from Pillow (max %d)\n", dir, img.width, img.height,
           count, n, mx);
    ck_assert_msg(mx == 0, "%s: %zu bytes differ from Pillow's decode, max %d", dir, count, mx);
    free(ref);
    effdet_image_free(&img);
}

START_TEST(test_decode_matches_pillow_d0) {
    const char *shared = tu_shared_dir();
    if (!shared) return;
    char dir[1024];
    join(dir, sizeof dir, shared, "d0");
    check_decode_parity(dir);
    join(dir, sizeof dir, shared, "d0/alt");
    check_decode_parity(dir);
}
END_TEST

START_TEST(test_decode_greyscale_replicates) {
    effdet_image img = decode_file_or_fail(tu_fixture("alt/input.jpg"));
    ck_assert_int_eq(img.width, 512);
    ck_assert_int_eq(img.height, 640);
    size_t unequal = 0; /* counted, not asserted per pixel: each Check assertion costs a write */
    for (size_t i = 0; i < (size_t)img.width * img.height; i++)
        unequal += img.rgb[3 * i] != img.rgb[3 * i + 1] || img.rgb[3 * i] != img.rgb[3 * i + 2];
    ck_assert_uint_eq(unequal, 0);
    effdet_image_free(&img);
}
END_TEST

START_TEST(test_probe) {
    size_t n;
    uint8_t *jpg = read_or_fail(tu_fixture("alt/input.jpg"), &n);
    int w = 0, h = 0;
    effdet_error err = {{0}};
    ck_assert_int_eq(effdet_image_probe_jpeg(jpg, n, &w, &h, &err), EFFDET_OK);
    ck_assert_int_eq(w, 512);
    ck_assert_int_eq(h, 640);
    /* the header alone is enough */
    ck_assert_int_eq(effdet_image_probe_jpeg(jpg, n / 2, &w, &h, &err), EFFDET_OK);
    ck_assert_int_eq(effdet_image_probe_jpeg(jpg, 1, &w, &h, &err), EFFDET_ERR_IMAGE);
    free(jpg);
}
END_TEST

/* --------------------------------------------------------- letterbox parity */

/* Letterbox img to T x T and compare with the fixture's CHW uint8 and NCHW float32. */
static void check_letterbox(const effdet_image *img, int T, const char *dir, const char *what) {
    uint8_t *canvas = malloc((size_t)T * T * 3);
    float *nchw = malloc(sizeof(float) * T * T * 3);
    letterbox_info info;
    effdet_error err = {{0}};
    ck_assert_msg(letterbox_rgb(img, T, T, canvas, &info, &err) == EFFDET_OK, "%s", err.msg);
    char p[1024];
    size_t n;
    join(p, sizeof p, dir, "input_u8.bin");
    uint8_t *ref_u8 = read_or_fail(p, &n);
    ck_assert_uint_eq(n, (size_t)T * T * 3);
    size_t bad = 0;
    for (int c = 0; c < 3; c++)
        for (int i = 0; i < T * T; i++) bad += canvas[(size_t)i * 3 + c] != ref_u8[(size_t)c * T * T + i];
    ck_assert_msg(bad == 0, "%s %s: %zu letterboxed bytes differ from input_u8.bin", dir, what, bad);

    normalize_to_nchw(canvas, T, T, nchw);
    join(p, sizeof p, dir, "input.f32");
    float *ref_f = tu_read_file(p, &n);
    ck_assert_msg(ref_f != NULL, "cannot read %s", p);
    ck_assert_uint_eq(n, sizeof(float) * T * T * 3);
    double worst = 0;
    for (int i = 0; i < T * T * 3; i++) worst = fmax(worst, fabs((double)nchw[i] - ref_f[i]));
    ck_assert_msg(worst <= 1e-6, "%s %s: input.f32 differs by %g", dir, what, worst);
    printf("letterbox %s (%s): %dx%d -> %dx%d, u8 exact, f32 max diff %g\n", dir, what, img->width,
           img->height, info.resized_w, info.resized_h, worst);
    free(ref_f);
    free(ref_u8);
    free(nchw);
    free(canvas);
}

static void check_letterbox_from_pillow_decode(const char *dir, int T) {
    char p[1024];
    join(p, sizeof p, dir, "input.jpg");
    int w, h;
    size_t n;
    uint8_t *jpg = read_or_fail(p, &n);
    effdet_error err = {{0}};
    ck_assert_int_eq(effdet_image_probe_jpeg(jpg, n, &w, &h, &err), EFFDET_OK);
    free(jpg);
    join(p, sizeof p, dir, "decoded_rgb.u8");
    effdet_image img = {.rgb = read_or_fail(p, &n), .width = w, .height = h};
    ck_assert_uint_eq(n, (size_t)w * h * 3);
    check_letterbox(&img, T, dir, "from decoded_rgb.u8");
    free(img.rgb);
}

static void check_letterbox_from_own_decode(const char *dir, int T) {
    char p[1024];
    join(p, sizeof p, dir, "input.jpg");
    effdet_image img = decode_file_or_fail(p);
    check_letterbox(&img, T, dir, "from our decode");
    effdet_image_free(&img);
}

START_TEST(test_letterbox_d0_from_pillow_decode) {
    const char *shared = tu_shared_dir();
    if (!shared) return;
    char dir[1024];
    join(dir, sizeof dir, shared, "d0");
    check_letterbox_from_pillow_decode(dir, 512);
    join(dir, sizeof dir, shared, "d0/alt");
    check_letterbox_from_pillow_decode(dir, 512);
}
END_TEST

START_TEST(test_letterbox_d0_from_own_decode) {
    const char *shared = tu_shared_dir();
    if (!shared) return;
    char dir[1024];
    join(dir, sizeof dir, shared, "d0");
    check_letterbox_from_own_decode(dir, 512);
    join(dir, sizeof dir, shared, "d0/alt");
    check_letterbox_from_own_decode(dir, 512);
}
END_TEST

START_TEST(test_letterbox_tiny_from_own_decode) {
    check_letterbox_from_own_decode("tests/fixtures", 128);
    check_letterbox_from_own_decode("tests/fixtures/alt", 128); /* greyscale portrait */
}
END_TEST

START_TEST(test_letterbox_geometry) {
    /* expected numbers: s = min(T_h / h, T_w / w) in double, resized (int)(w*s) x (int)(h*s),
     * img_scale = 1 / s (effdet's ResizePad), and the fixtures' detections.json "preprocess" */
    letterbox_info li;
    letterbox_geometry(640, 480, 512, 512, &li);
    ck_assert_int_eq(li.resized_w, 512);
    ck_assert_int_eq(li.resized_h, 384);
    ck_assert_float_eq(li.img_scale, 1.25f);
    letterbox_geometry(427, 640, 512, 512, &li);
    ck_assert_int_eq(li.resized_w, 341);
    ck_assert_int_eq(li.resized_h, 512);
    ck_assert_float_eq(li.img_scale, 1.25f);
    letterbox_geometry(512, 640, 128, 128, &li);
    ck_assert_int_eq(li.resized_w, 102);
    ck_assert_int_eq(li.resized_h, 128);
    ck_assert_float_eq(li.img_scale, 5.0f);
    letterbox_geometry(640, 480, 128, 128, &li);
    ck_assert_int_eq(li.resized_w, 128);
    ck_assert_int_eq(li.resized_h, 96);
}
END_TEST

/* Pillow's BILINEAR resample (an antialiased triangle filter, docs/images.md "Letterbox")
 * written out directly, one output sample at a time, for sizes the fixtures do not cover
 * (upscaling, one axis unchanged). */
static void reference_axis_weights(int n, int m, int i, int *lo, int *hi, int32_t *wq) {
    double scale = (double)n / m, fs = fmax(scale, 1.0), support = fs;
    double center = (i + 0.5) * scale;
    *lo = (int)fmax(0, (int)(center - support + 0.5));
    *hi = (int)fmin(n, (int)(center + support + 0.5));
    double w[64] = {0}, sum = 0;
    ck_assert_int_le(*hi - *lo, 64);
    for (int j = *lo; j < *hi; j++) sum += w[j - *lo] = fmax(0, 1 - fabs((j - center + 0.5) * (1.0 / fs)));
    for (int j = *lo; j < *hi; j++) wq[j - *lo] = (int32_t)lround(w[j - *lo] / sum * (1 << 22));
}

static uint8_t reference_clip(int64_t acc) {
    acc = (acc + (1 << 21)) >> 22;
    return (uint8_t)(acc < 0 ? 0 : acc > 255 ? 255 : acc);
}

static void reference_resize(const uint8_t *src, int w, int h, int rw, int rh, uint8_t *dst) {
    uint8_t *mid = malloc((size_t)rw * h * 3);
    int lo, hi;
    int32_t wq[64];
    for (int y = 0; y < h; y++)
        for (int x = 0; x < rw; x++) {
            if (rw == w) {
                memcpy(mid + ((size_t)y * rw + x) * 3, src + ((size_t)y * w + x) * 3, 3);
                continue;
            }
            reference_axis_weights(w, rw, x, &lo, &hi, wq);
            for (int c = 0; c < 3; c++) {
                int64_t acc = 0;
                for (int j = lo; j < hi; j++) acc += (int64_t)src[((size_t)y * w + j) * 3 + c] * wq[j - lo];
                mid[((size_t)y * rw + x) * 3 + c] = reference_clip(acc);
            }
        }
    for (int y = 0; y < rh; y++)
        for (int x = 0; x < rw; x++) {
            if (rh == h) {
                memcpy(dst + ((size_t)y * rw + x) * 3, mid + ((size_t)y * rw + x) * 3, 3);
                continue;
            }
            reference_axis_weights(h, rh, y, &lo, &hi, wq);
            for (int c = 0; c < 3; c++) {
                int64_t acc = 0;
                for (int j = lo; j < hi; j++) acc += (int64_t)mid[((size_t)j * rw + x) * 3 + c] * wq[j - lo];
                dst[((size_t)y * rw + x) * 3 + c] = reference_clip(acc);
            }
        }
    free(mid);
}

START_TEST(test_letterbox_matches_reference_resize) {
    /* (w, h): upscale, mixed, only the height changes, only the width changes, neither
     * (s == 1), downscale */
    static const int sizes[][2] = {{100, 80},  {37, 300},  {128, 64},  {100, 511},
                                   {511, 100}, {512, 300}, {256, 512}, {513, 1000}};
    const int T = 128 * 4;
    uint32_t seed = 12345;
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        int w = sizes[s][0], h = sizes[s][1];
        effdet_image img = {.rgb = malloc((size_t)w * h * 3), .width = w, .height = h};
        for (size_t i = 0; i < (size_t)w * h * 3; i++) {
            seed = seed * 1664525u + 1013904223u;
            img.rgb[i] = (uint8_t)(seed >> 24);
        }
        uint8_t *canvas = malloc((size_t)T * T * 3);
        letterbox_info li;
        effdet_error err = {{0}};
        ck_assert_int_eq(letterbox_rgb(&img, T, T, canvas, &li, &err), EFFDET_OK);
        uint8_t *expect = malloc((size_t)li.resized_w * li.resized_h * 3);
        reference_resize(img.rgb, w, h, li.resized_w, li.resized_h, expect);
        size_t bad = 0;
        for (int y = 0; y < T; y++)
            for (int x = 0; x < T; x++) {
                const uint8_t *got = canvas + ((size_t)y * T + x) * 3;
                static const uint8_t fill[3] = {124, 116, 104};
                const uint8_t *want =
                    x < li.resized_w && y < li.resized_h ? expect + ((size_t)y * li.resized_w + x) * 3 : fill;
                bad += memcmp(got, want, 3) != 0;
            }
        ck_assert_msg(bad == 0, "%dx%d -> %dx%d: %zu pixels differ from the reference resize", w, h,
                      li.resized_w, li.resized_h, bad);
        free(expect);
        free(canvas);
        free(img.rgb);
    }
}
END_TEST

START_TEST(test_normalize_layouts_and_fill_value) {
    uint8_t px[2 * 3] = {124, 116, 104, 0, 128, 255};
    float nhwc[6], nchw[6];
    normalize_to_nhwc(px, 2, 1, nhwc);
    normalize_to_nchw(px, 2, 1, nchw);
    const float mean[3] = {123.675f, 116.28f, 103.53f}, std[3] = {58.395f, 57.12f, 57.375f};
    for (int i = 0; i < 2; i++)
        for (int c = 0; c < 3; c++) {
            float want = ((float)px[i * 3 + c] - mean[c]) / std[c];
            ck_assert_float_eq(nhwc[i * 3 + c], want);
            ck_assert_float_eq(nchw[c * 2 + i], want);
        }
    ck_assert(nhwc[0] > 0.0f); /* the fill colour is not exactly the mean */
}
END_TEST

/* A 2000x1 image in 64x64 scales to 64 x 0.032 rows: it keeps one row (it was refused
 * with "shrinks to 64x0", and so was a valid 16000x8 JPEG in the daemon). */
START_TEST(test_letterbox_keeps_one_pixel) {
    static uint8_t px[3 * 2000];
    memset(px, 200, sizeof px);
    effdet_image img = {.rgb = px, .width = 2000, .height = 1};
    static uint8_t canvas[64 * 64 * 3];
    letterbox_info li;
    effdet_error err = {{0}};
    ck_assert_int_eq(letterbox_rgb(&img, 64, 64, canvas, &li, &err), EFFDET_OK);
    ck_assert_int_eq(li.resized_w, 64);
    ck_assert_int_eq(li.resized_h, 1);
    ck_assert_int_eq(canvas[0], 200);              /* row 0: the image */
    ck_assert_int_eq(canvas[64 * 3 * 1 + 0], 124); /* row 1: the fill */
    effdet_image tall = {.rgb = px, .width = 1, .height = 2000};
    ck_assert_int_eq(letterbox_rgb(&tall, 64, 64, canvas, &li, &err), EFFDET_OK);
    ck_assert_int_eq(li.resized_w, 1);
    ck_assert_int_eq(li.resized_h, 64);
    ck_assert_int_eq(letterbox_rgb(&img, 0, 64, canvas, &li, &err), EFFDET_ERR_ARG);
}
END_TEST

/* The banded, fused path the engine uses (letterbox_normalize_nhwc) gives exactly
 * letterbox_rgb + normalize_to_nhwc, whatever the pool size (1, 2, 3 threads: bands of
 * different heights), with the scratch it asks for, with too little (it allocates), and
 * for downscales, upscales and unchanged axes. */
START_TEST(test_letterbox_bands_match_single_pass) {
    static const int sizes[][2] = {{1920, 1080}, {960, 540}, {100, 80}, {512, 300}, {300, 512}, {2000, 3}};
    const int TW = 160, TH = 128;
    uint32_t seed = 777;
    threadpool *pools[3] = {NULL, threadpool_create(2), threadpool_create(3)};
    ck_assert(pools[1] && pools[2]);
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        int w = sizes[s][0], h = sizes[s][1];
        effdet_image img = {.rgb = malloc((size_t)w * h * 3), .width = w, .height = h};
        for (size_t i = 0; i < (size_t)w * h * 3; i++) {
            seed = seed * 1664525u + 1013904223u;
            img.rgb[i] = (uint8_t)(seed >> 24);
        }
        uint8_t *canvas = malloc((size_t)TW * TH * 3);
        float *want = malloc(sizeof(float) * TW * TH * 3), *got = malloc(sizeof(float) * TW * TH * 3);
        letterbox_info li, lj;
        effdet_error err = {{0}};
        ck_assert_int_eq(letterbox_rgb(&img, TW, TH, canvas, &li, &err), EFFDET_OK);
        normalize_to_nhwc(canvas, TW, TH, want);
        for (int p = 0; p < 3; p++)
            for (int small = 0; small < 2; small++) {
                size_t need = letterbox_scratch_bytes(w, h, TW, TH, threadpool_size(pools[p]));
                void *scratch = malloc(need);
                memset(got, 0xff, sizeof(float) * TW * TH * 3); /* NaN: every value must be written */
                ck_assert_int_eq(letterbox_normalize_nhwc(&img, TW, TH, got, scratch, small ? need / 2 : need,
                                                          pools[p], &lj, &err),
                                 EFFDET_OK);
                ck_assert_int_eq(lj.resized_w, li.resized_w);
                ck_assert_int_eq(lj.resized_h, li.resized_h);
                ck_assert_msg(memcmp(got, want, sizeof(float) * TW * TH * 3) == 0,
                              "%dx%d, %d threads, %s scratch: the banded canvas differs", w, h,
                              threadpool_size(pools[p]), small ? "too little" : "enough");
                free(scratch);
            }
        free(got);
        free(want);
        free(canvas);
        free(img.rgb);
    }
    threadpool_free(pools[1]);
    threadpool_free(pools[2]);
}
END_TEST

START_TEST(test_letterbox_speed_1080p) {
    const int w = 1920, h = 1080, T = 512;
    effdet_image img = {.rgb = malloc((size_t)w * h * 3), .width = w, .height = h};
    for (size_t i = 0; i < (size_t)w * h * 3; i++) img.rgb[i] = (uint8_t)(i * 7 + i / 5000);
    uint8_t *canvas = malloc((size_t)T * T * 3);
    letterbox_info li;
    effdet_error err = {{0}};
    double best = 1e9;
    for (int rep = 0; rep < 5; rep++) {
        struct timespec a, b;
        clock_gettime(CLOCK_MONOTONIC, &a);
        ck_assert_int_eq(letterbox_rgb(&img, T, T, canvas, &li, &err), EFFDET_OK);
        clock_gettime(CLOCK_MONOTONIC, &b);
        best = fmin(best, (b.tv_sec - a.tv_sec) * 1e3 + (b.tv_nsec - a.tv_nsec) / 1e6);
    }
    printf("letterbox 1920x1080 -> %dx%d: %.2f ms (best of 5)\n", li.resized_w, li.resized_h, best);
    ck_assert_int_eq(li.resized_h, 288);
    ck_assert_msg(best < 250.0, "letterbox took %.1f ms", best); /* loose: also runs under ASan */
    free(canvas);
    free(img.rgb);
}
END_TEST

/* ---------------------------------------------------------- banded decode */

/* A JPEG with restart markers: every `rows` MCU rows (restart_in_rows) or every
 * `mcus` MCUs, chroma h x v subsampled (1x1, 2x1, 2x2) or greyscale (components 1). */
static uint8_t *encode_with_restarts(const uint8_t *px, int w, int h, int components, int hs, int vs,
                                     int rows, int mcus, size_t *len) {
    struct jpeg_compress_struct c;
    struct jpeg_error_mgr jerr;
    c.err = jpeg_std_error(&jerr);
    jpeg_create_compress(&c);
    unsigned char *buf = NULL;
    unsigned long size = 0;
    jpeg_mem_dest(&c, &buf, &size);
    c.image_width = (JDIMENSION)w;
    c.image_height = (JDIMENSION)h;
    c.input_components = components;
    c.in_color_space = components == 1 ? JCS_GRAYSCALE : JCS_RGB;
    jpeg_set_defaults(&c);
    jpeg_set_quality(&c, 85, TRUE);
    if (components == 3) c.comp_info[0].h_samp_factor = hs, c.comp_info[0].v_samp_factor = vs;
    c.restart_in_rows = rows;
    c.restart_interval = (unsigned)mcus;
    jpeg_start_compress(&c, TRUE);
    while (c.next_scanline < c.image_height) {
        JSAMPROW row = (JSAMPROW)(px + (size_t)c.next_scanline * w * components);
        jpeg_write_scanlines(&c, &row, 1);
    }
    jpeg_finish_compress(&c);
    jpeg_destroy_compress(&c);
    *len = size;
    return buf;
}

/* Smooth colour gradients with some texture: a photo-like image of any size. */
static uint8_t *test_picture(int w, int h, int components) {
    uint8_t *px = malloc((size_t)w * h * components);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            for (int c = 0; c < components; c++)
                px[((size_t)y * w + x) * components + c] =
                    (uint8_t)((x * (c + 1) + y * (3 - c) + ((x * 7 + y * 13) % 17) * 3) & 255);
    return px;
}

/* On a pool, restart-marked files decode in bands (4:2:0 only at a DCT scale); the pixels must be
 * the sequential decoder's, bit for bit, for every subsampling, scale, restart layout
 * and pool size, and odd heights (a short last MCU row). */
START_TEST(test_banded_decode_matches_sequential) {
    static const struct {
        int w, h, comps, hs, vs, rows, mcus;
    } cases[] = {
        {1920, 1080, 3, 2, 2, 1, 0}, /* 4:2:0, a restart every MCU row */
        {1920, 1083, 3, 2, 2, 0, 3}, /* every 3 MCUs, odd height */
        {2048, 1536, 3, 2, 1, 2, 0}, /* 4:2:2, every 2 rows */
        {2048, 1536, 3, 1, 1, 0, 8}, /* 4:4:4 (the scaled IDCT alone), every 8 MCUs */
        {1600, 1200, 1, 1, 1, 1, 0}, /* greyscale */
        {4000, 600, 3, 2, 2, 1, 0},  /* few MCU rows: fewer bands */
    };
    threadpool *pools[3] = {threadpool_create(2), threadpool_create(3), threadpool_create(4)};
    ck_assert(pools[0] && pools[1] && pools[2]);
    static const int targets[3] = {512, 256, 128}; /* 1/2, 1/4 or 1/8 depending on the size */
    int banded = 0;
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        uint8_t *px = test_picture(cases[k].w, cases[k].h, cases[k].comps);
        size_t n;
        uint8_t *jpg = encode_with_restarts(px, cases[k].w, cases[k].h, cases[k].comps, cases[k].hs,
                                            cases[k].vs, cases[k].rows, cases[k].mcus, &n);
        for (int t = 0; t < 3; t++) {
            effdet_decode_opts o = {0, 1, targets[t], targets[t]};
            effdet_image want, got;
            effdet_error err = {{0}};
            ck_assert_int_eq(effdet_image_decode_jpeg(jpg, n, &o, &want, &err), EFFDET_OK);
            /* banded unless 4:2:0 is decoded unscaled (vertical chroma upsampling) */
            int bandable = want.width != cases[k].w || cases[k].comps == 1 || cases[k].vs == 1;
            for (int p = 0; p < 3; p++) {
                /* the banded decoder itself (no fallback) takes every scaled case */
                effdet_status st = jpeg_decode_bands(jpg, n, 100000000LL, &o, pools[p], &got);
                ck_assert_msg(st == (bandable ? EFFDET_OK : EFFDET_ERR_ARG),
                              "case %zu, target %d: banded decode %s", k, targets[t], effdet_status_name(st));
                if (st != EFFDET_OK)
                    ck_assert_int_eq(image_decode_jpeg_pool(jpg, n, &o, pools[p], NULL, &got, &err), EFFDET_OK);
                banded += st == EFFDET_OK;
                ck_assert_int_eq(got.width, want.width);
                ck_assert_int_eq(got.height, want.height);
                ck_assert_int_eq(got.source_width, cases[k].w);
                ck_assert_int_eq(got.source_height, cases[k].h);
                ck_assert_msg(memcmp(got.rgb, want.rgb, (size_t)want.width * want.height * 3) == 0,
                              "case %zu (%dx%d), target %d, %d threads: banded pixels differ", k, cases[k].w,
                              cases[k].h, targets[t], threadpool_size(pools[p]));
                effdet_image_free(&got);
            }
            effdet_image_free(&want);
        }
        free(jpg);
        free(px);
    }
    printf("banded decode: %d of %zu decodes in bands, all equal to the sequential decode\n", banded,
           sizeof cases / sizeof cases[0] * 9);
    for (int p = 0; p < 3; p++) threadpool_free(pools[p]);
}
END_TEST

/* The public entry that effdetd's workers call: a context's pool decodes a
 * restart-marked frame in bands with the sequential decoder's pixels and errors. */
START_TEST(test_context_decode_matches_sequential) {
    effdet_model *m;
    effdet_context *ctx;
    effdet_error err = {{0}};
    ck_assert_int_eq(effdet_model_load(tu_fixture("weights.safetensors"), &m, &err), EFFDET_OK);
    ck_assert_int_eq(effdet_context_create(m, 2, &ctx, &err), EFFDET_OK);
    int w = 1920, h = 1080;
    uint8_t *px = test_picture(w, h, 3);
    size_t n;
    uint8_t *jpg = encode_with_restarts(px, w, h, 3, 2, 2, 1, 0, &n);
    effdet_decode_opts o = {0, 1, 512, 512};
    effdet_image want, got;
    ck_assert_int_eq(effdet_image_decode_jpeg(jpg, n, &o, &want, &err), EFFDET_OK);
    ck_assert_int_eq(effdet_context_decode_jpeg(ctx, jpg, n, &o, &got, &err), EFFDET_OK);
    ck_assert_int_eq(got.width, want.width);
    ck_assert_int_eq(got.height, want.height);
    ck_assert(memcmp(got.rgb, want.rgb, (size_t)want.width * want.height * 3) == 0);
    effdet_image_free(&got);
    effdet_image_free(&want);
    /* a truncated file: the same outcome and message as the sequential decoder's */
    effdet_error e1 = {{0}}, e2 = {{0}};
    effdet_image cut1 = {0}, cut2 = {0};
    effdet_status s1 = effdet_image_decode_jpeg(jpg, n / 2, &o, &cut1, &e1);
    effdet_status s2 = effdet_context_decode_jpeg(ctx, jpg, n / 2, &o, &cut2, &e2);
    ck_assert_int_eq(s1, s2);
    if (s1 == EFFDET_OK) { /* libjpeg accepted it with a warning: the same pixels too */
        ck_assert_int_eq(cut2.width, cut1.width);
        ck_assert_int_eq(cut2.height, cut1.height);
        ck_assert(memcmp(cut2.rgb, cut1.rgb, (size_t)cut1.width * cut1.height * 3) == 0);
        effdet_image_free(&cut1);
        effdet_image_free(&cut2);
    } else {
        ck_assert_str_eq(e1.msg, e2.msg);
    }
    ck_assert_int_eq(effdet_context_decode_jpeg(NULL, jpg, n, &o, &got, &err), EFFDET_ERR_ARG);
    free(jpg);
    free(px);
    effdet_context_free(ctx);
    effdet_model_free(m);
}
END_TEST

/* A damaged band must not come back as pixels: the banded decoder gives up and the
 * sequential one reports the file as it always did. */
START_TEST(test_banded_decode_damage_falls_back) {
    int w = 1920, h = 1080;
    uint8_t *px = test_picture(w, h, 3);
    size_t n;
    uint8_t *jpg = encode_with_restarts(px, w, h, 3, 2, 2, 1, 0, &n);
    threadpool *tp = threadpool_create(2);
    effdet_decode_opts o = {0, 1, 512, 512};
    effdet_image want, got;
    effdet_error e1 = {{0}}, e2 = {{0}};
    /* 1: the second half's restart markers renumbered out of order */
    uint8_t *bad = malloc(n);
    memcpy(bad, jpg, n);
    int changed = 0;
    for (size_t i = n / 2; i + 1 < n; i++)
        if (bad[i] == 0xFF && bad[i + 1] >= 0xD0 && bad[i + 1] <= 0xD7)
            bad[i + 1] = 0xD0 + (bad[i + 1] + 3) % 8, changed++;
    ck_assert_int_gt(changed, 0);
    effdet_status s1 = effdet_image_decode_jpeg(bad, n, &o, &want, &e1);
    effdet_status s2 = image_decode_jpeg_pool(bad, n, &o, tp, NULL, &got, &e2);
    ck_assert_int_eq(s2, s1);
    ck_assert_str_eq(e2.msg, e1.msg);
    if (s1 == EFFDET_OK) {
        ck_assert(memcmp(got.rgb, want.rgb, (size_t)want.width * want.height * 3) == 0);
        effdet_image_free(&got);
        effdet_image_free(&want);
    }
    /* 2: truncated in the middle of the second half */
    s1 = effdet_image_decode_jpeg(jpg, n * 3 / 4, &o, &want, &e1);
    s2 = image_decode_jpeg_pool(jpg, n * 3 / 4, &o, tp, NULL, &got, &e2);
    ck_assert_int_eq(s1, EFFDET_ERR_IMAGE);
    ck_assert_int_eq(s2, s1);
    ck_assert_str_eq(e2.msg, e1.msg);
    ck_assert(got.rgb == NULL);
    printf("banded decode, truncated: %s (%s)\n", effdet_status_name(s2), e2.msg);
    /* 3: garbage bytes over a stretch of the second band's data */
    memcpy(bad, jpg, n);
    for (size_t i = n * 2 / 3; i < n * 2 / 3 + 200; i++) bad[i] = (uint8_t)(i * 37);
    s1 = effdet_image_decode_jpeg(bad, n, &o, &want, &e1);
    s2 = image_decode_jpeg_pool(bad, n, &o, tp, NULL, &got, &e2);
    ck_assert_int_eq(s2, s1);
    ck_assert_str_eq(e2.msg, e1.msg);
    if (s1 == EFFDET_OK) {
        ck_assert(memcmp(got.rgb, want.rgb, (size_t)want.width * want.height * 3) == 0);
        effdet_image_free(&got);
        effdet_image_free(&want);
    }
    printf("banded decode, garbage in band 2: %s, as the sequential decode\n", effdet_status_name(s2));
    free(bad);
    threadpool_free(tp);
    free(jpg);
    free(px);
}
END_TEST

/* ------------------------------------------------------------- bad images */

static void expect_decode_error(const uint8_t *data, size_t len, effdet_status want, const char *needle,
                                const char *what) {
    effdet_image img = {.rgb = (uint8_t *)1, .width = 7, .height = 7};
    effdet_error err = {{0}};
    effdet_status st = effdet_image_decode_jpeg(data, len, NULL, &img, &err);
    ck_assert_msg(st == want, "%s: status %s, expected %s (%s)", what, effdet_status_name(st),
                  effdet_status_name(want), err.msg);
    ck_assert_msg(strstr(err.msg, needle) != NULL, "%s: message \"%s\" lacks \"%s\"", what, err.msg, needle);
    ck_assert_msg(img.rgb == NULL && img.width == 0 && img.height == 0, "%s: output not cleared", what);
    printf("%-22s -> %s: %s\n", what, effdet_status_name(st), err.msg);
}

START_TEST(test_reject_empty_and_short) {
    static const uint8_t one[1] = {0xFF};
    expect_decode_error(one, 0, EFFDET_ERR_IMAGE, "empty", "empty");
    expect_decode_error(NULL, 0, EFFDET_ERR_IMAGE, "empty", "NULL");
    expect_decode_error(one, 1, EFFDET_ERR_IMAGE, "1 byte", "1 byte");
    static const uint8_t soi_only[4] = {0xFF, 0xD8, 0xFF, 0xD9};
    expect_decode_error(soi_only, 4, EFFDET_ERR_IMAGE, "invalid JPEG: ", "SOI + EOI");
}
END_TEST

START_TEST(test_reject_truncated) {
    size_t n;
    uint8_t *jpg = read_or_fail(tu_fixture("input.jpg"), &n);
    static const int percent[] = {1, 10, 50, 90, 99};
    for (size_t i = 0; i < sizeof percent / sizeof percent[0]; i++) {
        size_t cut = n * (size_t)percent[i] / 100;
        uint8_t *part = malloc(cut); /* exact-size copy: ASan sees any read past the end */
        memcpy(part, jpg, cut);
        char what[64];
        snprintf(what, sizeof what, "truncated at %d%%", percent[i]);
        expect_decode_error(part, cut, EFFDET_ERR_IMAGE, "invalid JPEG: ", what);
        free(part);
    }
    free(jpg);
}
END_TEST

START_TEST(test_reject_corrupt_scan) {
    size_t n;
    uint8_t *jpg = read_or_fail(tu_fixture("input.jpg"), &n);
    /* overwrite part of the entropy-coded data with a restart-less marker soup */
    for (size_t i = n / 2; i < n / 2 + 64; i++) jpg[i] = (i & 1) ? 0xFF : 0xD3;
    expect_decode_error(jpg, n, EFFDET_ERR_IMAGE, "invalid JPEG: ", "corrupt scan");
    free(jpg);
}
END_TEST

START_TEST(test_reject_other_formats) {
    uint8_t buf[4096];
    uint32_t seed = 99;
    for (size_t i = 0; i < sizeof buf; i++) {
        seed = seed * 1664525u + 1013904223u;
        buf[i] = (uint8_t)(seed >> 24);
    }
    buf[0] = 0x12; /* not FF D8 by construction */
    expect_decode_error(buf, sizeof buf, EFFDET_ERR_IMAGE, "no start-of-image marker", "random bytes");
    memcpy(buf, "\x89PNG\r\n\x1a\n", 8);
    expect_decode_error(buf, sizeof buf, EFFDET_ERR_IMAGE, "PNG", "PNG magic");
    memcpy(buf, "GIF89a", 6);
    expect_decode_error(buf, sizeof buf, EFFDET_ERR_IMAGE, "GIF", "GIF magic");
    /* JPEG magic followed by noise */
    buf[0] = 0xFF, buf[1] = 0xD8, buf[2] = 0xFF, buf[3] = 0xE0;
    expect_decode_error(buf, sizeof buf, EFFDET_ERR_IMAGE, "invalid JPEG: ", "SOI + noise");
}
END_TEST

/* A small baseline JPEG with its SOF0 size fields rewritten. */
static uint8_t *jpeg_with_declared_size(int w, int h, size_t *len) {
    uint8_t px[16 * 16 * 3];
    memset(px, 90, sizeof px);
    uint8_t *jpg = libjpeg_encode(px, 16, 16, 3, 90, 0, len);
    for (size_t i = 2; i + 9 < *len; i++)
        if (jpg[i] == 0xFF && jpg[i + 1] == 0xC0) { /* FFC0 len(2) precision(1) height(2) width(2) */
            jpg[i + 5] = (uint8_t)(h >> 8), jpg[i + 6] = (uint8_t)h;
            jpg[i + 7] = (uint8_t)(w >> 8), jpg[i + 8] = (uint8_t)w;
            return jpg;
        }
    ck_abort_msg("no SOF0 marker in libjpeg's output");
    return NULL;
}

START_TEST(test_reject_too_large_before_allocating) {
    /* Were the 65535x65535 (12.9 GB) buffer allocated, ASan would abort the test. */
    size_t n;
    uint8_t *jpg = jpeg_with_declared_size(65535, 65535, &n);
    expect_decode_error(jpg, n, EFFDET_ERR_TOO_LARGE, "too large", "65535x65535 header");
    int w, h;
    effdet_error err = {{0}};
    ck_assert_int_eq(effdet_image_probe_jpeg(jpg, n, &w, &h, &err), EFFDET_ERR_TOO_LARGE);
    free(jpg);

    jpg = jpeg_with_declared_size(20000, 20000, &n); /* within libjpeg's limits, over ours */
    expect_decode_error(jpg, n, EFFDET_ERR_TOO_LARGE, "400000000", "20000x20000 header");
    free(jpg);

    jpg = jpeg_with_declared_size(16, 16, &n);
    effdet_decode_opts opts = {.max_pixels = 255};
    effdet_image img;
    ck_assert_int_eq(effdet_image_decode_jpeg(jpg, n, &opts, &img, &err), EFFDET_ERR_TOO_LARGE);
    opts.max_pixels = 256;
    ck_assert_int_eq(effdet_image_decode_jpeg(jpg, n, &opts, &img, &err), EFFDET_OK);
    effdet_image_free(&img);
    opts.max_pixels = -1;
    ck_assert_int_eq(effdet_image_decode_jpeg(jpg, n, &opts, &img, &err), EFFDET_ERR_ARG);
    free(jpg);

    jpg = jpeg_with_declared_size(16, 0, &n);
    expect_decode_error(jpg, n, EFFDET_ERR_IMAGE, "invalid JPEG: ", "0-height header");
    free(jpg);
}
END_TEST

/* ------------------------------------------------------ colour and formats */

START_TEST(test_decode_1x1) {
    uint8_t px[3] = {200, 40, 90};
    size_t n;
    uint8_t *jpg = libjpeg_encode(px, 1, 1, 3, 100, 0, &n);
    effdet_image img;
    effdet_error err = {{0}};
    ck_assert_int_eq(effdet_image_decode_jpeg(jpg, n, NULL, &img, &err), EFFDET_OK);
    ck_assert_int_eq(img.width, 1);
    ck_assert_int_eq(img.height, 1);
    ck_assert_int_le(max_abs_diff_u8(img.rgb, px, 3, NULL), 3);
    effdet_image_free(&img);
    free(jpg);
}
END_TEST

/* Pillow: raw CMYK JPEG samples are Adobe-inverted; cmyk2rgb on the un-inverted values
 * gives R = (255 - K) * (1 - C / 255), i.e. rawK * rawC / 255 in raw terms. */
static double pillow_cmyk_expected(int raw_c, int raw_k) {
    return raw_k * raw_c / 255.0;
}

START_TEST(test_decode_cmyk) {
    /* four flat 16x16 quadrants (whole 8x8 blocks, so JPEG error stays tiny) */
    static const uint8_t quad[4][4] = {
        {255, 255, 255, 255}, {200, 100, 30, 255}, {255, 180, 60, 128}, {10, 250, 128, 40}};
    const int S = 32;
    uint8_t px[32 * 32 * 4];
    for (int y = 0; y < S; y++)
        for (int x = 0; x < S; x++) memcpy(px + (y * S + x) * 4, quad[(y / 16) * 2 + x / 16], 4);
    size_t n;
    uint8_t *jpg = libjpeg_encode(px, S, S, 4, 100, 0, &n);
    effdet_image img;
    effdet_error err = {{0}};
    ck_assert_msg(effdet_image_decode_jpeg(jpg, n, NULL, &img, &err) == EFFDET_OK, "%s", err.msg);
    ck_assert_int_eq(img.width, S);
    for (int q = 0; q < 4; q++) {
        int x = (q % 2) * 16 + 8, y = (q / 2) * 16 + 8;
        const uint8_t *got = img.rgb + (y * S + x) * 3;
        for (int c = 0; c < 3; c++) {
            double want = pillow_cmyk_expected(quad[q][c], quad[q][3]);
            ck_assert_msg(fabs(got[c] - want) <= 3, "quadrant %d channel %d: got %d, want %.1f", q, c, got[c],
                          want);
        }
    }
    effdet_image_free(&img);
    free(jpg);
}
END_TEST

START_TEST(test_decode_progressive_equals_baseline) {
    effdet_image src = decode_file_or_fail(tu_fixture("input.jpg"));
    size_t nb, np;
    uint8_t *base = libjpeg_encode(src.rgb, src.width, src.height, 3, 85, 0, &nb);
    uint8_t *prog = libjpeg_encode(src.rgb, src.width, src.height, 3, 85, 1, &np);
    effdet_image a, b;
    effdet_error err = {{0}};
    ck_assert_int_eq(effdet_image_decode_jpeg(base, nb, NULL, &a, &err), EFFDET_OK);
    ck_assert_msg(effdet_image_decode_jpeg(prog, np, NULL, &b, &err) == EFFDET_OK, "%s", err.msg);
    ck_assert_int_eq(a.width, b.width);
    ck_assert_int_eq(a.height, b.height);
    /* same quantised coefficients, so the same pixels up to IDCT rounding */
    size_t count;
    int mx = max_abs_diff_u8(a.rgb, b.rgb, (size_t)a.width * a.height * 3, &count);
    ck_assert_msg(mx <= 1, "progressive vs baseline: max diff %d (%zu bytes)", mx, count);
    /* and a truncated progressive file is refused, not returned half refined */
    uint8_t *cut = malloc(np * 3 / 4);
    memcpy(cut, prog, np * 3 / 4);
    expect_decode_error(cut, np * 3 / 4, EFFDET_ERR_IMAGE, "invalid JPEG: ", "truncated progressive");
    free(cut);
    effdet_image_free(&a);
    effdet_image_free(&b);
    free(base);
    free(prog);
    effdet_image_free(&src);
}
END_TEST

/* ------------------------------------------------------------ DCT scaling */

START_TEST(test_dct_scaling) {
    /* 2048x1536: input.jpg enlarged 3.2x by bilinear interpolation (smooth content) */
    effdet_image small = decode_file_or_fail(tu_fixture("input.jpg"));
    const int W = 2048, H = 1536;
    uint8_t *big = malloc((size_t)W * H * 3);
    for (int y = 0; y < H; y++) {
        double fy = fmin((y + 0.5) * small.height / H - 0.5, small.height - 1.001);
        int y0 = fy < 0 ? 0 : (int)fy;
        double ty = fy < 0 ? 0 : fy - y0;
        for (int x = 0; x < W; x++) {
            double fx = fmin((x + 0.5) * small.width / W - 0.5, small.width - 1.001);
            int x0 = fx < 0 ? 0 : (int)fx;
            double tx = fx < 0 ? 0 : fx - x0;
            for (int c = 0; c < 3; c++) {
                const uint8_t *p = small.rgb + ((size_t)y0 * small.width + x0) * 3 + c;
                size_t dx = 3, dy = (size_t)small.width * 3;
                double v =
                    (1 - ty) * ((1 - tx) * p[0] + tx * p[dx]) + ty * ((1 - tx) * p[dy] + tx * p[dy + dx]);
                big[((size_t)y * W + x) * 3 + c] = (uint8_t)lround(v);
            }
        }
    }
    size_t n;
    uint8_t *jpg = libjpeg_encode(big, W, H, 3, 95, 0, &n);
    free(big);
    effdet_image full, scaled;
    effdet_error err = {{0}};
    ck_assert_int_eq(effdet_image_decode_jpeg(jpg, n, NULL, &full, &err), EFFDET_OK);
    ck_assert_int_eq(full.width, W);

    /* target 512x512: 1/4 would give 512x384 (< 512 high), so the rule picks 1/2 */
    effdet_decode_opts opts = {.allow_dct_scaling = 1, .target_w = 512, .target_h = 512};
    ck_assert_int_eq(effdet_image_decode_jpeg(jpg, n, &opts, &scaled, &err), EFFDET_OK);
    ck_assert_int_eq(scaled.width, 1024);
    ck_assert_int_eq(scaled.height, 768);
    effdet_image_free(&scaled);

    /* target 384x384: 1/4 keeps 512x384 >= target on both axes */
    opts.target_w = opts.target_h = 384;
    ck_assert_int_eq(effdet_image_decode_jpeg(jpg, n, &opts, &scaled, &err), EFFDET_OK);
    ck_assert_int_eq(scaled.width, 512);
    ck_assert_int_eq(scaled.height, 384);
    /* compare with a 4x4 box filter of the full decode */
    double sum = 0;
    int worst = 0;
    for (int y = 0; y < 384; y++)
        for (int x = 0; x < 512; x++)
            for (int c = 0; c < 3; c++) {
                int acc = 0;
                for (int dy = 0; dy < 4; dy++)
                    for (int dx = 0; dx < 4; dx++)
                        acc += full.rgb[((size_t)(4 * y + dy) * W + 4 * x + dx) * 3 + c];
                int d = abs(scaled.rgb[((size_t)y * 512 + x) * 3 + c] - (acc + 8) / 16);
                sum += d;
                if (d > worst) worst = d;
            }
    double mean = sum / (384.0 * 512 * 3);
    printf("DCT 1/4 decode vs 4x4 box filter of the full decode: mean |diff| %.3f, max %d\n", mean, worst);
    ck_assert_msg(mean < 1.0 && worst <= 24, "DCT-scaled decode: mean %.3f max %d", mean, worst);
    effdet_image_free(&scaled);

    /* off unless asked for, and never for images under 2x the target */
    opts.allow_dct_scaling = 0;
    ck_assert_int_eq(effdet_image_decode_jpeg(jpg, n, &opts, &scaled, &err), EFFDET_OK);
    ck_assert_int_eq(scaled.width, W);
    effdet_image_free(&scaled);
    opts.allow_dct_scaling = 1;
    opts.target_w = opts.target_h = 1025;
    ck_assert_int_eq(effdet_image_decode_jpeg(jpg, n, &opts, &scaled, &err), EFFDET_OK);
    ck_assert_int_eq(scaled.width, W);
    effdet_image_free(&scaled);

    effdet_image_free(&full);
    effdet_image_free(&small);
    free(jpg);
}
END_TEST

/* ---------------------------------------------------------- draw + encode */

static const uint8_t GREY = 128;

static effdet_image grey_image(int w, int h) {
    effdet_image img = {.rgb = malloc((size_t)w * h * 3), .width = w, .height = h};
    memset(img.rgb, GREY, (size_t)w * h * 3);
    return img;
}

static const uint8_t *pixel(const effdet_image *img, int x, int y) {
    return img->rgb + ((size_t)y * img->width + x) * 3;
}

static int is_color(const effdet_image *img, int x, int y, const uint8_t rgb[3], int tol) {
    const uint8_t *p = pixel(img, x, y);
    for (int c = 0; c < 3; c++)
        if (abs(p[c] - rgb[c]) > tol) return 0;
    return 1;
}

static int is_grey(const effdet_image *img, int x, int y, int tol) {
    const uint8_t g[3] = {GREY, GREY, GREY};
    return is_color(img, x, y, g, tol);
}

START_TEST(test_draw_box_and_caption) {
    effdet_image img = grey_image(1280, 720);
    effdet_detection det = {100.4f, 200.7f, 500.2f, 400.9f, 0.87f, 3};
    effdet_image_draw_detections(&img, NULL, &det, 1);
    uint8_t col[3], other[3];
    draw_class_color(3, col);
    draw_class_color(4, other);
    ck_assert_msg(memcmp(col, other, 3) != 0, "neighbouring classes share a colour");
    /* 2-px edges, inward from floor() of each coordinate */
    for (int y = 220; y < 390; y += 17) {
        ck_assert(is_color(&img, 100, y, col, 0) && is_color(&img, 101, y, col, 0));
        ck_assert(is_grey(&img, 99, y, 0) && is_grey(&img, 102, y, 0));
        ck_assert(is_color(&img, 500, y, col, 0) && is_color(&img, 499, y, col, 0));
        ck_assert(is_grey(&img, 501, y, 0) && is_grey(&img, 498, y, 0));
    }
    for (int x = 110; x < 490; x += 23) {
        ck_assert(is_color(&img, x, 200, col, 0) && is_color(&img, x, 201, col, 0));
        ck_assert(is_grey(&img, x, 202, 0));
        ck_assert(is_color(&img, x, 400, col, 0) && is_color(&img, x, 399, col, 0));
        ck_assert(is_grey(&img, x, 401, 0) && is_grey(&img, x, 398, 0));
    }
    /* caption strip directly above the box: class colour background with text pixels */
    int text_px = 0, fill_px = 0;
    for (int y = 180; y < 200; y++)
        for (int x = 100; x < 160; x++) {
            if (is_color(&img, x, y, col, 0))
                fill_px++;
            else if (!is_grey(&img, x, y, 0))
                text_px++;
        }
    ck_assert_msg(fill_px > 200 && text_px > 50, "caption: %d fill, %d text pixels", fill_px, text_px);
    ck_assert(is_color(&img, 101, 199, col, 0));
    ck_assert(is_grey(&img, 101, 160, 0)); /* a caption is one text line (7 px x2 + padding) high */
    /* far from the box nothing changed */
    ck_assert(is_grey(&img, 900, 600, 0) && is_grey(&img, 50, 50, 0) && is_grey(&img, 300, 300, 0));
    effdet_image_free(&img);
}
END_TEST

START_TEST(test_draw_clipping) {
    effdet_image img = grey_image(320, 240);
    uint8_t col[3];
    draw_class_color(7, col);
    effdet_detection dets[] = {
        {-50.0f, -80.0f, 1e9f, 4000.0f, 0.5f, 7}, /* larger than the image: outline on its border */
        {NAN, 10.0f, 20.0f, 30.0f, 0.5f, 1},      /* not finite: ignored */
        {400.0f, 10.0f, 500.0f, 30.0f, 0.5f, 2},  /* entirely outside: ignored */
        {50.0f, 60.0f, 40.0f, 70.0f, 0.5f, 2},    /* inverted: ignored */
    };
    effdet_image_draw_detections(&img, NULL, dets, 4);
    ck_assert(is_color(&img, 0, 120, col, 0) && is_color(&img, 1, 120, col, 0));
    ck_assert(is_color(&img, 319, 120, col, 0) && is_color(&img, 318, 120, col, 0));
    ck_assert(is_color(&img, 160, 239, col, 0) && is_color(&img, 160, 238, col, 0));
    ck_assert(is_grey(&img, 160, 120, 0) && is_grey(&img, 2, 120, 0));
    /* the box touches the top: its caption is inside, starting at row 0, with text in it */
    int text_px = 0;
    for (int y = 0; y < 12; y++)
        for (int x = 0; x < 100; x++) text_px += !is_color(&img, x, y, col, 0) && !is_grey(&img, x, y, 0);
    ck_assert_int_gt(text_px, 20);
    ck_assert(is_color(&img, 0, 0, col, 0));
    ck_assert(is_grey(&img, 60, 20, 0)); /* 1x font on a small image: caption ends above row 20 */
    effdet_image_free(&img);

    effdet_image tiny = grey_image(3, 2); /* caption larger than the image: clipped, no crash */
    effdet_detection d = {0, 0, 2, 1, 0.9f, 5};
    effdet_image_draw_detections(&tiny, NULL, &d, 1);
    effdet_image_draw_detections(NULL, NULL, &d, 1);
    effdet_image_free(&tiny);
}
END_TEST

START_TEST(test_draw_encode_decode) {
    effdet_image img = grey_image(640, 480);
    effdet_detection det = {64.0f, 100.0f, 300.0f, 350.0f, 0.42f, 11};
    effdet_image_draw_detections(&img, NULL, &det, 1);
    uint8_t col[3];
    draw_class_color(11, col);
    uint8_t *jpg = NULL;
    size_t n = 0;
    effdet_error err = {{0}};
    ck_assert_int_eq(effdet_image_encode_jpeg(&img, 95, &jpg, &n, &err), EFFDET_OK);
    ck_assert(n > 100 && jpg[0] == 0xFF && jpg[1] == 0xD8 && jpg[n - 2] == 0xFF && jpg[n - 1] == 0xD9);
    effdet_image back;
    ck_assert_int_eq(effdet_image_decode_jpeg(jpg, n, NULL, &back, &err), EFFDET_OK);
    ck_assert_int_eq(back.width, 640);
    ck_assert_int_eq(back.height, 480);
    /* edges keep the class colour within JPEG error; far pixels stay grey */
    for (int y = 150; y < 300; y += 10) {
        ck_assert_msg(is_color(&back, 64, y, col, 24) && is_color(&back, 65, y, col, 24), "left edge at y=%d",
                      y);
        ck_assert_msg(is_color(&back, 299, y, col, 24) && is_color(&back, 300, y, col, 24),
                      "right edge at y=%d", y);
    }
    for (int x = 100; x < 260; x += 10) ck_assert(is_color(&back, x, 350, col, 24));
    ck_assert(is_grey(&back, 500, 400, 2) && is_grey(&back, 180, 220, 2) && is_grey(&back, 10, 10, 2));
    free(jpg);
    effdet_image_free(&back);

    ck_assert_int_eq(effdet_image_encode_jpeg(&img, 0, &jpg, &n, &err), EFFDET_ERR_ARG);
    ck_assert_ptr_nonnull(strstr(err.msg, "quality 0"));
    ck_assert_int_eq(effdet_image_encode_jpeg(&img, 101, &jpg, &n, &err), EFFDET_ERR_ARG);
    ck_assert_int_eq(effdet_image_encode_jpeg(NULL, 90, &jpg, &n, &err), EFFDET_ERR_ARG);
    effdet_image empty = {.rgb = NULL, .width = 0, .height = 0};
    ck_assert_int_eq(effdet_image_encode_jpeg(&empty, 90, &jpg, &n, &err), EFFDET_ERR_ARG);
    ck_assert_int_eq(effdet_image_encode_jpeg(&img, 1, &jpg, &n, &err), EFFDET_OK);
    free(jpg);
    effdet_image_free(&img);
}
END_TEST

static Suite *image_suite(void) {
    Suite *s = suite_create("image");
    TCase *dec = tcase_create("decode");
    tcase_set_timeout(dec, 60);
    tcase_add_test(dec, test_decode_matches_pillow_d0);
    tcase_add_test(dec, test_decode_greyscale_replicates);
    tcase_add_test(dec, test_probe);
    tcase_add_test(dec, test_decode_1x1);
    tcase_add_test(dec, test_decode_cmyk);
    tcase_add_test(dec, test_decode_progressive_equals_baseline);
    tcase_add_test(dec, test_dct_scaling);
    tcase_add_test(dec, test_banded_decode_matches_sequential);
    tcase_add_test(dec, test_banded_decode_damage_falls_back);
    tcase_add_test(dec, test_context_decode_matches_sequential);
    suite_add_tcase(s, dec);

    TCase *bad = tcase_create("bad_images");
    tcase_set_timeout(bad, 60);
    tcase_add_test(bad, test_reject_empty_and_short);
    tcase_add_test(bad, test_reject_truncated);
    tcase_add_test(bad, test_reject_corrupt_scan);
    tcase_add_test(bad, test_reject_other_formats);
    tcase_add_test(bad, test_reject_too_large_before_allocating);
    suite_add_tcase(s, bad);

    TCase *lb = tcase_create("letterbox");
    tcase_set_timeout(lb, 60);
    tcase_add_test(lb, test_letterbox_d0_from_pillow_decode);
    tcase_add_test(lb, test_letterbox_d0_from_own_decode);
    tcase_add_test(lb, test_letterbox_tiny_from_own_decode);
    tcase_add_test(lb, test_letterbox_geometry);
    tcase_add_test(lb, test_letterbox_matches_reference_resize);
    tcase_add_test(lb, test_normalize_layouts_and_fill_value);
    tcase_add_test(lb, test_letterbox_keeps_one_pixel);
    tcase_add_test(lb, test_letterbox_bands_match_single_pass);
    tcase_add_test(lb, test_letterbox_speed_1080p);
    suite_add_tcase(s, lb);

    TCase *draw = tcase_create("draw_encode");
    tcase_set_timeout(draw, 60);
    tcase_add_test(draw, test_draw_box_and_caption);
    tcase_add_test(draw, test_draw_clipping);
    tcase_add_test(draw, test_draw_encode_decode);
    suite_add_tcase(s, draw);
    return s;
}

int main(void) {
    return tu_run_suite(image_suite());
}
