/*
 * Anchor boxes (docs/engine.md, "Anchors"), generated the way effdet's numpy code does
 * it: every quantity in double, rounded to float32 only when stored.
 */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "post/anchors.h"

/* Anchors per location the generator accepts (3 scales x 3 aspects in every EfficientDet). */
#define MAX_ANCHORS_PER_LOCATION 128

/* The reference's aspect ratios are Python doubles written in decimal (1.4, 0.7);
 * the arch stores them as float. Multiplying by the float would move some anchors by
 * one float32 ulp, so recover the shortest decimal that rounds to this float. */
static double aspect_as_decimal(float f) {
    char buf[32];
    for (int digits = 6; digits <= 9; digits++) {
        snprintf(buf, sizeof buf, "%.*g", digits, (double)f);
        double d = strtod(buf, NULL);
        if ((float)d == f) return d;
    }
    return (double)f;
}

static effdet_status check_arch(const effdet_arch *a, effdet_error *err) {
    if (a->max_level - a->min_level + 1 != EFFDET_NUM_LEVELS)
        return set_error(err, EFFDET_ERR_ARG, "anchors: levels %d..%d, expected %d levels", a->min_level,
                         a->max_level, EFFDET_NUM_LEVELS);
    if (a->image_h <= 0 || a->image_w <= 0)
        return set_error(err, EFFDET_ERR_ARG, "anchors: image size %dx%d", a->image_w, a->image_h);
    if (a->num_scales <= 0 || a->num_aspects <= 0 || a->num_aspects > ARCH_MAX_ASPECTS)
        return set_error(err, EFFDET_ERR_ARG, "anchors: num_scales %d, num_aspects %d", a->num_scales,
                         a->num_aspects);
    if (a->num_scales * a->num_aspects > MAX_ANCHORS_PER_LOCATION)
        return set_error(err, EFFDET_ERR_ARG,
                         "anchors: %d scales x %d aspects exceed %d anchors per location", a->num_scales,
                         a->num_aspects, MAX_ANCHORS_PER_LOCATION);
    if (a->num_anchors != a->num_scales * a->num_aspects)
        return set_error(err, EFFDET_ERR_ARG, "anchors: num_anchors %d != num_scales %d * num_aspects %d",
                         a->num_anchors, a->num_scales, a->num_aspects);
    if (a->num_classes <= 0) return set_error(err, EFFDET_ERR_ARG, "anchors: num_classes %d", a->num_classes);
    if (!(a->anchor_scale > 0))
        return set_error(err, EFFDET_ERR_ARG, "anchors: anchor_scale %g", a->anchor_scale);
    for (int l = 0; l < EFFDET_NUM_LEVELS; l++)
        if (a->level_h[l] <= 0 || a->level_w[l] <= 0)
            return set_error(err, EFFDET_ERR_ARG, "anchors: level P%d size %dx%d", a->min_level + l,
                             a->level_w[l], a->level_h[l]);
    return EFFDET_OK;
}

/* One level's anchors: row-major over (y, x), then a = octave * num_aspects + aspect. */
static void level_anchors(const effdet_arch *a, int l, float *out) {
    double stride_y = (double)a->image_h / a->level_h[l];
    double stride_x = (double)a->image_w / a->level_w[l];
    double half_h[MAX_ANCHORS_PER_LOCATION], half_w[MAX_ANCHORS_PER_LOCATION];
    int A = a->num_anchors;
    for (int k = 0; k < A; k++) {
        int octave = k / a->num_aspects, r = k % a->num_aspects;
        /* Same operation order as effdet: anchor_scale * stride * 2**(octave / num_scales),
         * then * aspect / 2.0. */
        double octave_scale = pow(2.0, (double)octave / a->num_scales);
        double base_x = a->anchor_scale * stride_x * octave_scale;
        double base_y = a->anchor_scale * stride_y * octave_scale;
        half_w[k] = base_x * aspect_as_decimal(a->aspect[r][0]) / 2.0;
        half_h[k] = base_y * aspect_as_decimal(a->aspect[r][1]) / 2.0;
    }
    for (int y = 0; y < a->level_h[l]; y++) {
        double cy = stride_y / 2 + y * stride_y; /* np.arange(stride / 2, size, stride) */
        for (int x = 0; x < a->level_w[l]; x++) {
            double cx = stride_x / 2 + x * stride_x;
            for (int k = 0; k < A; k++) {
                float *b = out + (((size_t)y * a->level_w[l] + x) * A + k) * 4;
                b[0] = (float)(cy - half_h[k]);
                b[1] = (float)(cx - half_w[k]);
                b[2] = (float)(cy + half_h[k]);
                b[3] = (float)(cx + half_w[k]);
            }
        }
    }
}

effdet_status anchors_build(anchor_grid *g, const effdet_arch *a, effdet_error *err) {
    memset(g, 0, sizeof *g);
    effdet_status st = check_arch(a, err);
    if (st != EFFDET_OK) return st;

    long long total = 0;
    for (int l = 0; l < EFFDET_NUM_LEVELS; l++) {
        g->level_h[l] = a->level_h[l];
        g->level_w[l] = a->level_w[l];
        g->level_offset[l] = (int)total;
        total += (long long)a->level_h[l] * a->level_w[l] * a->num_anchors;
    }
    /* top-k indexes (anchor, class) pairs with int32 flat indices. */
    if (total * a->num_classes > INT32_MAX)
        return set_error(err, EFFDET_ERR_ARG,
                         "anchors: %lld anchors x %d classes exceed the int32 index range", total,
                         a->num_classes);
    g->num_classes = a->num_classes;
    g->num_anchors = a->num_anchors;
    g->total = (int)total;
    g->boxes = malloc((size_t)total * 4 * sizeof(float));
    if (!g->boxes) return set_error(err, EFFDET_ERR_NOMEM, "anchors: %lld boxes", total);
    for (int l = 0; l < EFFDET_NUM_LEVELS; l++)
        level_anchors(a, l, g->boxes + (size_t)g->level_offset[l] * 4);
    return EFFDET_OK;
}

void anchors_free(anchor_grid *g) {
    if (!g) return;
    free(g->boxes);
    g->boxes = NULL;
}
