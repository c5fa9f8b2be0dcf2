/*
 * Internal: post-processing (postprocess.c): top-k -> decode -> clip -> sigmoid ->
 * per-class NMS -> sort -> threshold -> cap (docs/engine.md, "Post-processing").
 */
#ifndef EFFDET_POSTPROCESS_H
#define EFFDET_POSTPROCESS_H

#include <stddef.h>
#include <stdint.h>

#include "effdet.h"
#include "post/anchors.h"
#include "post/topk.h"

typedef struct {
    int topk;                 /* candidates before NMS (max_detection_points, 5000) */
    int clip;                 /* clip to [0, clip_w] x [0, clip_h] before NMS */
    float clip_w, clip_h;     /* network pixels: W_orig / img_scale, H_orig / img_scale */
    float out_scale;          /* multiply final coordinates (img_scale, or 1) */
    float score_threshold;
    int max_detections;
    effdet_nms_kind nms;
    const uint8_t *class_mask; /* NULL = all classes */
    threadpool *tp;            /* top-k on these threads (NULL: the caller's only) */
} postprocess_params;

/* Scratch memory postprocess() needs for this grid and top-k size (allocated once per
 * context, so post-processing allocates nothing per request). */
size_t postprocess_scratch_bytes(const anchor_grid *g, int topk);

/* top-k -> decode -> (clip) -> sigmoid -> per-class NMS -> sort -> threshold -> cap.
 * Writes at most p->max_detections rows to out; returns the count. */
int postprocess(const anchor_grid *g, const head_outputs *h, const postprocess_params *p, void *scratch,
                effdet_detection *out);

#endif
