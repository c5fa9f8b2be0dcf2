/*
 * Internal: the head outputs post-processing reads and the top-k candidate selection
 * (topk.c; docs/engine.md, "Post-processing").
 *
 * Head outputs are channels-last per level, so within a level the flat index
 * (y * W + x) * A * C + a * C + c is already (global anchor index - level offset) * C + c.
 */
#ifndef EFFDET_TOPK_H
#define EFFDET_TOPK_H

#include <stdint.h>

#include "core/threadpool.h"
#include "post/anchors.h"

/* The scan is split into at most this many parts (one per pool thread). */
#define TOPK_MAX_PARTS 4

typedef struct {
    const float *cls[EFFDET_NUM_LEVELS]; /* H x W x (A*C) */
    const float *box[EFFDET_NUM_LEVELS]; /* H x W x (A*4), (ty, tx, th, tw) */
} head_outputs;

typedef struct {
    float logit;
    int32_t anchor; /* global anchor index */
    int32_t cls;    /* 0-based class */
} topk_item;

/* The k largest logits over all levels and classes, sorted descending (ties: lower flat
 * index first). Returns how many were written (min(k, total*C)). */
int topk_select(const anchor_grid *g, const head_outputs *h, int k, const uint8_t *class_mask, topk_item *out,
                void *scratch);

/* The same on tp's threads (NULL: the caller alone); the same result for any pool size.
 * scratch: TOPK_MAX_PARTS * 2 * k uint64 keys (postprocess_scratch_bytes reserves them). */
int topk_select_mt(const anchor_grid *g, const head_outputs *h, int k, const uint8_t *class_mask,
                   topk_item *out, void *scratch, threadpool *tp);

#endif
