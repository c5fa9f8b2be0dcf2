/*
 * Per-class non-maximum suppression (docs/engine.md, "NMS") and effdet's gaussian
 * soft-NMS (effdet/soft_nms.py), in float32 with the reference's operation order.
 */
#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include "post/nms.h"

float iou_hard(const float *a, const float *b, float area_a, float area_b) {
    /* torchvision nms_kernel: w = max(0, xx2 - xx1), h likewise, ovr = inter /
     * (iarea + areas[j] - inter), summed left to right. */
    float xx1 = fmaxf(a[0], b[0]), yy1 = fmaxf(a[1], b[1]);
    float xx2 = fminf(a[2], b[2]), yy2 = fminf(a[3], b[3]);
    float w = xx2 - xx1 > 0 ? xx2 - xx1 : 0;
    float h = yy2 - yy1 > 0 ? yy2 - yy1 : 0;
    float inter = w * h;
    return inter / (area_a + area_b - inter);
}

float iou_soft(const float *a, const float *b, float area_a, float area_b) {
    /* pairwise_iou: width_height = min(x2) - max(x1) clamped at 0, inter = w * h, and
     * torch.where(inter > 0, inter / (area1 + area2 - inter), 0). */
    float w = fminf(a[2], b[2]) - fmaxf(a[0], b[0]);
    float h = fminf(a[3], b[3]) - fmaxf(a[1], b[1]);
    if (w < 0) w = 0;
    if (h < 0) h = 0;
    float inter = w * h;
    return inter > 0 ? inter / (area_a + area_b - inter) : 0.0f;
}

int nms_hard(const float *box, const float *area, const int32_t *cls, const uint8_t *include, int n,
             int num_classes, int max_keep, uint8_t *keep, int32_t *class_head, int32_t *next_kept) {
    /* Greedy NMS keeps a box iff no higher-scoring kept box of its class overlaps it by
     * more than the threshold. Walking all candidates in score order and testing each
     * against its class's kept boxes gives the same set as the per-class loop, already
     * merged in score order, and can stop at max_keep. */
    for (int c = 0; c < num_classes; c++) class_head[c] = -1;
    int kept = 0;
    for (int i = 0; i < n; i++) {
        keep[i] = 0;
        if (!include[i] || kept == max_keep) continue;
        const float *bi = box + (size_t)i * 4;
        int suppressed = 0;
        for (int j = class_head[cls[i]]; j >= 0 && !suppressed; j = next_kept[j])
            /* strictly greater: IoU == 0.5 survives, and NaN (two empty boxes) never suppresses */
            suppressed = iou_hard(box + (size_t)j * 4, bi, area[j], area[i]) > NMS_IOU_THRESHOLD;
        if (suppressed) continue;
        keep[i] = 1;
        next_kept[i] = class_head[cls[i]];
        class_head[cls[i]] = i;
        kept++;
    }
    return kept;
}

/* Index into cand[0..n) of the highest score; the first one on ties (torch.argmax). */
static int argmax_score(const int32_t *cand, int n, const float *score) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (score[cand[i]] > score[cand[best]]) best = i;
    return best;
}

int nms_soft_class(const float *box, const float *area, int32_t *cand, int n, float *score, int exempt,
                   float sigma, float min_score, int32_t *picked, float *picked_score) {
    /* effdet prunes every remaining box whose score is not > min_score after each pick,
     * and a pick never lowers another class's scores, so a box is only ever picked with
     * a score > min_score — except the very first pick, made before any pruning. */
    int alive = 0;
    for (int i = 0; i < n; i++)
        if (score[cand[i]] > min_score || cand[i] == exempt) cand[alive++] = cand[i];

    int count = 0;
    while (alive > 0) {
        int top = argmax_score(cand, alive, score);
        int32_t t = cand[top];
        picked[count] = t;
        picked_score[count] = score[t];
        count++;
        const float *bt = box + (size_t)t * 4;
        /* decay every other remaining box, then drop the top and those now too low,
         * keeping the remaining ones in their original order */
        int out = 0;
        for (int i = 0; i < alive; i++) {
            int32_t c = cand[i];
            if (i == top) continue;
            float iou = iou_soft(bt, box + (size_t)c * 4, area[t], area[c]);
            /* decay = exp(-iou^2 / sigma); iou == 0 gives exactly 1 */
            if (iou != 0) score[c] *= expf(-(iou * iou) / sigma);
            if (score[c] > min_score) cand[out++] = c;
        }
        alive = out;
    }
    return count;
}
