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

#include "effdet.h"

typedef struct {
    double scale;     /* s = min(target_h / h, target_w / w) */
    int resized_w, resized_h; /* (int)(w * s), (int)(h * s) */
    float img_scale;  /* 1 / s as float32: network pixels -> original pixels */
} letterbox_info;

/* Compute the letterbox geometry only. */
void letterbox_geometry(int img_w, int img_h, int target_w, int target_h, letterbox_info *info);

/* Resize img into a target_w x target_h HWC uint8 canvas (out), top-left, fill colour
 * elsewhere. May allocate a temporary buffer for the two-pass resize. */
effdet_status letterbox_rgb(const effdet_image *img, int target_w, int target_h, uint8_t *out,
                            letterbox_info *info, effdet_error *err);

/* uint8 HWC -> normalised float32, NHWC (what the engine consumes) or NCHW (fixtures). */
void normalize_to_nhwc(const uint8_t *hwc, int w, int h, float *out);
void normalize_to_nchw(const uint8_t *hwc, int w, int h, float *out);

#endif
