/*
 * Post-processing (docs/engine.md, "Post-processing"): top-k -> decode -> clip ->
 * sigmoid -> per-class NMS -> merge -> threshold -> cap, as effdet's DetBenchPredict does it, in float32.
 *
 * All working memory comes from the caller's scratch block, carved up by
 * scratch_layout(); nothing is allocated per call.
 */
#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include "post/nms.h"
#include "post/postprocess.h"
#include "post/rank.h"

typedef struct {
    uint64_t *keys; /* TOPK_MAX_PARTS x 2K: top-k candidate buffers, later soft-NMS sort keys + radix temp */
    topk_item *items;  /* K, descending logit */
    float *box;        /* K x 4: x1, y1, x2, y2 */
    float *area;       /* K */
    float *score;      /* K: sigmoid, decayed in place by soft-NMS */
    int32_t *by_class; /* K: candidate indices grouped by class, ascending within a class */
    int32_t *picked;   /* K: soft-NMS picks */
    float *picked_score;
    int32_t *class_start; /* C + 1 */
    uint8_t *keep;        /* K */
    uint8_t *include;     /* K */
    int32_t *cls;         /* K: hard NMS: class of each candidate */
    int32_t *next_kept;   /* K: hard NMS: per-class lists of kept candidates */
    int32_t *class_head;  /* C */
} scratch_layout;

static size_t align_up(size_t n) {
    return (n + 63) & ~(size_t)63;
}

/* Lays the arrays out from base (or, with base NULL, only measures). Returns the bytes used. */
static size_t carve_scratch(scratch_layout *s, void *base, int K, int C) {
    size_t off = 0;
#define CARVE(field, count)                                                                                  \
    do {                                                                                                     \
        s->field = base ? (void *)((char *)base + off) : NULL;                                               \
        off += align_up((size_t)(count) * sizeof *s->field);                                                 \
    } while (0)
    CARVE(keys, TOPK_MAX_PARTS * 2 * (size_t)K); /* topk_select() uses this first region, see postprocess.h */
    CARVE(items, K);
    CARVE(box, 4 * (size_t)K);
    CARVE(area, K);
    CARVE(score, K);
    CARVE(by_class, K);
    CARVE(picked, K);
    CARVE(picked_score, K);
    CARVE(class_start, (size_t)C + 1);
    CARVE(keep, K);
    CARVE(include, K);
    CARVE(cls, K);
    CARVE(next_kept, K);
    CARVE(class_head, C);
#undef CARVE
    return off;
}

size_t postprocess_scratch_bytes(const anchor_grid *g, int topk) {
    scratch_layout s;
    if (topk < 1) topk = 1;
    return carve_scratch(&s, NULL, topk, g->num_classes);
}

static const float *box_deltas(const anchor_grid *g, const head_outputs *h, int32_t anchor) {
    for (int l = EFFDET_NUM_LEVELS - 1; l > 0; l--)
        if (anchor >= g->level_offset[l]) return h->box[l] + (size_t)(anchor - g->level_offset[l]) * 4;
    return h->box[0] + (size_t)anchor * 4;
}

/* decode_box_outputs(): anchor (y1, x1, y2, x2) + deltas (ty, tx, th, tw) -> x1, y1, x2, y2.
 * No clamping of the deltas, no variance factors. */
static void decode_box(const float *anchor, const float *d, float *out) {
    float cya = (anchor[0] + anchor[2]) / 2, cxa = (anchor[1] + anchor[3]) / 2;
    float ha = anchor[2] - anchor[0], wa = anchor[3] - anchor[1];
    float w = expf(d[3]) * wa, h = expf(d[2]) * ha;
    float cy = d[0] * ha + cya, cx = d[1] * wa + cxa;
    out[0] = cx - w / 2;
    out[1] = cy - h / 2;
    out[2] = cx + w / 2;
    out[3] = cy + h / 2;
}

/* clip_boxes_xyxy(): clamp(min=0), then min(size). */
static float clip_coord(float v, float limit) {
    if (v < 0) v = 0;
    return v > limit ? limit : v;
}

static float sigmoid(float x) {
    return 1.0f / (1.0f + expf(-x));
}

static void decode_candidates(const anchor_grid *g, const head_outputs *h, const postprocess_params *p,
                              const scratch_layout *s, int n) {
    for (int i = 0; i < n; i++) {
        float *b = s->box + (size_t)i * 4;
        decode_box(g->boxes + (size_t)s->items[i].anchor * 4, box_deltas(g, h, s->items[i].anchor), b);
        if (p->clip) {
            b[0] = clip_coord(b[0], p->clip_w);
            b[1] = clip_coord(b[1], p->clip_h);
            b[2] = clip_coord(b[2], p->clip_w);
            b[3] = clip_coord(b[3], p->clip_h);
        }
        s->area[i] = box_area(b);
        s->score[i] = sigmoid(s->items[i].logit);
    }
}

/* Counting sort of the candidates that pass `include` by class, stable, so each class's
 * list stays in top-k order. Class c's candidates end up in by_class[class_start[c] ..
 * class_start[c + 1]). */
static void group_by_class(const scratch_layout *s, int n, int C, const uint8_t *include) {
    int32_t *start = s->class_start;
    for (int c = 0; c <= C; c++) start[c] = 0;
    for (int i = 0; i < n; i++)
        if (include[i]) start[s->items[i].cls + 1]++;
    for (int c = 0; c < C; c++) start[c + 1] += start[c];
    for (int i = 0; i < n; i++) /* start[c] runs as class c's cursor ... */
        if (include[i]) s->by_class[start[s->items[i].cls]++] = i;
    for (int c = C; c > 0; c--) start[c] = start[c - 1]; /* ... and ends at class c + 1's start */
    start[0] = 0;
}

static void write_detection(const scratch_layout *s, int i, float score, float scale, effdet_detection *d) {
    const float *b = s->box + (size_t)i * 4;
    d->x1 = b[0] * scale;
    d->y1 = b[1] * scale;
    d->x2 = b[2] * scale;
    d->y2 = b[3] * scale;
    d->score = score;
    d->class_id = s->items[i].cls + 1;
}

static int postprocess_hard(const postprocess_params *p, const scratch_layout *s, int n, int C,
                            effdet_detection *out) {
    /* A box below the threshold could only suppress boxes that score lower still, so
     * dropping it before NMS changes nothing above the threshold. NaN scores never pass. */
    for (int i = 0; i < n; i++) {
        s->include[i] = s->score[i] >= p->score_threshold;
        s->cls[i] = s->items[i].cls;
    }
    nms_hard(s->box, s->area, s->cls, s->include, n, C, p->max_detections, s->keep, s->class_head,
             s->next_kept);
    /* Scores follow the top-k order (sigmoid is monotonic), so merging the classes and
     * sorting by score, ties by top-k rank, is a walk in top-k order. */
    int count = 0;
    for (int i = 0; i < n; i++)
        if (s->keep[i]) write_detection(s, i, s->score[i], p->out_scale, &out[count++]);
    return count;
}

static int postprocess_soft(const postprocess_params *p, const scratch_layout *s, int n, int C,
                            effdet_detection *out) {
    for (int i = 0; i < n; i++) s->include[i] = 1;
    group_by_class(s, n, C, s->include);
    /* effdet picks globally, highest score first: candidate 0 is its first pick. */
    int picks = 0;
    for (int c = 0; c < C; c++) {
        int begin = s->class_start[c], count = s->class_start[c + 1] - begin;
        picks += nms_soft_class(s->box, s->area, s->by_class + begin, count, s->score, 0, SOFT_NMS_SIGMA,
                                SOFT_NMS_MIN_SCORE, s->picked + picks, s->picked_score + picks);
    }
    /* effdet's global pick order is the order of decayed scores, ties by top-k rank */
    for (int i = 0; i < picks; i++) s->keys[i] = rank_key(s->picked_score[i], (uint32_t)s->picked[i]);
    sort_keys_desc(s->keys, picks, s->keys + n);
    int count = 0;
    for (int i = 0; i < picks && count < p->max_detections; i++) {
        int32_t cand = (int32_t)rank_key_index(s->keys[i]);
        float score = s->score[cand];
        if (!(score >= p->score_threshold)) break; /* sorted: all later ones are lower */
        write_detection(s, cand, score, p->out_scale, &out[count++]);
    }
    return count;
}

int postprocess(const anchor_grid *g, const head_outputs *h, const postprocess_params *p, void *scratch,
                effdet_detection *out) {
    if (p->topk <= 0 || p->max_detections <= 0) return 0;
    scratch_layout s;
    carve_scratch(&s, scratch, p->topk, g->num_classes);
    int n = topk_select_mt(g, h, p->topk, p->class_mask, s.items, s.keys, p->tp);
    decode_candidates(g, h, p, &s, n);
    if (p->nms == EFFDET_NMS_SOFT) return postprocess_soft(p, &s, n, g->num_classes, out);
    return postprocess_hard(p, &s, n, g->num_classes, out);
}
