/*
 * The split decode (jpeg_decode_split, lib/image/jpeg_split.c): the entropy-coded data cut into
 * one segment per pool thread, decoded speculatively, or by whole restart intervals where the
 * file has restart markers. Whatever it is given, it either returns EFFDET_OK with exactly the
 * sequential decoder's pixels, or any other status with `out` untouched (the caller then decodes
 * sequentially). It never returns EFFDET_OK for a file the sequential decoder refuses.
 *
 * - equality: 4:2:0 (at 1/2, 1/4, 1/8), 4:4:4 and greyscale (also unscaled), odd sizes, qualities
 *   50/85/98, default and optimised Huffman tables, gradients, noise and a real photo, with and
 *   without restart markers, pools of 2, 3 and 4 threads; the natural in-scope files must split;
 * - scope: unscaled 4:2:0, 4:2:2, 4:4:0, progressive, one scan per component are declined;
 *   CMYK, RGB-coded, 16-bit quantisers and odd sampling factors may split, but then with the
 *   same pixels;
 * - contract: min_scan_bytes, max_pixels, pools of 0 and 1 threads, broken headers;
 * - corruption: truncations, bit flips, markers and bytes inserted into or removed from the
 *   entropy-coded data of a 1080p 4:2:0 file, one without and one with restart markers (whose
 *   markers are also renumbered, dropped, doubled, padded and moved), and what may follow its
 *   scan;
 * - every declined call leaves `out` as it was (a sentinel is checked after each one).
 *
 * Test JPEGs are made here with libjpeg directly. Each test is its own case (CK_RUN_CASE=equality,
 * scope, contract, corruption, untouched); EFFDET_SPLIT_FUZZ=k and EFFDET_SPLIT_SEED=n give the
 * corruption case k times as many random variants, or other ones. Failures are listed on stdout
 * (at most 40 a case) before the case fails.
 */
#include <check.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>

#include "core/threadpool.h"
#include "effdet.h"
#include "image/jpeg_decode.h"
#include "testutil.h"

#define MAX_PIXELS 100000000LL /* the sequential decoder's default limit */

/* ---------------------------------------------------------------- encoding */

typedef struct {
    int components;     /* 1 greyscale, 3 RGB input (YCbCr unless rgb_space), 4 CMYK */
    int hs, vs;         /* component 0's sampling factors (the others 1x1 unless all_sampled) */
    int all_sampled;    /* every component hs x vs: nothing subsampled, but a larger MCU */
    int quality;        /* 1..100 */
    int not_baseline;   /* quantisers above 255 allowed (16-bit tables, SOF1) */
    int optimize;       /* optimize_coding: Huffman tables made for this image */
    int progressive;    /* jpeg_simple_progression */
    int restart_rows;   /* restart_in_rows */
    int restart_mcus;   /* restart_interval */
    int separate_scans; /* one sequential scan per component instead of one interleaved scan */
    int rgb_space;      /* stored as RGB (Adobe transform 0) */
    int app_markers;    /* an APP1 and a COM segment after the JFIF header */
} enc_params;

static enc_params enc_defaults(int components, int hs, int vs, int quality) {
    enc_params e;
    memset(&e, 0, sizeof e);
    e.components = components, e.hs = hs, e.vs = vs, e.quality = quality;
    return e;
}

/* Plain libjpeg compression (no effdet code involved). */
static uint8_t *encode(const uint8_t *px, int w, int h, const enc_params *e, size_t *len) {
    struct jpeg_compress_struct c;
    struct jpeg_error_mgr jerr;
    c.err = jpeg_std_error(&jerr);
    jerr.trace_level = -1; /* no "quantization tables are too coarse" notes on stderr */
    jpeg_create_compress(&c);
    unsigned char *buf = NULL;
    unsigned long size = 0;
    jpeg_mem_dest(&c, &buf, &size);
    c.image_width = (JDIMENSION)w;
    c.image_height = (JDIMENSION)h;
    c.input_components = e->components;
    c.in_color_space = e->components == 4 ? JCS_CMYK : e->components == 1 ? JCS_GRAYSCALE : JCS_RGB;
    jpeg_set_defaults(&c);
    if (e->rgb_space) jpeg_set_colorspace(&c, JCS_RGB);
    jpeg_set_quality(&c, e->quality, e->not_baseline ? FALSE : TRUE);
    for (int k = 0; k < c.num_components; k++)
        if (k == 0 || e->all_sampled)
            c.comp_info[k].h_samp_factor = e->hs, c.comp_info[k].v_samp_factor = e->vs;
        else
            c.comp_info[k].h_samp_factor = c.comp_info[k].v_samp_factor = 1;
    c.optimize_coding = e->optimize ? TRUE : FALSE;
    if (e->progressive) jpeg_simple_progression(&c);
    c.restart_in_rows = e->restart_rows;
    c.restart_interval = (unsigned)e->restart_mcus;
    jpeg_scan_info scans[4];
    if (e->separate_scans) {
        memset(scans, 0, sizeof scans);
        for (int k = 0; k < c.num_components; k++) {
            scans[k].comps_in_scan = 1;
            scans[k].component_index[0] = k;
            scans[k].Ss = 0, scans[k].Se = DCTSIZE2 - 1, scans[k].Ah = scans[k].Al = 0;
        }
        c.scan_info = scans;
        c.num_scans = c.num_components;
    }
    jpeg_start_compress(&c, TRUE);
    if (e->app_markers) {
        uint8_t exif[600];
        memcpy(exif, "Exif\0\0", 6);
        for (size_t i = 6; i < sizeof exif; i++) exif[i] = (uint8_t)(i * 131 + 7); /* FF bytes too */
        jpeg_write_marker(&c, JPEG_APP0 + 1, exif, sizeof exif);
        static const char comment[] = "effdet test_jpeg_split";
        jpeg_write_marker(&c, JPEG_COM, (const JOCTET *)comment, sizeof comment - 1);
    }
    while (c.next_scanline < c.image_height) {
        JSAMPROW row = (JSAMPROW)(px + (size_t)c.next_scanline * w * e->components);
        jpeg_write_scanlines(&c, &row, 1);
    }
    jpeg_finish_compress(&c);
    jpeg_destroy_compress(&c);
    *len = size;
    return buf;
}

/* ----------------------------------------------------------------- content */

typedef enum { CONTENT_GRADIENT, CONTENT_NOISE, CONTENT_PHOTO } content;
static const char *const CONTENT_NAME[] = {"gradient", "noise", "photo"};

/* Smooth colour gradients with some texture (test_image.c's test_picture). */
static uint8_t *gradient_pixels(int w, int h, int components) {
    uint8_t *px = malloc((size_t)w * h * components);
    ck_assert_ptr_nonnull(px);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            for (int c = 0; c < components; c++)
                px[((size_t)y * w + x) * components + c] =
                    (uint8_t)((x * (c + 1) + y * (3 - c) + ((x * 7 + y * 13) % 17) * 3) & 255);
    return px;
}

static uint32_t lcg(uint32_t *s) {
    *s = *s * 1664525u + 1013904223u;
    return *s;
}

static uint8_t *noise_pixels(int w, int h, int components, uint32_t seed) {
    size_t n = (size_t)w * h * components;
    uint8_t *px = malloc(n);
    ck_assert_ptr_nonnull(px);
    for (size_t i = 0; i < n; i++) px[i] = (uint8_t)(lcg(&seed) >> 24);
    return px;
}

/* A real photo (shared/reference/images/coco_000000000257.jpg, 640x480), decoded once per test
 * process; NULL when the shared fixtures are absent and EFFDET_SKIP_SHARED=1. */
static effdet_image g_photo;
static int g_photo_state; /* 0 not tried, 1 loaded, -1 unavailable */

static const effdet_image *photo(void) {
    if (g_photo_state == 0) {
        g_photo_state = -1;
        const char *shared = tu_shared_dir();
        if (shared) {
            char p[1024];
            snprintf(p, sizeof p, "%s/images/coco_000000000257.jpg", shared);
            size_t n;
            uint8_t *jpg = tu_read_file(p, &n);
            ck_assert_msg(jpg != NULL, "cannot read %s", p);
            effdet_error err = {{0}};
            ck_assert_msg(effdet_image_decode_jpeg(jpg, n, NULL, &g_photo, &err) == EFFDET_OK, "%s: %s", p,
                          err.msg);
            free(jpg);
            g_photo_state = 1;
        }
    }
    return g_photo_state == 1 ? &g_photo : NULL;
}

/* The photo resampled (bilinear) to w x h: RGB, or its luma for components 1. */
static uint8_t *photo_pixels(const effdet_image *src, int w, int h, int components) {
    uint8_t *px = malloc((size_t)w * h * components);
    int *x0 = malloc(sizeof(int) * w);
    double *tx = malloc(sizeof(double) * w);
    ck_assert(px && x0 && tx);
    for (int x = 0; x < w; x++) {
        double fx = fmin(fmax((x + 0.5) * src->width / w - 0.5, 0), src->width - 1.001);
        x0[x] = (int)fx, tx[x] = fx - x0[x];
    }
    size_t dy = (size_t)src->width * 3;
    for (int y = 0; y < h; y++) {
        double fy = fmin(fmax((y + 0.5) * src->height / h - 0.5, 0), src->height - 1.001);
        int y0 = (int)fy;
        double ty = fy - y0;
        for (int x = 0; x < w; x++) {
            const uint8_t *p = src->rgb + (size_t)y0 * dy + (size_t)x0[x] * 3;
            double v[3];
            for (int c = 0; c < 3; c++)
                v[c] = (1 - ty) * ((1 - tx[x]) * p[c] + tx[x] * p[c + 3]) +
                       ty * ((1 - tx[x]) * p[dy + c] + tx[x] * p[dy + c + 3]);
            uint8_t *o = px + ((size_t)y * w + x) * components;
            if (components == 1)
                o[0] = (uint8_t)lround(0.299 * v[0] + 0.587 * v[1] + 0.114 * v[2]);
            else
                for (int c = 0; c < 3; c++) o[c] = (uint8_t)lround(v[c]);
        }
    }
    free(tx);
    free(x0);
    return px;
}

/* NULL only for CONTENT_PHOTO without the shared fixtures. */
static uint8_t *make_pixels(content ct, int w, int h, int components, uint32_t seed) {
    if (ct == CONTENT_GRADIENT) return gradient_pixels(w, h, components);
    if (ct == CONTENT_NOISE) return noise_pixels(w, h, components, seed);
    const effdet_image *ph = photo();
    return ph ? photo_pixels(ph, w, h, components) : NULL;
}

/* -------------------------------------------------------------- file layout */

/* The entropy-coded data of a libjpeg-written single-scan file: [begin, end), end being the
 * offset of the file's final EOI. */
typedef struct {
    size_t begin, end;
} scan_span;

static scan_span find_scan(const uint8_t *d, size_t n) {
    size_t i = 2;
    scan_span s = {0, 0};
    for (;;) {
        ck_assert_msg(i + 4 <= n && d[i] == 0xFF, "no marker at offset %zu", i);
        size_t seg = (size_t)d[i + 2] << 8 | d[i + 3];
        if (d[i + 1] == 0xDA) {
            s.begin = i + 2 + seg;
            break;
        }
        i += 2 + seg;
    }
    ck_assert(n >= 2 && d[n - 2] == 0xFF && d[n - 1] == 0xD9);
    s.end = n - 2;
    size_t markers = 0; /* only stuffed FF 00 pairs and RSTn inside (counted: each Check assertion costs a write) */
    for (size_t k = s.begin; k + 1 < s.end; k++)
        markers += d[k] == 0xFF && d[k + 1] != 0x00 && (d[k + 1] & 0xF8) != 0xD0;
    ck_assert_msg(markers == 0, "%zu markers inside the scan", markers);
    return s;
}

/* The offset of restart marker k (0-based) inside the scan, 0 if there is none. */
static size_t rst_at(const uint8_t *d, size_t n, int k) {
    scan_span sp = find_scan(d, n);
    for (size_t i = sp.begin; i + 1 < sp.end; i++)
        if (d[i] == 0xFF && (d[i + 1] & 0xF8) == 0xD0 && k-- == 0) return i;
    return 0;
}

/* Restart marker k renumbered by +by (mod 8); 0 if there is none. */
static int renumber_rst(uint8_t *d, size_t n, int k, int by) {
    size_t at = rst_at(d, n, k);
    if (at) d[at + 1] = (uint8_t)(0xD0 + (d[at + 1] - 0xD0 + by) % 8);
    return at != 0;
}

/* -------------------------------------------------------------- comparing */

typedef enum { SPLIT_MAY, SPLIT_MUST, SPLIT_NEVER } expectation;

typedef struct {
    int calls, split, failures;
} tally;

#define MAX_REPORTS 40

/* One failure: counted, and listed (the first MAX_REPORTS of them). */
__attribute__((format(printf, 3, 4))) static void report(tally *t, const char *what, const char *fmt, ...) {
    if (t->failures++ < MAX_REPORTS) {
        va_list ap;
        va_start(ap, fmt);
        printf("FAIL: %s: ", what);
        vprintf(fmt, ap);
        printf("\n");
        va_end(ap);
    } else if (t->failures == MAX_REPORTS + 1) {
        printf("FAIL: (further failures not listed)\n");
    }
    fflush(stdout); /* a failed Check test exits without flushing */
}

static uint8_t g_sentinel_byte;

static effdet_image sentinel(void) {
    effdet_image s = {
        .rgb = &g_sentinel_byte, .width = -12345, .height = -678, .source_width = 31337, .source_height = -9};
    return s;
}

static int is_sentinel(const effdet_image *im) {
    effdet_image s = sentinel();
    return im->rgb == s.rgb && im->width == s.width && im->height == s.height &&
           im->source_width == s.source_width && im->source_height == s.source_height;
}

/* The sequential decoder's verdict on one file with one set of options, decoded when first
 * needed (seq_lazy) or at once (seq_decode). */
typedef struct {
    const uint8_t *jpg;
    size_t n;
    effdet_decode_opts o;
    int done;
    effdet_status st;
    effdet_image img;
    effdet_error err;
} seq_result;

static seq_result seq_lazy(const uint8_t *jpg, size_t n, const effdet_decode_opts *o) {
    seq_result r;
    memset(&r, 0, sizeof r);
    r.jpg = jpg, r.n = n, r.o = *o;
    return r;
}

static seq_result *seq_get(seq_result *r) {
    if (!r->done) r->st = effdet_image_decode_jpeg(r->jpg, r->n, &r->o, &r->img, &r->err);
    r->done = 1;
    return r;
}

static seq_result seq_decode(const uint8_t *jpg, size_t n, const effdet_decode_opts *o) {
    seq_result r = seq_lazy(jpg, n, o);
    seq_get(&r);
    return r;
}

static threadpool *g_pools[3];        /* 2, 3 and 4 threads */
static jpeg_split_scratch *g_scratch; /* kept between decodes, as a context keeps its own */

static void pools_create(void) {
    for (int p = 0; p < 3; p++) {
        g_pools[p] = threadpool_create(p + 2);
        ck_assert_ptr_nonnull(g_pools[p]);
    }
    g_scratch = jpeg_split_scratch_create();
    ck_assert_ptr_nonnull(g_scratch);
}

static void pools_free(void) {
    for (int p = 0; p < 3; p++) threadpool_free(g_pools[p]);
    jpeg_split_scratch_free(g_scratch);
}

/* Every call goes through here: with_scratch uses the one scratch that every decode of the
 * test shares (buffers left by files of other sizes and layouts), otherwise NULL
 * (temporary buffers). */
static effdet_status split_call(const uint8_t *jpg, size_t n, long long max_pixels,
                                const effdet_decode_opts *o, threadpool *tp, size_t min_scan,
                                int with_scratch, effdet_image *out) {
    return jpeg_decode_split(jpg, n, max_pixels, o, tp, with_scratch ? g_scratch : NULL, min_scan, out);
}

/* jpeg_decode_split on one pool, held against the sequential result: EFFDET_OK only for a file
 * the sequential decoder accepts, with its size and pixels; otherwise out untouched. Failures
 * are counted in t and listed (the caller asserts at the end, so one run shows them all). */
static effdet_status check_split(const uint8_t *jpg, size_t n, long long max_pixels,
                                 const effdet_decode_opts *o, threadpool *tp, size_t min_scan,
                                 seq_result *lazy, expectation ex, const char *what0, tally *t) {
    char what[256];
    int with_scratch = t->calls % 4 != 3;
    snprintf(what, sizeof what, "%s, %d thread%s, %s scratch", what0, threadpool_size(tp),
             threadpool_size(tp) == 1 ? "" : "s", with_scratch ? "shared" : "no");
    effdet_image got = sentinel();
    effdet_status st = split_call(jpg, n, max_pixels, o, tp, min_scan, with_scratch, &got);
    t->calls++;
    if (st != EFFDET_OK) {
        if (!is_sentinel(&got)) report(t, what, "declined (%s) but wrote out", effdet_status_name(st));
        if (ex == SPLIT_MUST)
            report(t, what, "declined (%s), but this file must split", effdet_status_name(st));
        return st;
    }
    t->split++;
    const seq_result *seq = seq_get(lazy);
    if (ex == SPLIT_NEVER) report(t, what, "returned OK for a file out of its scope");
    if (seq->st != EFFDET_OK) {
        report(t, what, "returned OK for a file the sequential decoder refuses (%s: %s)",
               effdet_status_name(seq->st), seq->err.msg);
    } else if (got.rgb == NULL || got.rgb == &g_sentinel_byte) {
        report(t, what, "returned OK without pixels");
        return st;
    } else if (got.width != seq->img.width || got.height != seq->img.height ||
               got.source_width != seq->img.source_width || got.source_height != seq->img.source_height) {
        report(t, what, "size %dx%d (source %dx%d), the sequential decode's %dx%d (source %dx%d)", got.width,
               got.height, got.source_width, got.source_height, seq->img.width, seq->img.height,
               seq->img.source_width, seq->img.source_height);
    } else {
        size_t bytes = (size_t)got.width * got.height * 3, bad = 0, first = 0;
        for (size_t i = 0; i < bytes; i++)
            if (got.rgb[i] != seq->img.rgb[i]) {
                if (!bad) first = i;
                bad++;
            }
        if (bad) {
            size_t px = first / 3;
            report(t, what, "pixels differ from the sequential decode: %zu of %zu bytes, first at (%zu, %zu)",
                   bad, bytes, px % (size_t)got.width, px / (size_t)got.width);
        }
    }
    effdet_image_free(&got);
    return st;
}

static void seq_free(seq_result *r) {
    effdet_image_free(&r->img);
}

/* Options that make the sequential decoder use DCT scale 1/denom on a w x h image (denom 1: no
 * scaling at all); ck-fails when no target gives that scale. */
static effdet_decode_opts opts_for_scale(int w, int h, int denom) {
    effdet_decode_opts o;
    effdet_decode_opts_default(&o);
    if (denom == 1) return o;
    o.allow_dct_scaling = 1;
    o.target_w = w / denom > 0 ? w / denom : 1;
    o.target_h = h / denom > 0 ? h / denom : 1;
    ck_assert_msg(jpeg_choose_dct_denominator(w, h, o.target_w, o.target_h) == denom,
                  "%dx%d: target %dx%d does not give 1/%d", w, h, o.target_w, o.target_h, denom);
    return o;
}

/* ------------------------------------------------------------ equality */

typedef enum { LAYOUT_420, LAYOUT_444, LAYOUT_GREY, LAYOUT_422, LAYOUTS } layout;
static const char *const LAYOUT_NAME[] = {"4:2:0", "4:4:4", "grey", "4:2:2"};

enum { ENC_ALL, ENC_Q85, ENC_Q85_PLAIN }; /* {50,85,98} x {default, optimised}; q85 both; q85 default */

static const int DENOMS[4] = {1, 2, 4, 8};

/* Every in-scope layout, scale, quality, table kind and pool: the split decoder's pixels are the
 * sequential decoder's, and the natural files (gradients and the photo at every quality, noise
 * at q85) do split, except where the image is too small to need it. */
START_TEST(test_split_matches_sequential) {
    /* scales: bit d = 1/DENOMS[d]; fewer on the large or slow cases (run time under ASan) */
    static const struct {
        int w, h;
        layout lay;
        content con;
        int encodings, scales;
        int must; /* 0: tiny or one MCU row/column: splitting is optional */
        int rst;  /* restart markers: every rst MCUs (> 0) or -rst MCU rows (< 0) */
    } cases[] = {
        {1920, 1080, LAYOUT_420, CONTENT_GRADIENT, ENC_Q85, 0xF, 1, 0},
        {1920, 1080, LAYOUT_420, CONTENT_PHOTO, ENC_ALL, 0xF, 1, 0},
        {1920, 1080, LAYOUT_420, CONTENT_NOISE, ENC_Q85_PLAIN, 0xF, 1, 0},
        {1923, 1081, LAYOUT_420, CONTENT_GRADIENT, ENC_Q85, 0xF, 1, 0}, /* partial MCUs on both axes */
        {1923, 1081, LAYOUT_420, CONTENT_PHOTO, ENC_Q85_PLAIN, 0xF, 1, 0},
        {1923, 1081, LAYOUT_420, CONTENT_NOISE, ENC_Q85_PLAIN, 0xD, 1, 0},
        {3840, 2160, LAYOUT_420, CONTENT_PHOTO, ENC_Q85_PLAIN, 0x5, 1, 0},
        {3840, 2160, LAYOUT_420, CONTENT_GRADIENT, ENC_Q85_PLAIN, 0x9, 1, 0},
        {3840, 2160, LAYOUT_420, CONTENT_NOISE, ENC_Q85_PLAIN, 0x8, 1, 0},
        {640, 480, LAYOUT_444, CONTENT_GRADIENT, ENC_ALL, 0xF, 1, 0},
        {640, 480, LAYOUT_444, CONTENT_PHOTO, ENC_ALL, 0xF, 1, 0},
        {640, 480, LAYOUT_444, CONTENT_NOISE, ENC_ALL, 0x9, 1, 0},
        {1923, 1081, LAYOUT_444, CONTENT_GRADIENT, ENC_Q85_PLAIN, 0x1, 1, 0},
        {1923, 1081, LAYOUT_444, CONTENT_PHOTO, ENC_Q85_PLAIN, 0xC, 1, 0},
        {3840, 2160, LAYOUT_444, CONTENT_PHOTO, ENC_Q85_PLAIN, 0x4, 1, 0},
        {800, 600, LAYOUT_GREY, CONTENT_GRADIENT, ENC_Q85, 0xF, 1, 0},
        {800, 600, LAYOUT_GREY, CONTENT_PHOTO, ENC_ALL, 0xF, 1, 0},
        {800, 600, LAYOUT_GREY, CONTENT_NOISE, ENC_Q85_PLAIN, 0x3, 1, 0},
        {1923, 1081, LAYOUT_GREY, CONTENT_PHOTO, ENC_Q85_PLAIN, 0xF, 1, 0},
        {17, 9, LAYOUT_GREY, CONTENT_GRADIENT, ENC_ALL, 0xF, 0, 0},
        {17, 9, LAYOUT_GREY, CONTENT_NOISE, ENC_ALL, 0xF, 0, 0},
        {17, 9, LAYOUT_444, CONTENT_NOISE, ENC_ALL, 0xF, 0, 0},
        {33, 17, LAYOUT_420, CONTENT_NOISE, ENC_Q85, 0xF, 0, 0},
        {4000, 16, LAYOUT_420, CONTENT_PHOTO, ENC_Q85, 0xF, 0, 0},    /* one MCU row */
        {16, 2000, LAYOUT_444, CONTENT_GRADIENT, ENC_Q85, 0xF, 0, 0}, /* two MCU columns */
        {5000, 8, LAYOUT_GREY, CONTENT_NOISE, ENC_Q85, 0xF, 0, 0},
        /* with restart markers: whole intervals per segment */
        {1920, 1080, LAYOUT_420, CONTENT_PHOTO, ENC_Q85, 0xE, 1, -1},
        {1923, 1081, LAYOUT_420, CONTENT_NOISE, ENC_Q85_PLAIN, 0xE, 1, 7},
        {3840, 2160, LAYOUT_420, CONTENT_PHOTO, ENC_Q85_PLAIN, 0x4, 1, -1},
        {640, 480, LAYOUT_444, CONTENT_PHOTO, ENC_ALL, 0xF, 1, 7},
        {800, 600, LAYOUT_GREY, CONTENT_GRADIENT, ENC_Q85, 0xF, 1, -3},
        {17, 9, LAYOUT_GREY, CONTENT_NOISE, ENC_ALL, 0xF, 0, 1}, /* an interval per MCU */
        {33, 17, LAYOUT_420, CONTENT_NOISE, ENC_Q85, 0xF, 0, 1},
        {4000, 16, LAYOUT_420, CONTENT_PHOTO, ENC_Q85, 0xF, 0, 1000}, /* one interval */
        /* 4:2:2: chroma upsampled along the row */
        {1920, 1080, LAYOUT_422, CONTENT_PHOTO, ENC_ALL, 0xF, 1, 0},
        {1923, 1081, LAYOUT_422, CONTENT_NOISE, ENC_Q85_PLAIN, 0xF, 1, 0},
        {3840, 2160, LAYOUT_422, CONTENT_GRADIENT, ENC_Q85_PLAIN, 0x4, 1, 0},
        {1920, 1080, LAYOUT_422, CONTENT_PHOTO, ENC_Q85, 0xE, 1, -1},
        {37, 9, LAYOUT_422, CONTENT_NOISE, ENC_ALL, 0xF, 0, 0}, /* 19 or fewer chroma columns */
        {5, 300, LAYOUT_422, CONTENT_NOISE, ENC_Q85, 0xF, 0,
         0}, /* 3 chroma columns: the smallest upsampled */
    };
    static const int QUALITY[3] = {50, 85, 98};
    pools_create();
    tally t = {0, 0, 0};
    int per_scale[LAYOUTS][4] = {{0}}; /* splits by layout and scale */
    int skipped = 0, rotate = 0;
    double t0 = effdet_now_ms();
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        int w = cases[k].w, h = cases[k].h, lay = cases[k].lay;
        int comps = lay == LAYOUT_GREY ? 1 : 3;
        uint8_t *px = make_pixels(cases[k].con, w, h, comps, 1000u + (uint32_t)k);
        if (!px) {
            skipped++;
            continue;
        }
        for (int q = 0; q < 3; q++)
            for (int opt = 0; opt < 2; opt++) {
                if (cases[k].encodings != ENC_ALL &&
                    (QUALITY[q] != 85 || (opt && cases[k].encodings == ENC_Q85_PLAIN)))
                    continue;
                enc_params e = enc_defaults(comps, lay == LAYOUT_420 || lay == LAYOUT_422 ? 2 : 1,
                                            lay == LAYOUT_420 ? 2 : 1, QUALITY[q]);
                e.optimize = opt;
                if (cases[k].rst > 0) e.restart_mcus = cases[k].rst;
                if (cases[k].rst < 0) e.restart_rows = -cases[k].rst;
                size_t n;
                uint8_t *jpg = encode(px, w, h, &e, &n);
                for (int d = 0; d < 4; d++) {
                    if (!(cases[k].scales >> d & 1)) continue;
                    effdet_decode_opts o = opts_for_scale(w, h, DENOMS[d]);
                    seq_result seq = seq_lazy(jpg, n, &o);
                    expectation ex = lay == LAYOUT_420 && DENOMS[d] == 1 ? SPLIT_NEVER
                                     : cases[k].must && (cases[k].con != CONTENT_NOISE || QUALITY[q] == 85)
                                         ? SPLIT_MUST
                                         : SPLIT_MAY;
                    char what[160];
                    char rst[32] = "";
                    if (cases[k].rst)
                        snprintf(rst, sizeof rst, ", restart every %d %s", abs(cases[k].rst),
                                 cases[k].rst > 0 ? "MCUs" : "rows");
                    snprintf(what, sizeof what, "%s %dx%d %s q%d%s%s, 1/%d", LAYOUT_NAME[lay], w, h,
                             CONTENT_NAME[cases[k].con], QUALITY[q], opt ? " optimised" : "", rst, DENOMS[d]);
                    /* every pool at q85 with the default tables; one pool in turn for the others */
                    for (int p = 0; p < 3; p++) {
                        if ((QUALITY[q] != 85 || opt) && p != rotate % 3) continue;
                        /* unscaled: the NULL options the sequential entry point passes on too */
                        const effdet_decode_opts *op = DENOMS[d] == 1 && p == 2 ? NULL : &o;
                        if (check_split(jpg, n, MAX_PIXELS, op, g_pools[p], 0, &seq, ex, what, &t) ==
                            EFFDET_OK)
                            per_scale[lay][d]++;
                    }
                    rotate++;
                    ck_assert_msg(!seq.done || seq.st == EFFDET_OK, "%s: sequential decode: %s", what,
                                  seq.err.msg);
                    seq_free(&seq);
                }
                free(jpg);
            }
        free(px);
    }
    printf("split decode: %d of %d decodes split, all equal to the sequential decode (%.0f ms)%s\n", t.split,
           t.calls, effdet_now_ms() - t0, t.failures ? " -- EXCEPT THE FAILURES ABOVE" : "");
    for (int l = 0; l < LAYOUTS; l++)
        printf("  %-5s splits at 1/1: %d, 1/2: %d, 1/4: %d, 1/8: %d\n", LAYOUT_NAME[l], per_scale[l][0],
               per_scale[l][1], per_scale[l][2], per_scale[l][3]);
    if (skipped) printf("  (%d photo cases skipped: no shared fixtures)\n", skipped);
    pools_free();
    fflush(stdout);
    ck_assert_msg(t.failures == 0, "%d failures (listed on stdout)", t.failures);
    for (int d = 1; d < 4; d++) ck_assert_int_gt(per_scale[LAYOUT_420][d], 0);
    for (int l = LAYOUT_444; l < LAYOUTS; l++)
        for (int d = 0; d < 4; d++) ck_assert_int_gt(per_scale[l][d], 0);
}
END_TEST

/* ---------------------------------------------------------------- scope */

/* Layouts outside the split decoder's scope are declined; layouts at its edge may split, but
 * only with the sequential decoder's pixels. */
START_TEST(test_split_scope) {
    static const int SCALES[2] = {1, 4};
    pools_create();
    tally t = {0, 0, 0};
    const int w = 1280, h = 720;
    uint8_t *rgb = gradient_pixels(w, h, 3), *grey = gradient_pixels(w, h, 1),
            *cmyk = gradient_pixels(w, h, 4);
    struct {
        const char *name;
        enc_params e;
        expectation ex[2]; /* unscaled, 1/4 */
    } cases[24];
    int nc = 0;
#define ADD(NAME, E, EX1, EX4)                                                                               \
    do {                                                                                                     \
        cases[nc].name = NAME, cases[nc].e = E, cases[nc].ex[0] = EX1, cases[nc].ex[1] = EX4;                \
        nc++;                                                                                                \
    } while (0)
    enc_params e = enc_defaults(3, 2, 2, 85);
    ADD("4:2:0 (unscaled: fancy upsampling)", e, SPLIT_NEVER, SPLIT_MUST);
    e = enc_defaults(3, 2, 1, 85);
    ADD("4:2:2 (fancy upsampling along the row)", e, SPLIT_MUST, SPLIT_MUST);
    e = enc_defaults(3, 1, 2, 85);
    ADD("4:4:0", e, SPLIT_NEVER, SPLIT_MAY);
    e = enc_defaults(3, 4, 1, 85);
    ADD("4:1:1", e, SPLIT_NEVER, SPLIT_MAY);
    e = enc_defaults(3, 2, 2, 85), e.progressive = 1;
    ADD("4:2:0 progressive", e, SPLIT_NEVER, SPLIT_NEVER);
    e = enc_defaults(3, 1, 1, 85), e.progressive = 1;
    ADD("4:4:4 progressive", e, SPLIT_NEVER, SPLIT_NEVER);
    e = enc_defaults(3, 2, 2, 85), e.restart_rows = 1;
    ADD("4:2:0 restart every row (unscaled: fancy upsampling)", e, SPLIT_NEVER, SPLIT_MUST);
    e = enc_defaults(3, 1, 1, 85), e.restart_mcus = 7;
    ADD("4:4:4 restart every 7 MCUs", e, SPLIT_MUST, SPLIT_MUST);
    e = enc_defaults(1, 1, 1, 85), e.restart_rows = 3;
    ADD("grey restart every 3 rows", e, SPLIT_MUST, SPLIT_MUST);
    e = enc_defaults(3, 2, 1, 85), e.restart_rows = 1;
    ADD("4:2:2 restart every row", e, SPLIT_MUST, SPLIT_MUST);
    e = enc_defaults(3, 1, 1, 85), e.separate_scans = 1;
    ADD("4:4:4 one scan per component", e, SPLIT_NEVER, SPLIT_NEVER);
    e = enc_defaults(3, 1, 1, 85), e.app_markers = 1;
    ADD("4:4:4 with APP1 + COM", e, SPLIT_MUST, SPLIT_MUST);
    e = enc_defaults(3, 1, 1, 85), e.rgb_space = 1;
    ADD("4:4:4 stored as RGB", e, SPLIT_MAY, SPLIT_MAY);
    e = enc_defaults(4, 1, 1, 85);
    ADD("CMYK", e, SPLIT_MAY, SPLIT_MAY);
    e = enc_defaults(3, 1, 1, 4), e.not_baseline = 1;
    ADD("4:4:4 q4, 16-bit quantisers (SOF1)", e, SPLIT_MAY, SPLIT_MAY);
    e = enc_defaults(3, 2, 1, 85), e.all_sampled = 1;
    ADD("4:4:4 as 2x1 sampling everywhere", e, SPLIT_MAY, SPLIT_MAY);
    e = enc_defaults(1, 2, 2, 85);
    ADD("grey with 2x2 sampling", e, SPLIT_MAY, SPLIT_MAY);
#undef ADD
    for (int k = 0; k < nc; k++) {
        const uint8_t *px = cases[k].e.components == 1 ? grey : cases[k].e.components == 4 ? cmyk : rgb;
        size_t n;
        uint8_t *jpg = encode(px, w, h, &cases[k].e, &n);
        for (int s = 0; s < 2; s++) {
            effdet_decode_opts o = opts_for_scale(w, h, SCALES[s]);
            seq_result seq = seq_lazy(jpg, n, &o);
            char what[160];
            snprintf(what, sizeof what, "%s, 1/%d", cases[k].name, SCALES[s]);
            for (int p = 0; p < 2; p++) /* two of the three pools, in turn */
                check_split(jpg, n, MAX_PIXELS, &o, g_pools[(k + s + p) % 3], 0, &seq, cases[k].ex[s], what,
                            &t);
            ck_assert_msg(!seq.done || seq.st == EFFDET_OK, "%s: sequential decode: %s", what, seq.err.msg);
            seq_free(&seq);
        }
        free(jpg);
    }
    /* 4:2:0 where DCT scaling is allowed but the target is too large for any scale */
    {
        enc_params e420 = enc_defaults(3, 2, 2, 85);
        size_t n;
        uint8_t *jpg = encode(rgb, w, h, &e420, &n);
        effdet_decode_opts o = {.allow_dct_scaling = 1, .target_w = 1000, .target_h = 1000};
        seq_result seq = seq_decode(jpg, n, &o);
        ck_assert_int_eq(seq.img.width, w);
        check_split(jpg, n, MAX_PIXELS, &o, g_pools[0], 0, &seq, SPLIT_NEVER, "4:2:0, target 1000x1000 (1/1)",
                    &t);
        effdet_decode_opts z = {.allow_dct_scaling = 1, .target_w = 0, .target_h = 0};
        check_split(jpg, n, MAX_PIXELS, &z, g_pools[1], 0, &seq, SPLIT_NEVER, "4:2:0, target 0x0 (1/1)", &t);
        seq_free(&seq);
        free(jpg);
    }
    printf("split scope: %d of %d decodes split\n", t.split, t.calls);
    free(rgb);
    free(grey);
    free(cmyk);
    pools_free();
    fflush(stdout);
    ck_assert_msg(t.failures == 0, "%d failures (listed on stdout)", t.failures);
}
END_TEST

/* ------------------------------------------------------------- contract */

/* min_scan_bytes, max_pixels, tiny pools, and files broken before their scan. */
START_TEST(test_split_contract) {
    pools_create();
    tally t = {0, 0, 0};
    const int w = 1920, h = 1080;
    uint8_t *px = gradient_pixels(w, h, 3);
    enc_params e = enc_defaults(3, 2, 2, 85);
    size_t n;
    uint8_t *jpg = encode(px, w, h, &e, &n);
    scan_span sp = find_scan(jpg, n);
    size_t scan_bytes = sp.end - sp.begin;
    effdet_decode_opts o = opts_for_scale(w, h, 4);
    seq_result seq = seq_decode(jpg, n, &o);
    ck_assert_int_eq(seq.st, EFFDET_OK);

    /* min_scan_bytes: well below the scan's size splits, above the whole file's does not */
    check_split(jpg, n, MAX_PIXELS, &o, g_pools[0], scan_bytes / 2, &seq, SPLIT_MUST, "min_scan_bytes scan/2",
                &t);
    check_split(jpg, n, MAX_PIXELS, &o, g_pools[2], 1, &seq, SPLIT_MUST, "min_scan_bytes 1", &t);
    check_split(jpg, n, MAX_PIXELS, &o, g_pools[0], n + 1, &seq, SPLIT_NEVER, "min_scan_bytes file+1", &t);
    check_split(jpg, n, MAX_PIXELS, &o, g_pools[1], SIZE_MAX, &seq, SPLIT_NEVER, "min_scan_bytes SIZE_MAX",
                &t);

    /* max_pixels counts the source's pixels, as the sequential decoder does */
    check_split(jpg, n, (long long)w * h, &o, g_pools[0], 0, &seq, SPLIT_MUST, "max_pixels = w*h", &t);
    effdet_decode_opts lim = o;
    lim.max_pixels = (long long)w * h - 1;
    seq_result refused = seq_decode(jpg, n, &lim);
    ck_assert_int_eq(refused.st, EFFDET_ERR_TOO_LARGE);
    check_split(jpg, n, (long long)w * h - 1, &o, g_pools[0], 0, &refused, SPLIT_NEVER,
                "max_pixels = w*h - 1", &t);
    check_split(jpg, n, 0, &o, g_pools[1], 0, &refused, SPLIT_NEVER, "max_pixels 0", &t);

    /* no pool, or a pool of one thread: one segment; splitting is optional, pixels are not */
    threadpool *one = threadpool_create(1);
    ck_assert_ptr_nonnull(one);
    check_split(jpg, n, MAX_PIXELS, &o, NULL, 0, &seq, SPLIT_MAY, "no pool", &t);
    check_split(jpg, n, MAX_PIXELS, &o, one, 0, &seq, SPLIT_MAY, "pool of 1", &t);
    threadpool_free(one);

    /* cut anywhere in the headers (with and without an EOI after the cut): refused */
    int header_variants = 0;
    for (size_t cut = 0; cut < sp.begin + 2; cut += cut < 40 ? 1 : 7) {
        for (int eoi = 0; eoi < 2; eoi++) {
            size_t m = cut + (eoi ? 2 : 0);
            uint8_t *v = malloc(m ? m : 1); /* exact size: ASan sees any read past the end */
            memcpy(v, jpg, cut);
            if (eoi) v[cut] = 0xFF, v[cut + 1] = 0xD9;
            seq_result s = seq_decode(v, m, &o);
            char what[96];
            snprintf(what, sizeof what, "headers cut at %zu of %zu%s", cut, sp.begin, eoi ? " + EOI" : "");
            ck_assert_msg(s.st != EFFDET_OK, "%s: the sequential decoder accepted it", what);
            check_split(v, m, MAX_PIXELS, &o, g_pools[header_variants % 3], 0, &s, SPLIT_NEVER, what, &t);
            seq_free(&s);
            free(v);
            header_variants++;
        }
    }
    /* SOI not followed by a marker's FF: the sequential decoder refuses it before libjpeg (which
     * would skip the junk) sees it */
    {
        uint8_t *v = malloc(n);
        for (int bit = 0; bit < 8; bit++) {
            memcpy(v, jpg, n);
            v[2] ^= (uint8_t)(1u << bit);
            seq_result s = seq_decode(v, n, &o);
            ck_assert_int_ne(s.st, EFFDET_OK);
            char what[64];
            snprintf(what, sizeof what, "byte 2 (the first marker's FF) is %02X", v[2]);
            check_split(v, n, MAX_PIXELS, &o, g_pools[bit % 3], 0, &s, SPLIT_MAY, what, &t);
            seq_free(&s);
        }
        free(v);
    }
    /* SOI and noise */
    {
        uint8_t v[4096];
        uint32_t seed = 4242;
        for (size_t i = 0; i < sizeof v; i++) v[i] = (uint8_t)(lcg(&seed) >> 24);
        v[0] = 0xFF, v[1] = 0xD8, v[2] = 0xFF, v[3] = 0xE0;
        seq_result s = seq_decode(v, sizeof v, &o);
        check_split(v, sizeof v, MAX_PIXELS, &o, g_pools[0], 0, &s, SPLIT_NEVER, "SOI + noise", &t);
        seq_free(&s);
    }
    printf("split contract: %d of %d decodes split (%d cut headers refused)\n", t.split, t.calls,
           header_variants);
    seq_free(&seq);
    free(jpg);
    free(px);
    pools_free();
    fflush(stdout);
    ck_assert_msg(t.failures == 0, "%d failures (listed on stdout)", t.failures);
}
END_TEST

/* ----------------------------------------------------------- corruption */

typedef struct {
    const uint8_t *jpg;
    size_t n;
    scan_span sp;
    uint32_t seed;
    int variants, splits, seq_ok, split_ok, split_declined_seq_ok;
    tally t;
} fuzz;

/* One damaged file (copied to an exact-size buffer), at one of the DCT scales in turn, on
 * pools of 2 and 4 threads (both_pools), or on one of the two in turn (run time). */
static void try_variant_on(fuzz *f, const uint8_t *v, size_t m, const char *what0, int both_pools) {
    uint8_t *buf = malloc(m ? m : 1);
    ck_assert_ptr_nonnull(buf);
    memcpy(buf, v, m);
    static const int DENOM[4] = {8, 4, 8, 2}; /* mostly 1/8: the cheapest IDCT */
    int denom = DENOM[f->variants % 4];
    effdet_decode_opts o = opts_for_scale(1920, 1080, denom);
    seq_result seq = seq_decode(buf, m, &o);
    f->seq_ok += seq.st == EFFDET_OK;
    char what[160];
    snprintf(what, sizeof what, "%s, 1/%d (sequential: %s)", what0, denom,
             seq.st == EFFDET_OK ? "ok" : effdet_status_name(seq.st));
    static const int POOLS[2] = {0, 2};
    for (int p = 0; p < 2; p++) {
        if (!both_pools && p != f->variants % 2) continue;
        effdet_status st =
            check_split(buf, m, MAX_PIXELS, &o, g_pools[POOLS[p]], 0, &seq, SPLIT_MAY, what, &f->t);
        f->splits++;
        f->split_ok += st == EFFDET_OK;
        f->split_declined_seq_ok += st != EFFDET_OK && seq.st == EFFDET_OK;
    }
    seq_free(&seq);
    free(buf);
    f->variants++;
}

/* Truncations and what follows the scan: both pools. */
static void try_variant(fuzz *f, const uint8_t *v, size_t m, const char *what0) {
    try_variant_on(f, v, m, what0, 1);
}

/* Random damage: one pool in turn. */
static void try_random(fuzz *f, const uint8_t *v, size_t m, const char *what0) {
    try_variant_on(f, v, m, what0, 0);
}

static size_t rand_below(fuzz *f, size_t n) {
    uint64_t r = (uint64_t)lcg(&f->seed) << 32 | lcg(&f->seed);
    return (size_t)(r % n);
}

static size_t rand_in_scan(fuzz *f) {
    return f->sp.begin + rand_below(f, f->sp.end - f->sp.begin);
}

/* A copy of the file with bytes [at, at + del) replaced by ins[0..nins). */
static uint8_t *splice(const fuzz *f, size_t at, size_t del, const uint8_t *ins, size_t nins, size_t *m) {
    *m = f->n - del + nins;
    uint8_t *v = malloc(*m);
    ck_assert_ptr_nonnull(v);
    memcpy(v, f->jpg, at);
    if (nins) memcpy(v + at, ins, nins);
    memcpy(v + at + nins, f->jpg + at + del, f->n - at - del);
    return v;
}

static void try_splice(fuzz *f, size_t at, size_t del, const uint8_t *ins, size_t nins, const char *what) {
    size_t m;
    uint8_t *v = splice(f, at, del, ins, nins, &m);
    try_variant_on(f, v, m, what, 1);
    free(v);
}

static void try_splice_random(fuzz *f, size_t at, size_t del, const uint8_t *ins, size_t nins,
                              const char *what) {
    size_t m;
    uint8_t *v = splice(f, at, del, ins, nins, &m);
    try_random(f, v, m, what);
    free(v);
}

/* Damage to the restart markers of a file that has them: renumbered, dropped, doubled, padded
 * with a fill byte, moved a byte on. */
static void damage_markers(fuzz *f) {
    char what[128];
    static const uint8_t fill[1] = {0xFF};
    for (int k = 0; k < 12; k++) {
        int which = (int)rand_below(f, 1000); /* the file has more than 1000 intervals */
        size_t at = rst_at(f->jpg, f->n, which);
        ck_assert_uint_gt(at, 0);
        size_t m;
        uint8_t *v = splice(f, 0, 0, NULL, 0, &m);
        renumber_rst(v, m, which, 1 + (int)rand_below(f, 7));
        snprintf(what, sizeof what, "restart marker %d renumbered", which);
        try_variant_on(f, v, m, what, 1);
        free(v);
        snprintf(what, sizeof what, "restart marker %d dropped", which);
        try_splice(f, at, 2, NULL, 0, what);
        snprintf(what, sizeof what, "restart marker %d doubled", which);
        try_splice(f, at, 0, f->jpg + at, 2, what);
        snprintf(what, sizeof what, "restart marker %d after a fill byte", which);
        try_splice(f, at, 0, fill, 1, what);
        uint8_t moved[3] = {f->jpg[at + 2], f->jpg[at], f->jpg[at + 1]};
        snprintf(what, sizeof what, "restart marker %d a byte later", which);
        try_splice(f, at, 3, moved, 3, what);
    }
}

/* A damaged file must never come back as pixels the sequential decoder would not give: a 1080p
 * 4:2:0 file, with restart markers every restart_mcus MCUs (0: none). */
static void check_corruption(int restart_mcus) {
    pools_create();
    const int w = 1920, h = 1080;
    const effdet_image *ph = photo();
    uint8_t *px = ph ? photo_pixels(ph, w, h, 3) : gradient_pixels(w, h, 3);
    enc_params e = enc_defaults(3, 2, 2, 85);
    e.restart_mcus = restart_mcus;
    size_t n;
    uint8_t *jpg = encode(px, w, h, &e, &n);
    free(px);
    fuzz f;
    memset(&f, 0, sizeof f);
    f.jpg = jpg, f.n = n, f.sp = find_scan(jpg, n), f.seed = 20240607u;
    const size_t B = f.sp.begin, E = f.sp.end, S = E - B;
    double t0 = effdet_now_ms();
    char what[128];
    static const uint8_t EOI[2] = {0xFF, 0xD9};
    /* EFFDET_SPLIT_FUZZ=k: k times as many random variants; EFFDET_SPLIT_SEED=n: other ones
     * (longer local runs) */
    const char *env = getenv("EFFDET_SPLIT_FUZZ"), *seed = getenv("EFFDET_SPLIT_SEED");
    int fz = env && atoi(env) > 1 ? atoi(env) : 1;
    if (seed && *seed) f.seed = (uint32_t)strtoul(seed, NULL, 10);

    /* the file itself, which must split at every scale */
    for (int d = 0; d < 3; d++) {
        effdet_decode_opts o = opts_for_scale(w, h, 2 << d);
        seq_result seq = seq_decode(jpg, n, &o);
        for (int p = 0; p < 3; p++)
            check_split(jpg, n, MAX_PIXELS, &o, g_pools[p], 0, &seq, SPLIT_MUST, "undamaged", &f.t);
        seq_free(&seq);
    }

    /* truncated inside the entropy-coded data, and just before / inside the EOI; each also
     * with an EOI appended after the cut */
    size_t *cuts = malloc(sizeof(size_t) * (16 * (size_t)fz + 16));
    int ncuts = 0;
    for (int k = 0; k < 16 * fz; k++) cuts[ncuts++] = B + S * (size_t)k / (16 * (size_t)fz);
    for (size_t k = 1; k <= 8; k++) cuts[ncuts++] = E - k;
    cuts[ncuts++] = E;                         /* EOI missing */
    cuts[ncuts++] = E + 1;                     /* half an EOI */
    for (size_t i = B + S / 2; i + 1 < E; i++) /* right after the FF of a stuffed FF 00 */
        if (jpg[i] == 0xFF) {
            cuts[ncuts++] = i + 1;
            break;
        }
    for (int k = 0; k < ncuts; k++)
        for (int eoi = 0; eoi < 2; eoi++) {
            size_t m = cuts[k] + (eoi ? 2 : 0);
            uint8_t *v = malloc(m);
            memcpy(v, jpg, cuts[k]);
            if (eoi) memcpy(v + cuts[k], EOI, 2);
            snprintf(what, sizeof what, "cut at scan byte %zu of %zu%s", cuts[k] - B, S, eoi ? " + EOI" : "");
            try_variant(&f, v, m, what);
            free(v);
        }
    free(cuts);

    /* single-bit flips: anywhere in the entropy-coded data, in its last bytes (padding bits
     * among them), and in the headers (tables, frame and scan headers) */
    uint8_t *v = malloc(n);
    const int nscan = 200 * fz, nlast = 16, nhead = 20 * fz;
    for (int k = 0; k < nscan + nlast + nhead; k++) {
        int last = k >= nscan && k < nscan + nlast;
        size_t at = k < nscan ? rand_in_scan(&f)
                    : last    ? E - 1 - (size_t)(k - nscan) / 8
                              : 2 + rand_below(&f, B - 2);
        int bit = last ? (k - nscan) % 8 : (int)rand_below(&f, 8);
        memcpy(v, jpg, n);
        v[at] ^= (uint8_t)(1u << bit);
        snprintf(what, sizeof what, "bit %d flipped at %s byte %zu", bit, at < B ? "header" : "scan",
                 at < B ? at : at - B);
        try_random(&f, v, n, what);
    }

    /* a byte replaced by FF and the next by a marker code (RSTn without DRI, EOI, SOS, DHT,
     * DNL, APP1, COM, fill, stuffing) or a random byte */
    static const uint8_t CODES[] = {0x00, 0xFF, 0xD0, 0xD3, 0xD7, 0xD9, 0xDA, 0xC4, 0xDC, 0xE1, 0xFE, 0x01};
    for (int k = 0; k < 2 * (int)sizeof CODES + 12 * fz; k++) {
        size_t at = rand_in_scan(&f);
        if (at + 1 >= E) at = E - 2;
        uint8_t code = k < 2 * (int)sizeof CODES ? CODES[k % sizeof CODES] : (uint8_t)(lcg(&f.seed) >> 24);
        memcpy(v, jpg, n);
        v[at] = 0xFF, v[at + 1] = code;
        snprintf(what, sizeof what, "FF %02X written at scan byte %zu", code, at - B);
        try_random(&f, v, n, what);
    }
    free(v);

    /* bytes inserted, deleted, a run deleted or duplicated */
    for (int k = 0; k < 10 * fz; k++) {
        size_t at = rand_in_scan(&f);
        uint8_t b = (uint8_t)(lcg(&f.seed) >> 24);
        snprintf(what, sizeof what, "byte %02X inserted at scan byte %zu", b, at - B);
        try_splice_random(&f, at, 0, &b, 1, what);
        at = rand_in_scan(&f);
        snprintf(what, sizeof what, "scan byte %zu deleted", at - B);
        try_splice_random(&f, at, 1, NULL, 0, what);
    }
    for (int k = 0; k < 5 * fz; k++) {
        size_t run = 2 + rand_below(&f, 200), at = B + rand_below(&f, S - run);
        snprintf(what, sizeof what, "%zu scan bytes deleted at %zu", run, at - B);
        try_splice_random(&f, at, run, NULL, 0, what);
        at = B + rand_below(&f, S - run);
        snprintf(what, sizeof what, "%zu scan bytes at %zu repeated", run, at - B);
        try_splice_random(&f, at, 0, jpg + at, run, what);
    }

    /* what follows the scan */
    {
        uint8_t junk[200];
        for (size_t i = 0; i < sizeof junk; i++) junk[i] = (uint8_t)(lcg(&f.seed) >> 24);
        try_splice(&f, n, 0, junk, sizeof junk, "junk after the EOI");
        uint8_t junk_eoi[sizeof junk + 2];
        memcpy(junk_eoi, junk, sizeof junk);
        memcpy(junk_eoi + sizeof junk, EOI, 2);
        try_splice(&f, n, 0, junk_eoi, sizeof junk_eoi, "junk and a second EOI after the EOI");
        try_splice(&f, E, 0, junk, 7, "junk bytes between the scan and the EOI");
        static const uint8_t zeros[5] = {0};
        try_splice(&f, E, 0, zeros, sizeof zeros, "zero bytes between the scan and the EOI");
        static const uint8_t fill[1] = {0xFF};
        try_splice(&f, E, 0, fill, 1, "a fill byte before the EOI");
        static const uint8_t com[] = {0xFF, 0xFE, 0x00, 0x05, 'a', 'b', 'c'};
        try_splice(&f, E, 0, com, sizeof com, "a COM segment between the scan and the EOI");
        static const uint8_t dnl[] = {0xFF, 0xDC, 0x00, 0x04, 0x04, 0x38};
        try_splice(&f, E, 0, dnl, sizeof dnl, "a DNL segment between the scan and the EOI");
        static const uint8_t soi[] = {0xFF, 0xD8};
        try_splice(&f, E, 2, soi, sizeof soi, "EOI replaced by SOI");
        static const uint8_t rst0[] = {0xFF, 0xD0};
        try_splice(&f, E, 0, rst0, sizeof rst0, "an RST0 between the scan and the EOI");
        try_splice(&f, B + S / 2, 0, rst0, sizeof rst0, "an RST0 in the middle of the scan");
        /* the EOI replaced by a second scan header and more entropy data */
        size_t sos = B;
        while (!(jpg[sos - 2] == 0xFF && jpg[sos - 1] == 0xDA)) sos--;
        sos -= 2; /* the SOS marker */
        size_t second = (B - sos) + 4096 + 2;
        uint8_t *s2 = malloc(second);
        memcpy(s2, jpg + sos, B - sos);
        memcpy(s2 + (B - sos), jpg + B, 4096);
        memcpy(s2 + second - 2, EOI, 2);
        try_splice(&f, E, 2, s2, second, "a second scan after the first");
        free(s2);
        /* the file twice: a last FF D9 far past the first image's end */
        try_splice(&f, n, 0, jpg, n, "the file twice");
        /* no entropy-coded data at all */
        try_splice(&f, B, S, NULL, 0, "empty scan");
    }
    if (restart_mcus) damage_markers(&f);

    printf("split corruption%s: %d damaged files, %d decoded by the sequential decoder; split OK %d of %d "
           "times, all equal (%d declined where the sequential decode succeeds) (%.0f ms)%s\n",
           restart_mcus ? " (restart markers)" : "", f.variants, f.seq_ok, f.split_ok, f.splits,
           f.split_declined_seq_ok, effdet_now_ms() - t0, f.t.failures ? " -- EXCEPT THE FAILURES ABOVE" : "");
    free(jpg);
    pools_free();
    fflush(stdout);
    ck_assert_msg(f.t.failures == 0, "%d failures (listed on stdout)", f.t.failures);
}

START_TEST(test_split_corruption) {
    check_corruption(0);
    check_corruption(7); /* markers inside MCU rows too */
}
END_TEST

/* ------------------------------------------------------------- untouched */

/* Declined calls leave out as it was: checked after every call above, and here on its own for
 * one file of each kind of refusal, with the count of refusals asserted. */
START_TEST(test_split_failure_leaves_out_untouched) {
    pools_create();
    const int w = 640, h = 480;
    uint8_t *px = gradient_pixels(w, h, 3);
    int refusals = 0;
    for (int kind = 0; kind < 6; kind++) {
        enc_params e = enc_defaults(3, 2, 2, 85);
        if (kind == 1) e.progressive = 1;
        if (kind == 2) e.restart_rows = 1; /* with its first marker renumbered, below */
        if (kind == 3) e.separate_scans = 1;
        size_t n;
        uint8_t *jpg = encode(px, w, h, &e, &n);
        size_t m = kind == 4 ? n / 2 : n; /* 4: truncated */
        if (kind == 2) ck_assert(renumber_rst(jpg, n, 0, 1));
        effdet_decode_opts o = opts_for_scale(w, h, kind == 0 ? 1 : 4);
        long long max_pixels = kind == 5 ? 1000 : MAX_PIXELS;
        for (int p = 0; p < 3; p++) {
            effdet_image out = sentinel();
            effdet_status st = split_call(jpg, m, max_pixels, &o, g_pools[p], 0, p != 1, &out);
            ck_assert_msg(st != EFFDET_OK, "kind %d, %d threads: split", kind, p + 2);
            ck_assert_msg(is_sentinel(&out), "kind %d, %d threads: out written on failure (%s)", kind, p + 2,
                          effdet_status_name(st));
            refusals++;
        }
        free(jpg);
    }
    ck_assert_int_eq(refusals, 18);
    free(px);
    pools_free();
}
END_TEST

static Suite *jpeg_split_suite(void) {
    Suite *s = suite_create("jpeg_split");
    /* one case each, so that CK_RUN_CASE=corruption (say) runs one alone */
    const struct {
        const char *name;
        const TTest *test;
    } tests[] = {
        {"equality", test_split_matches_sequential},
        {"scope", test_split_scope},
        {"contract", test_split_contract},
        {"corruption", test_split_corruption},
        {"untouched", test_split_failure_leaves_out_untouched},
    };
    for (size_t i = 0; i < sizeof tests / sizeof tests[0]; i++) {
        TCase *tc = tcase_create(tests[i].name);
        tcase_set_timeout(tc, 300); /* ASan/UBSan on 2 cores, with room to spare */
        tcase_add_test(tc, tests[i].test);
        suite_add_tcase(s, tc);
    }
    return s;
}

int main(void) {
    return tu_run_suite(jpeg_split_suite());
}
