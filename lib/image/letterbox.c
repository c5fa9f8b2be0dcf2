/*
 * Letterbox + normalise, bit-exact with effdet's eval pipeline (docs/engine.md,
 * "Letterbox and normalisation"):
 * Pillow's BILINEAR resize (ImagingResample: an antialiased triangle filter with 22-bit
 * fixed-point weights, horizontal pass first into a uint8 image, then vertical), the
 * result pasted top-left on a (124, 116, 104) canvas, then (v - mean) / std in float32.
 * Weights are computed once per axis per call; the inner loops are integer only.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "effdet_debug.h"
#include "image/letterbox.h"

/* Pillow: PRECISION_BITS = 32 - 8 - 2, so 255 * 2^22 plus rounding fits an int32. */
#define PRECISION_BITS 22

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

/* The taps of one output sample along one axis. */
typedef struct {
    int *first; /* first input index per output index */
    int *count; /* number of taps per output index */
    int32_t *w; /* ksize fixed-point weights per output index */
    int ksize;
} axis_weights;

static void axis_weights_free(axis_weights *a) {
    free(a->first);
    free(a->count);
    free(a->w);
    a->first = a->count = NULL;
    a->w = NULL;
}

static double triangle(double t) {
    if (t < 0.0) t = -t;
    return t < 1.0 ? 1.0 - t : 0.0;
}

/* Pillow's precompute_coeffs + normalize_coeffs_8bpc for the bilinear filter (support 1).
 * Pillow evaluates tri(d * (1 / fs)), a multiply by the reciprocal, which is kept here:
 * a division could move a weight across a rounding boundary of the 22-bit quantisation. */
static effdet_status axis_weights_compute(int in_len, int out_len, axis_weights *a, effdet_error *err) {
    double scale = (double)in_len / out_len;
    double fs = scale < 1.0 ? 1.0 : scale;
    double support = 1.0 * fs;
    double inv_fs = 1.0 / fs;
    a->ksize = (int)ceil(support) * 2 + 1;
    a->first = malloc(sizeof(int) * (size_t)out_len);
    a->count = malloc(sizeof(int) * (size_t)out_len);
    a->w = calloc((size_t)out_len * (size_t)a->ksize, sizeof(int32_t));
    double *dw = malloc(sizeof(double) * (size_t)a->ksize);
    if (!a->first || !a->count || !a->w || !dw) {
        free(dw);
        axis_weights_free(a);
        set_error(err, EFFDET_ERR_NOMEM, "letterbox: out of memory for %d -> %d resize weights", in_len,
                  out_len);
        return EFFDET_ERR_NOMEM; /* literal, so static analysers see the weights are not used */
    }
    for (int i = 0; i < out_len; i++) {
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
        int32_t *wq = a->w + (size_t)i * a->ksize;
        for (int j = 0; j < n; j++) {
            double v = sum != 0.0 ? dw[j] / sum : dw[j];
            /* round half away from zero, then C truncation, as Pillow */
            wq[j] = (int32_t)(v < 0 ? -0.5 + v * (1 << PRECISION_BITS) : 0.5 + v * (1 << PRECISION_BITS));
        }
        a->first[i] = lo;
        a->count[i] = n;
    }
    free(dw);
    return EFFDET_OK;
}

static inline uint8_t clip8(int32_t acc) {
    if (acc >= (255 << PRECISION_BITS)) return 255;
    if (acc <= 0) return 0;
    return (uint8_t)(acc >> PRECISION_BITS);
}

/* src: rows x src_w RGB; dst: rows x dst_w RGB with row stride dst_stride bytes. */
static void resample_horizontal(const uint8_t *src, int src_w, int rows, const axis_weights *a, int dst_w,
                                uint8_t *dst, size_t dst_stride) {
    for (int y = 0; y < rows; y++) {
        const uint8_t *in = src + (size_t)y * src_w * 3;
        uint8_t *o = dst + (size_t)y * dst_stride;
        for (int x = 0; x < dst_w; x++) {
            const uint8_t *p = in + (size_t)a->first[x] * 3;
            const int32_t *w = a->w + (size_t)x * a->ksize;
            int32_t r = 1 << (PRECISION_BITS - 1), g = r, b = r;
            for (int k = 0; k < a->count[x]; k++, p += 3) {
                r += p[0] * w[k];
                g += p[1] * w[k];
                b += p[2] * w[k];
            }
            o[3 * x + 0] = clip8(r);
            o[3 * x + 1] = clip8(g);
            o[3 * x + 2] = clip8(b);
        }
    }
}

/* src: src_rows rows of `width` RGB pixels; dst row y gets the weighted column sums. */
static void resample_vertical(const uint8_t *src, int width, const axis_weights *a, int dst_h, uint8_t *dst,
                              size_t dst_stride) {
    size_t src_stride = (size_t)width * 3;
    int n = width * 3;
    for (int y = 0; y < dst_h; y++) {
        const uint8_t *base = src + (size_t)a->first[y] * src_stride;
        const int32_t *w = a->w + (size_t)y * a->ksize;
        int taps = a->count[y];
        uint8_t *o = dst + (size_t)y * dst_stride;
        for (int i = 0; i < n; i++) {
            const uint8_t *p = base + i;
            int32_t acc = 1 << (PRECISION_BITS - 1);
            for (int k = 0; k < taps; k++, p += src_stride) acc += *p * w[k];
            o[i] = clip8(acc);
        }
    }
}

static void fill_canvas(uint8_t *out, int target_w, int target_h) {
    size_t n = (size_t)target_w * target_h;
    for (size_t i = 0; i < n; i++) memcpy(out + 3 * i, FILL_RGB, 3);
}

effdet_status letterbox_rgb(const effdet_image *img, int target_w, int target_h, uint8_t *out,
                            letterbox_info *info, effdet_error *err) {
    if (!img || !img->rgb || img->width <= 0 || img->height <= 0)
        return set_error(err, EFFDET_ERR_ARG, "letterbox: image is empty");
    if (target_w <= 0 || target_h <= 0 || !out || !info)
        return set_error(err, EFFDET_ERR_ARG, "letterbox: invalid target %dx%d or NULL output", target_w,
                         target_h);
    letterbox_geometry(img->width, img->height, target_w, target_h, info);
    int w = img->width, h = img->height, rw = info->resized_w, rh = info->resized_h;
    if (rw <= 0 || rh <= 0)
        return set_error(err, EFFDET_ERR_IMAGE, "letterbox: a %dx%d image shrinks to %dx%d in %dx%d", w, h,
                         rw, rh, target_w, target_h);
    fill_canvas(out, target_w, target_h);
    size_t out_stride = (size_t)target_w * 3;

    axis_weights ax = {0}, ay = {0};
    uint8_t *tmp = NULL;
    effdet_status st = EFFDET_OK;
    /* Pillow skips a pass whose axis keeps its length. */
    const uint8_t *horiz = img->rgb; /* rows of width rw after the horizontal pass */
    if (rw != w) {
        if ((st = axis_weights_compute(w, rw, &ax, err)) != EFFDET_OK) goto done;
        if (rh == h) {
            resample_horizontal(img->rgb, w, h, &ax, rw, out, out_stride);
            goto done; /* single pass, straight into the canvas */
        }
        tmp = malloc((size_t)rw * h * 3);
        if (!tmp) {
            st = set_error(err, EFFDET_ERR_NOMEM, "letterbox: out of memory for a %dx%d intermediate", rw, h);
            goto done;
        }
        resample_horizontal(img->rgb, w, h, &ax, rw, tmp, (size_t)rw * 3);
        horiz = tmp;
    }
    if (rh != h) {
        if ((st = axis_weights_compute(h, rh, &ay, err)) != EFFDET_OK) goto done;
        resample_vertical(horiz, rw, &ay, rh, out, out_stride);
    } else {
        for (int y = 0; y < rh; y++) memcpy(out + y * out_stride, horiz + (size_t)y * rw * 3, (size_t)rw * 3);
    }
done:
    free(tmp);
    axis_weights_free(&ax);
    axis_weights_free(&ay);
    return st;
}

/* 256-entry table per channel: the same float32 subtraction and true division the
 * reference performs, done once per value instead of once per pixel. */
static void normalize_table(float table[3][256]) {
    for (int c = 0; c < 3; c++)
        for (int v = 0; v < 256; v++) table[c][v] = ((float)v - MEAN_RGB[c]) / STD_RGB[c];
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
