/*
 * Internal: the anchor grid (anchors.c), generated as effdet's numpy code does it
 * (docs/engine.md, "Anchors").
 */
#ifndef EFFDET_ANCHORS_H
#define EFFDET_ANCHORS_H

#include "effdet.h"
#include "model/arch.h"

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

#endif
