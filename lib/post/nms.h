/*
 * Internal: IoU and the per-class NMS loops (nms.c; docs/engine.md, "NMS"). Exposed so
 * tests can check them on hand-made boxes.
 */
#ifndef EFFDET_NMS_H
#define EFFDET_NMS_H

#include <stdint.h>

#define NMS_IOU_THRESHOLD 0.5f    /* effdet: batched_nms(..., iou_threshold=0.5) */
#define SOFT_NMS_SIGMA 0.5f       /* effdet soft_nms.py default */
#define SOFT_NMS_MIN_SCORE 0.001f /* generate_detections(): score_threshold=.001 */

/* Boxes are x1, y1, x2, y2; area = (x2 - x1) * (y2 - y1), no +1. */
static inline float box_area(const float *b) {
    return (b[2] - b[0]) * (b[3] - b[1]);
}

/* IoU exactly as torchvision's CPU nms kernel computes it in float32. Two zero-area
 * boxes give 0/0 = NaN, which never compares > threshold. */
float iou_hard(const float *a, const float *b, float area_a, float area_b);

/* IoU as effdet's soft_nms.py pairwise_iou: 0 unless the intersection is positive. */
float iou_soft(const float *a, const float *b, float area_a, float area_b);

/* Greedy per-class hard NMS. Candidates 0..n-1 are in descending score order, with
 * boxes, areas and classes indexed by candidate; those with include[i] == 0 take no
 * part. Sets keep[i] for the kept ones, stopping once max_keep are kept (the merged
 * list is cut there anyway). class_head (num_classes) and next_kept (n) are scratch.
 * Returns the number kept. */
int nms_hard(const float *box, const float *area, const int32_t *cls, const uint8_t *include, int n,
             int num_classes, int max_keep, uint8_t *keep, int32_t *class_head, int32_t *next_kept);

/* Gaussian soft-NMS (effdet soft_nms.py) over the candidates of one class. cand lists
 * n candidate indices in ascending index order (ties in score go to the lower index, as
 * torch.argmax does); it is used as the working list and is clobbered. score[] holds the
 * scores and is decayed in place. A candidate is picked only while its score is >
 * min_score, except the candidate `exempt` (effdet's first global pick is never checked
 * against the threshold; pass -1 for none). Writes picked candidates and their decayed
 * scores in pick order; returns how many. */
int nms_soft_class(const float *box, const float *area, int32_t *cand, int n, float *score, int exempt,
                   float sigma, float min_score, int32_t *picked, float *picked_score);

#endif
