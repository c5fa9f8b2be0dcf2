/*
 * Internal: image -> network input (letterbox.c), exactly as effdet's eval pipeline
 * (docs/engine.md, "Letterbox and normalisation"):
 * Pillow BILINEAR (antialiased triangle filter, 22-bit fixed point, horizontal pass
 * first through a uint8 intermediate), top-left placement on a canvas filled with
 * (124, 116, 104), then (v - mean) / std in float32 with a true division.
 */
#ifndef EFFDET_PREPROCESS_H
#define EFFDET_PREPROCESS_H

#include <stdint.h>

#include <stddef.h>

#include "core/threadpool.h"
#include "effdet.h"

/* The canvas is made in at most this many bands of rows, one per pool thread. */
#define LETTERBOX_MAX_BANDS 8

typedef struct {
    double scale;     /* s = min(target_h / h, target_w / w) */
    int resized_w, resized_h; /* (int)(w * s), (int)(h * s) */
    float img_scale;  /* 1 / s as float32: network pixels -> original pixels */
} letterbox_info;

/* Compute the letterbox geometry only. */
void letterbox_geometry(int img_w, int img_h, int target_w, int target_h, letterbox_info *info);

/* Resize img into a target_w x target_h HWC uint8 canvas (out), top-left, fill colour
 * elsewhere. One thread; allocates its resize state (weights, row ring) per call. */
effdet_status letterbox_rgb(const effdet_image *img, int target_w, int target_h, uint8_t *out,
                            letterbox_info *info, effdet_error *err);

/* The same canvas, normalised as normalize_to_nhwc() does, written straight into out
 * (target_h x target_w x 3 float32), in bands of rows on tp (NULL: the caller alone).
 * The resize state is carved from scratch when it fits in scratch_bytes (see
 * letterbox_scratch_bytes), otherwise allocated for the call. Same values whatever tp. */
effdet_status letterbox_normalize_nhwc(const effdet_image *img, int target_w, int target_h, float *out,
                                       void *scratch, size_t scratch_bytes, threadpool *tp,
                                       letterbox_info *info, effdet_error *err);

/* Scratch bytes letterbox_normalize_nhwc needs for an img_w x img_h image on a pool of
 * `threads` threads: the two axes' weights and a ring of source rows per band, so about
 * (2 * (img_w + img_h) * 4 + bands * ksize * target_w * 3) bytes, ksize being
 * 2 * ceil(img_h / resized_h) + 1. */
size_t letterbox_scratch_bytes(int img_w, int img_h, int target_w, int target_h, int threads);

/* uint8 HWC -> normalised float32, NHWC (what the engine consumes) or NCHW (fixtures). */
void normalize_to_nhwc(const uint8_t *hwc, int w, int h, float *out);
void normalize_to_nchw(const uint8_t *hwc, int w, int h, float *out);

#endif
