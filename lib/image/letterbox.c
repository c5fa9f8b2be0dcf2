/*
 * Letterbox + normalise, bit-exact with effdet's eval pipeline (docs/engine.md,
 * "Letterbox and normalisation"):
 * Pillow's BILINEAR resize (ImagingResample: an antialiased triangle filter with 22-bit
 * fixed-point weights, horizontal pass first into a uint8 image, then vertical), the
 * result pasted top-left on a (124, 116, 104) canvas, then (v - mean) / std in float32.
 *
 * The canvas is produced in bands of output rows, one band per thread of the context's
 * pool. A band resamples only the source rows its output rows read (horizontal pass into
 * a ring of ksize rows, then the vertical pass), and writes each finished row straight
 * into the network input (or a uint8 canvas): no full-size intermediate, and the rows are
 * still in cache when they are read. The arithmetic is integer and per output sample, so
 * the result does not depend on the number of bands (docs/images.md).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#ifdef __SSE4_1__
#include <immintrin.h>
#endif

#include "core/status.h"
#include "core/threadpool.h"
#include "effdet_debug.h"
#include "image/letterbox.h"

/* Pillow: PRECISION_BITS = 32 - 8 - 2, so 255 * 2^22 plus rounding fits an int32. */
#define PRECISION_BITS 22
#define ROUNDING (1 << (PRECISION_BITS - 1))

static const uint8_t FILL_RGB[3] = {124, 116, 104}; /* round(255 * ImageNet mean) */
static const float MEAN_RGB[3] = {123.675f, 116.28f, 103.53f};
static const float STD_RGB[3] = {58.395f, 57.12f, 57.375f};

void letterbox_geometry(int img_w, int img_h, int target_w, int target_h, letterbox_info *info) {
    double s_h = (double)target_h / img_h, s_w = (double)target_w / img_w;
    double s = s_h < s_w ? s_h : s_w;
    info->scale = s;
    info->resized_w = (int)(img_w * s); /* Python int(): truncation toward zero */
    info->resized_h = (int)(img_h * s);
    /* A very long, thin image (16000x8 in 512) would truncate to 0 rows: keep one, so
     * a valid JPEG is never refused for its shape. Equal to Python's int() elsewhere. */
    if (info->resized_w < 1) info->resized_w = 1;
    if (info->resized_h < 1) info->resized_h = 1;
    info->img_scale = (float)(1.0 / s);
}

/* ---------------------------------------------------------------- weights */

/* The taps of every output sample along one axis. */
typedef struct {
    int *first; /* first input index per output index */
    int *count; /* number of taps per output index (<= ksize) */
    int32_t *w; /* ksize fixed-point weights per output index */
    int ksize;
    int identity; /* the axis keeps its length: Pillow skips this pass */
} axis_weights;

/* Pillow's ksize for the bilinear filter (support 1, widened by the downscale factor). */
static int axis_ksize(int in_len, int out_len) {
    double scale = (double)in_len / out_len;
    double fs = scale < 1.0 ? 1.0 : scale;
    return (int)ceil(fs) * 2 + 1;
}

static double triangle(double t) {
    if (t < 0.0) t = -t;
    return t < 1.0 ? 1.0 - t : 0.0;
}

/* Pillow's precompute_coeffs + normalize_coeffs_8bpc for the bilinear filter (support 1).
 * Pillow evaluates tri(d * (1 / fs)), a multiply by the reciprocal, which is kept here:
 * a division could move a weight across a rounding boundary of the 22-bit quantisation.
 * dw: ksize doubles of temporary space. */
static void axis_weights_compute(int in_len, int out_len, axis_weights *a, double *dw) {
    double scale = (double)in_len / out_len;
    double fs = scale < 1.0 ? 1.0 : scale;
    double support = 1.0 * fs;
    double inv_fs = 1.0 / fs;
    a->identity = in_len == out_len;
    for (int i = 0; i < out_len; i++) {
        int32_t *wq = a->w + (size_t)i * a->ksize;
        if (a->identity) { /* one tap of weight 1: clip8(2^21 + v * 2^22) == v */
            a->first[i] = i;
            a->count[i] = 1;
            wq[0] = 1 << PRECISION_BITS;
            continue;
        }
        double center = (i + 0.5) * scale;
        int lo = (int)(center - support + 0.5);
        if (lo < 0) lo = 0;
        int hi = (int)(center + support + 0.5);
        if (hi > in_len) hi = in_len;
        int n = hi - lo;
        double sum = 0.0;
        for (int j = 0; j < n; j++) {
            dw[j] = triangle((j + lo - center + 0.5) * inv_fs);
            sum += dw[j];
        }
        for (int j = 0; j < n; j++) {
            double v = sum != 0.0 ? dw[j] / sum : dw[j];
            /* round half away from zero, then C truncation, as Pillow */
            wq[j] = (int32_t)(v < 0 ? -0.5 + v * (1 << PRECISION_BITS) : 0.5 + v * (1 << PRECISION_BITS));
        }
        a->first[i] = lo;
        a->count[i] = n;
    }
}

/* ------------------------------------------------------------ scratch plan */

/* Everything one call needs, carved from one block: both axes' weights, and per band a
 * ring of source rows after the horizontal pass plus one output row. */
typedef struct {
    axis_weights ax, ay;
    double *dw;
    int ring_rows; /* = ay.ksize: a window never holds more rows */
    uint8_t *ring[LETTERBOX_MAX_BANDS];
    uint8_t *row[LETTERBOX_MAX_BANDS];
    const uint8_t **taps[LETTERBOX_MAX_BANDS]; /* ring_rows pointers: the current window */
} plan;

static size_t align64(size_t n) {
    return (n + 63) & ~(size_t)63;
}

/* Lays the plan out from base (NULL: only measures). Returns the bytes used. */
static size_t carve_plan(plan *p, uint8_t *base, int w, int h, int rw, int rh, int bands) {
    size_t off = 0;
#define CARVE(ptr, bytes)                                                                                    \
    do {                                                                                                     \
        (ptr) = base ? (void *)(base + off) : NULL;                                                          \
        off += align64(bytes);                                                                               \
    } while (0)
    p->ax.ksize = axis_ksize(w, rw);
    p->ay.ksize = axis_ksize(h, rh);
    p->ring_rows = p->ay.ksize;
    CARVE(p->ax.first, sizeof(int) * (size_t)rw);
    CARVE(p->ax.count, sizeof(int) * (size_t)rw);
    CARVE(p->ax.w, sizeof(int32_t) * (size_t)rw * p->ax.ksize);
    CARVE(p->ay.first, sizeof(int) * (size_t)rh);
    CARVE(p->ay.count, sizeof(int) * (size_t)rh);
    CARVE(p->ay.w, sizeof(int32_t) * (size_t)rh * p->ay.ksize);
    int kmax = p->ax.ksize > p->ay.ksize ? p->ax.ksize : p->ay.ksize;
    CARVE(p->dw, sizeof(double) * (size_t)kmax);
    for (int b = 0; b < bands; b++) {
        CARVE(p->ring[b], (size_t)p->ring_rows * rw * 3);
        CARVE(p->row[b], (size_t)rw * 3);
        CARVE(p->taps[b], sizeof(const uint8_t *) * (size_t)p->ring_rows);
    }
#undef CARVE
    return off;
}

static int bands_for(int threads) {
    return threads < 1 ? 1 : threads > LETTERBOX_MAX_BANDS ? LETTERBOX_MAX_BANDS : threads;
}

size_t letterbox_scratch_bytes(int img_w, int img_h, int target_w, int target_h, int threads) {
    letterbox_info li;
    letterbox_geometry(img_w, img_h, target_w, target_h, &li);
    plan p;
    return carve_plan(&p, NULL, img_w, img_h, li.resized_w, li.resized_h, bands_for(threads));
}

/* ------------------------------------------------------------ row kernels */

static inline uint8_t clip8(int32_t acc) {
    if (acc >= (255 << PRECISION_BITS)) return 255;
    if (acc <= 0) return 0;
    return (uint8_t)(acc >> PRECISION_BITS);
}

/* One source row (in_w RGB pixels) through the horizontal taps into rw pixels. */
static void resample_row_horizontal(const uint8_t *in, int in_w, const axis_weights *a, int rw, uint8_t *o) {
    if (a->identity) {
        memcpy(o, in, (size_t)rw * 3);
        return;
    }
    for (int x = 0; x < rw; x++) {
        const uint8_t *p = in + (size_t)a->first[x] * 3;
        const int32_t *w = a->w + (size_t)x * a->ksize;
        int n = a->count[x];
#ifdef __SSE4_1__
        /* R, G, B (and the next pixel's R, weighted but dropped) in one vector: each tap
         * is one multiply-add. The 4-byte loads stay inside the row unless the window
         * ends at its last pixel. */
        if (a->first[x] + n < in_w) {
            __m128i acc = _mm_set1_epi32(ROUNDING);
            for (int k = 0; k < n; k++) {
                int32_t px;
                memcpy(&px, p + 3 * k, 4);
                __m128i v = _mm_cvtepu8_epi32(_mm_cvtsi32_si128(px));
                acc = _mm_add_epi32(acc, _mm_mullo_epi32(v, _mm_set1_epi32(w[k])));
            }
            /* clip8 == unsigned saturation of acc >> 22 (arithmetic) */
            __m128i s = _mm_srai_epi32(acc, PRECISION_BITS);
            s = _mm_packus_epi16(_mm_packs_epi32(s, s), s);
            int32_t rgb = _mm_cvtsi128_si32(s);
            memcpy(o + 3 * x, &rgb, 3);
            continue;
        }
#endif
        int32_t r = ROUNDING, g = r, b = r;
        for (int k = 0; k < n; k++, p += 3) {
            r += p[0] * w[k];
            g += p[1] * w[k];
            b += p[2] * w[k];
        }
        o[3 * x + 0] = clip8(r);
        o[3 * x + 1] = clip8(g);
        o[3 * x + 2] = clip8(b);
    }
}

/* One output row: the weighted sum of `taps` ring rows (n bytes each) into o. */
static void resample_row_vertical(const uint8_t *const *rows, const int32_t *w, int taps, int n, uint8_t *o) {
    int i = 0;
#ifdef __SSE4_1__
    for (; i + 16 <= n; i += 16) {
        __m128i a0 = _mm_set1_epi32(ROUNDING), a1 = a0, a2 = a0, a3 = a0;
        for (int k = 0; k < taps; k++) {
            __m128i v = _mm_loadu_si128((const __m128i *)(rows[k] + i));
            __m128i wk = _mm_set1_epi32(w[k]);
            a0 = _mm_add_epi32(a0, _mm_mullo_epi32(_mm_cvtepu8_epi32(v), wk));
            a1 = _mm_add_epi32(a1, _mm_mullo_epi32(_mm_cvtepu8_epi32(_mm_srli_si128(v, 4)), wk));
            a2 = _mm_add_epi32(a2, _mm_mullo_epi32(_mm_cvtepu8_epi32(_mm_srli_si128(v, 8)), wk));
            a3 = _mm_add_epi32(a3, _mm_mullo_epi32(_mm_cvtepu8_epi32(_mm_srli_si128(v, 12)), wk));
        }
        __m128i lo = _mm_packs_epi32(_mm_srai_epi32(a0, PRECISION_BITS), _mm_srai_epi32(a1, PRECISION_BITS));
        __m128i hi = _mm_packs_epi32(_mm_srai_epi32(a2, PRECISION_BITS), _mm_srai_epi32(a3, PRECISION_BITS));
        _mm_storeu_si128((__m128i *)(o + i), _mm_packus_epi16(lo, hi));
    }
#endif
    for (; i < n; i++) {
        int32_t acc = ROUNDING;
        for (int k = 0; k < taps; k++) acc += rows[k][i] * w[k];
        o[i] = clip8(acc);
    }
}

/* 256-entry table per channel: the same float32 subtraction and true division the
 * reference performs, done once per value instead of once per pixel. */
static void normalize_table(float table[3][256]) {
    for (int c = 0; c < 3; c++)
        for (int v = 0; v < 256; v++) table[c][v] = ((float)v - MEAN_RGB[c]) / STD_RGB[c];
}

/* ------------------------------------------------------------------ bands */

typedef struct {
    const effdet_image *img;
    int rw, rh, tw, th, bands;
    plan p;
    uint8_t *out_u8; /* one of the two outputs: uint8 canvas ... */
    float *out_f32;  /* ... or normalised NHWC float32 */
    const float (*table)[256];
} letterbox_job;

/* Write one canvas row: the first n bytes from src (resampled pixels), the fill colour
 * after them (and in the whole row when src is NULL). */
static void emit_row(const letterbox_job *j, int y, const uint8_t *src, int n) {
    size_t stride = (size_t)j->tw * 3, total = stride;
    if (!src) n = 0;
    if (j->out_u8) {
        uint8_t *o = j->out_u8 + (size_t)y * stride;
        if (n) memcpy(o, src, (size_t)n);
        for (size_t i = (size_t)n; i < total; i += 3) memcpy(o + i, FILL_RGB, 3);
        return;
    }
    float *o = j->out_f32 + (size_t)y * stride;
    const float *t0 = j->table[0], *t1 = j->table[1], *t2 = j->table[2];
    for (int i = 0; i < n; i += 3) {
        o[i + 0] = t0[src[i + 0]];
        o[i + 1] = t1[src[i + 1]];
        o[i + 2] = t2[src[i + 2]];
    }
    float f0 = t0[FILL_RGB[0]], f1 = t1[FILL_RGB[1]], f2 = t2[FILL_RGB[2]];
    for (size_t i = (size_t)n; i < total; i += 3) {
        o[i + 0] = f0;
        o[i + 1] = f1;
        o[i + 2] = f2;
    }
}

/* Output rows [y0, y1) of the canvas with band b's ring: each source row a window needs
 * is resampled horizontally once (windows only move down), then the window is summed. */
static void letterbox_band(const letterbox_job *j, int b, int y0, int y1) {
    const plan *p = &j->p;
    const effdet_image *img = j->img;
    size_t src_stride = (size_t)img->width * 3, ring_stride = (size_t)j->rw * 3;
    uint8_t *ring = p->ring[b];
    const int R = p->ring_rows;
    int next = 0; /* next source row to resample into the ring */
    int y = y0;
    for (; y < y1 && y < j->rh; y++) {
        int f = p->ay.first[y], n = p->ay.count[y];
        if (next < f) next = f;
        for (; next < f + n; next++)
            resample_row_horizontal(img->rgb + (size_t)next * src_stride, img->width, &p->ax, j->rw,
                                    ring + (size_t)(next % R) * ring_stride);
        if (p->ay.identity) {
            emit_row(j, y, ring + (size_t)(f % R) * ring_stride, (int)ring_stride);
            continue;
        }
        const uint8_t **rows = p->taps[b];
        for (int k = 0; k < n; k++) rows[k] = ring + (size_t)((f + k) % R) * ring_stride;
        resample_row_vertical(rows, p->ay.w + (size_t)y * p->ay.ksize, n, (int)ring_stride, p->row[b]);
        emit_row(j, y, p->row[b], (int)ring_stride);
    }
    for (; y < y1; y++) emit_row(j, y, NULL, 0);
}

static void letterbox_bands(void *arg, int begin, int end) {
    const letterbox_job *j = arg;
    for (int b = begin; b < end; b++) {
        int y0 = (int)((long long)j->th * b / j->bands), y1 = (int)((long long)j->th * (b + 1) / j->bands);
        letterbox_band(j, b, y0, y1);
    }
}

/* Shared by both entry points: checks, geometry, plan (in scratch when it fits, else a
 * temporary block), then the bands on tp. */
static effdet_status letterbox_run(const effdet_image *img, int target_w, int target_h, uint8_t *out_u8,
                                   float *out_f32, void *scratch, size_t scratch_bytes, threadpool *tp,
                                   letterbox_info *info, effdet_error *err) {
    if (!img || !img->rgb || img->width <= 0 || img->height <= 0)
        return set_error(err, EFFDET_ERR_ARG, "letterbox: image is empty");
    if (target_w <= 0 || target_h <= 0 || (!out_u8 && !out_f32) || !info)
        return set_error(err, EFFDET_ERR_ARG, "letterbox: invalid target %dx%d or NULL output", target_w,
                         target_h);
    letterbox_geometry(img->width, img->height, target_w, target_h, info);
    letterbox_job j = {
        .img = img, .rw = info->resized_w, .rh = info->resized_h, .tw = target_w, .th = target_h};
    j.bands = bands_for(threadpool_size(tp));
    j.out_u8 = out_u8;
    j.out_f32 = out_f32;
    float table[3][256];
    normalize_table(table);
    j.table = (const float(*)[256])table;

    size_t need = carve_plan(&j.p, NULL, img->width, img->height, j.rw, j.rh, j.bands);
    void *block = scratch, *temp = NULL;
    if (!scratch || need > scratch_bytes) { /* images far larger than the network input */
        block = temp = malloc(need);
        if (!temp)
            return set_error(err, EFFDET_ERR_NOMEM, "letterbox: out of memory for %zu bytes of resize state",
                             need);
    }
    carve_plan(&j.p, block, img->width, img->height, j.rw, j.rh, j.bands);
    axis_weights_compute(img->width, j.rw, &j.p.ax, j.p.dw);
    axis_weights_compute(img->height, j.rh, &j.p.ay, j.p.dw);
    threadpool_run(tp, j.bands, 1, letterbox_bands, &j);
    free(temp);
    return EFFDET_OK;
}

effdet_status letterbox_rgb(const effdet_image *img, int target_w, int target_h, uint8_t *out,
                            letterbox_info *info, effdet_error *err) {
    return letterbox_run(img, target_w, target_h, out, NULL, NULL, 0, NULL, info, err);
}

effdet_status letterbox_normalize_nhwc(const effdet_image *img, int target_w, int target_h, float *out,
                                       void *scratch, size_t scratch_bytes, threadpool *tp,
                                       letterbox_info *info, effdet_error *err) {
    if (!out) return set_error(err, EFFDET_ERR_ARG, "letterbox: NULL output");
    return letterbox_run(img, target_w, target_h, NULL, out, scratch, scratch_bytes, tp, info, err);
}

void normalize_to_nhwc(const uint8_t *hwc, int w, int h, float *out) {
    float table[3][256];
    normalize_table(table);
    size_t n = (size_t)w * h;
    for (size_t i = 0; i < n; i++) {
        out[3 * i + 0] = table[0][hwc[3 * i + 0]];
        out[3 * i + 1] = table[1][hwc[3 * i + 1]];
        out[3 * i + 2] = table[2][hwc[3 * i + 2]];
    }
}

void normalize_to_nchw(const uint8_t *hwc, int w, int h, float *out) {
    float table[3][256];
    normalize_table(table);
    size_t n = (size_t)w * h;
    for (int c = 0; c < 3; c++) {
        float *plane = out + (size_t)c * n;
        for (size_t i = 0; i < n; i++) plane[i] = table[c][hwc[3 * i + c]];
    }
}

void effdet_normalize_nchw(const uint8_t *rgb, int w, int h, float *out_nchw) {
    normalize_to_nchw(rgb, w, h, out_nchw);
}
