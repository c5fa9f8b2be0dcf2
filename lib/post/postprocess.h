/*
 * Internal: anchors, top-k selection, box decoding, NMS (NOTES.md §6-7).
 *
 * Head outputs are channels-last per level, so within a level the flat index
 * (y * W + x) * A * C + a * C + c is already (global anchor index - level offset) * C + c.
 */
#ifndef EFFDET_POSTPROCESS_H
#define EFFDET_POSTPROCESS_H

#include <stddef.h>
#include <stdint.h>

#include "model/arch.h"
#include "effdet.h"

typedef struct {
    int num_classes;
    int num_anchors; /* per location (9) */
    int level_h[EFFDET_NUM_LEVELS], level_w[EFFDET_NUM_LEVELS];
    int level_offset[EFFDET_NUM_LEVELS]; /* first global anchor index of each level */
    int total;        /* anchors over all levels */
    float *boxes;     /* total x 4: y1, x1, y2, x2 (float32, computed in double) */
} anchor_grid;

effdet_status anchors_build(anchor_grid *g, const effdet_arch *a, effdet_error *err);
void anchors_free(anchor_grid *g);

typedef struct {
    const float *cls[EFFDET_NUM_LEVELS]; /* H x W x (A*C) */
    const float *box[EFFDET_NUM_LEVELS]; /* H x W x (A*4), (ty, tx, th, tw) */
} head_outputs;

typedef struct {
    float logit;
    int32_t anchor; /* global anchor index */
    int32_t cls;    /* 0-based class */
} topk_item;

typedef struct {
    int topk;                 /* candidates before NMS (max_detection_points, 5000) */
    int clip;                 /* clip to [0, clip_w] x [0, clip_h] before NMS */
    float clip_w, clip_h;     /* network pixels: W_orig / img_scale, H_orig / img_scale */
    float out_scale;          /* multiply final coordinates (img_scale, or 1) */
    float score_threshold;
    int max_detections;
    effdet_nms_kind nms;
    const uint8_t *class_mask; /* NULL = all classes */
} postprocess_params;

/* Scratch memory postprocess() needs for this grid and top-k size (allocated once per
 * context, so post-processing allocates nothing per request). */
size_t postprocess_scratch_bytes(const anchor_grid *g, int topk);

/* The k largest logits over all levels and classes, sorted descending (ties: lower flat
 * index first). Returns how many were written (min(k, total*C)). */
int topk_select(const anchor_grid *g, const head_outputs *h, int k, const uint8_t *class_mask, topk_item *out,
                void *scratch);

/* top-k -> decode -> (clip) -> sigmoid -> per-class NMS -> sort -> threshold -> cap.
 * Writes at most p->max_detections rows to out; returns the count. */
int postprocess(const anchor_grid *g, const head_outputs *h, const postprocess_params *p, void *scratch,
                effdet_detection *out);

#endif
