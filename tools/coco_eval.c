/*
 * COCO bbox evaluation as pycocotools' COCOeval computes it (cocoapi PythonAPI
 * cocoeval.py + maskApi.c bbIou). The rules, which decide the last digits:
 *
 *  - Parameters: IoU thresholds linspace(.5, .95, 10), recall points linspace(0, 1, 101)
 *    (numpy's i*step + start: 0.35 is 0.35000000000000003), maxDets 1/10/100, area ranges
 *    all [0, 1e10], small [0, 32^2], medium [32^2, 96^2], large [96^2, 1e10], inclusive
 *    at both ends. A ground truth's area is its annotation's `area`; a detection's is w*h.
 *  - Per image and category ("cell"): detections sorted by score, stable, cut to 100;
 *    ground truth ignored when crowd or outside the area range, and sorted ignored-last
 *    (stable). Each detection, best score first, takes the unmatched ground truth of
 *    highest IoU >= the threshold (a later one with equal IoU wins; a crowd region can
 *    be taken again and again); once it holds a regular one it stops at the first
 *    ignored one. A detection matched to an ignored ground truth is ignored; an unmatched
 *    one outside the area range is ignored.
 *  - Per category, area range and maxDet: the cells' first maxDet detections, image by
 *    image in id order, stable-sorted by score; cumulative TP/FP; precision made
 *    monotone from the right and read at the first index whose recall >= each recall
 *    point (0 beyond the last). -1 where the category has no unignored ground truth.
 *  - Summary: means over every entry > -1.
 *
 * Floating point: IoU and the thresholds must round exactly as numpy's do, so this file
 * is built with -ffp-contract=off (mk/eval.mk): a fused multiply-add would change the
 * last bit of an IoU that sits exactly on a threshold.
 */
#include "coco_eval.h"

#include <errno.h>
#include <json-c/json.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *const coco_stat_names[COCO_NUM_STATS] = {"AP",  "AP50", "AP75",  "APs", "APm", "APl",
                                                     "AR1", "AR10", "AR100", "ARs", "ARm", "ARl"};

static const int max_dets[COCO_NUM_MAXDET] = {1, 10, 100};
static const double area_lo[COCO_NUM_AREA] = {0.0, 0.0, 32.0 * 32.0, 96.0 * 96.0};
static const double area_hi[COCO_NUM_AREA] = {1e10, 32.0 * 32.0, 96.0 * 96.0, 1e10};

static int fail(char *err, size_t errlen, const char *fmt, ...) {
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

double coco_iou_threshold(int t) {
    if (t >= COCO_NUM_IOU - 1) return 0.95; /* linspace sets the end point exactly */
    double step = (0.95 - 0.5) / (COCO_NUM_IOU - 1);
    double y = (double)t * step;
    return y + 0.5;
}

double coco_recall_threshold(int r) {
    if (r >= COCO_NUM_RECALL - 1) return 1.0;
    double step = 1.0 / (COCO_NUM_RECALL - 1);
    return (double)r * step;
}

double coco_iou(const coco_box *dt, const coco_box *gt, int crowd) {
    double w = fmin(dt->w + dt->x, gt->w + gt->x) - fmax(dt->x, gt->x);
    if (w <= 0) return 0;
    double h = fmin(dt->h + dt->y, gt->h + gt->y) - fmax(dt->y, gt->y);
    if (h <= 0) return 0;
    double inter = w * h, da = dt->w * dt->h, ga = gt->w * gt->h;
    double uni = crowd ? da : da + ga - inter;
    return inter / uni;
}

/* ------------------------------------------------------------------ parsing */

static json_object *parse_json(const char *json, size_t len, const char *where, char *err, size_t errlen) {
    if (len > INT_MAX) {
        fail(err, errlen, "%s: %zu bytes is too large", where, len);
        return NULL;
    }
    json_tokener *tok = json_tokener_new();
    if (!tok) {
        fail(err, errlen, "%s: out of memory", where);
        return NULL;
    }
    json_object *root = json_tokener_parse_ex(tok, json, (int)len);
    enum json_tokener_error e = json_tokener_get_error(tok);
    size_t end = json_tokener_get_parse_end(tok);
    json_tokener_free(tok);
    if (!root || e != json_tokener_success) {
        json_object_put(root);
        if (e == json_tokener_continue || e == json_tokener_success)
            fail(err, errlen, "%s: not valid JSON: truncated after %zu bytes", where, len);
        else
            fail(err, errlen, "%s: not valid JSON: %s near byte %zu", where, json_tokener_error_desc(e), end);
        return NULL;
    }
    for (size_t i = end; i < len; i++)
        if (!strchr(" \t\r\n", json[i])) {
            json_object_put(root);
            fail(err, errlen, "%s: not valid JSON: unexpected bytes after the end at byte %zu", where, i);
            return NULL;
        }
    return root;
}

static int get_id(json_object *o, const char *key, long long *out) {
    json_object *v;
    if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_int)) return -1;
    errno = 0;
    *out = json_object_get_int64(v);
    /* json-c clamps out-of-range integers and flags them in errno */
    return errno ? -1 : 0;
}

static int get_number(json_object *v, double *out) {
    if (!json_object_is_type(v, json_type_int) && !json_object_is_type(v, json_type_double)) return -1;
    *out = json_object_get_double(v);
    return isfinite(*out) ? 0 : -1;
}

static int get_bbox(json_object *o, coco_box *b) {
    json_object *v;
    if (!json_object_object_get_ex(o, "bbox", &v) || !json_object_is_type(v, json_type_array) ||
        json_object_array_length(v) != 4)
        return -1;
    double x[4];
    for (int i = 0; i < 4; i++)
        if (get_number(json_object_array_get_idx(v, (size_t)i), &x[i])) return -1;
    b->x = x[0], b->y = x[1], b->w = x[2], b->h = x[3];
    return 0;
}

/* An id with its index, sorted by id then index (so that qsort's order is stable). */
typedef struct {
    long long id;
    int index;
} id_index;

static int cmp_id_index(const void *a, const void *b) {
    const id_index *x = a, *y = b;
    if (x->id != y->id) return x->id < y->id ? -1 : 1;
    return x->index - y->index;
}

/* Fills order[] with 0..n-1 sorted by ids[]; returns the index of a duplicate id or -1. */
static int sort_by_id(const long long *ids, int n, int *order) {
    id_index *tmp = malloc(sizeof *tmp * (size_t)(n ? n : 1));
    if (!tmp) return -2;
    for (int i = 0; i < n; i++) tmp[i].id = ids[i], tmp[i].index = i;
    qsort(tmp, (size_t)n, sizeof *tmp, cmp_id_index);
    int dup = -1;
    for (int i = 0; i < n; i++) {
        order[i] = tmp[i].index;
        if (i && tmp[i].id == tmp[i - 1].id && dup < 0) dup = tmp[i].index;
    }
    free(tmp);
    return dup;
}

void coco_dataset_free(coco_dataset *d) {
    if (!d) return;
    for (int i = 0; i < d->num_images; i++) free(d->images[i].file_name);
    for (int i = 0; i < d->num_categories; i++) free(d->categories[i].name);
    free(d->images);
    free(d->categories);
    free(d->gts);
    free(d->image_order);
    free(d->category_order);
    memset(d, 0, sizeof *d);
}

/* Binary search over ids in `order`; -1 when absent. */
static int find_sorted(const int *order, int n, long long id, long long (*id_of)(const coco_dataset *, int),
                       const coco_dataset *d) {
    int lo = 0, hi = n - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        long long v = id_of(d, order[mid]);
        if (v == id) return order[mid];
        if (v < id)
            lo = mid + 1;
        else
            hi = mid - 1;
    }
    return -1;
}

static long long image_id_of(const coco_dataset *d, int i) {
    return d->images[i].id;
}
static long long category_id_of(const coco_dataset *d, int i) {
    return d->categories[i].id;
}

int coco_dataset_find_image(const coco_dataset *d, long long image_id) {
    return find_sorted(d->image_order, d->num_images, image_id, image_id_of, d);
}

static int find_category(const coco_dataset *d, long long category_id) {
    return find_sorted(d->category_order, d->num_categories, category_id, category_id_of, d);
}

static json_object *get_array(json_object *root, const char *key) {
    json_object *v;
    if (!json_object_object_get_ex(root, key, &v) || !json_object_is_type(v, json_type_array)) return NULL;
    return v;
}

static char *dup_string(json_object *o, const char *key) {
    json_object *v;
    if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_string)) return NULL;
    return strdup(json_object_get_string(v));
}

static int parse_images(json_object *arr, const char *where, coco_dataset *d, char *err, size_t errlen) {
    size_t n = json_object_array_length(arr);
    if (n > INT_MAX / 2) return fail(err, errlen, "%s: too many images", where);
    d->images = calloc(n ? n : 1, sizeof *d->images);
    if (!d->images) return fail(err, errlen, "%s: out of memory", where);
    for (size_t i = 0; i < n; i++) {
        json_object *o = json_object_array_get_idx(arr, i), *v;
        coco_image *im = &d->images[i];
        d->num_images = (int)i + 1;
        if (!json_object_is_type(o, json_type_object))
            return fail(err, errlen, "%s: images[%zu]: expected an object", where, i);
        if (get_id(o, "id", &im->id))
            return fail(err, errlen, "%s: images[%zu]: id: expected an integer", where, i);
        if (json_object_object_get_ex(o, "file_name", &v)) {
            if (!json_object_is_type(v, json_type_string))
                return fail(err, errlen, "%s: images[%zu]: file_name: expected a string", where, i);
            if (!(im->file_name = strdup(json_object_get_string(v))))
                return fail(err, errlen, "%s: out of memory", where);
        }
        if (json_object_object_get_ex(o, "width", &v) && json_object_is_type(v, json_type_int))
            im->width = json_object_get_int(v);
        if (json_object_object_get_ex(o, "height", &v) && json_object_is_type(v, json_type_int))
            im->height = json_object_get_int(v);
    }
    return 0;
}

static int parse_categories(json_object *arr, const char *where, coco_dataset *d, char *err, size_t errlen) {
    size_t n = json_object_array_length(arr);
    if (n > INT_MAX / 2) return fail(err, errlen, "%s: too many categories", where);
    d->categories = calloc(n ? n : 1, sizeof *d->categories);
    if (!d->categories) return fail(err, errlen, "%s: out of memory", where);
    for (size_t i = 0; i < n; i++) {
        json_object *o = json_object_array_get_idx(arr, i);
        coco_category *c = &d->categories[i];
        d->num_categories = (int)i + 1;
        long long id;
        if (!json_object_is_type(o, json_type_object))
            return fail(err, errlen, "%s: categories[%zu]: expected an object", where, i);
        if (get_id(o, "id", &id) || id < INT_MIN || id > INT_MAX)
            return fail(err, errlen, "%s: categories[%zu]: id: expected an integer", where, i);
        c->id = (int)id;
        if (!(c->name = dup_string(o, "name")))
            return fail(err, errlen, "%s: categories[%zu]: name: expected a string", where, i);
    }
    return 0;
}

static int parse_annotations(json_object *arr, const char *where, coco_dataset *d, char *err, size_t errlen) {
    size_t n = json_object_array_length(arr);
    if (n > INT_MAX / 2) return fail(err, errlen, "%s: too many annotations", where);
    d->gts = calloc(n ? n : 1, sizeof *d->gts);
    if (!d->gts) return fail(err, errlen, "%s: out of memory", where);
    for (size_t i = 0; i < n; i++) {
        json_object *o = json_object_array_get_idx(arr, i), *v;
        coco_gt *g = &d->gts[i];
        long long cat;
        d->num_gts = (int)i + 1;
        if (!json_object_is_type(o, json_type_object))
            return fail(err, errlen, "%s: annotations[%zu]: expected an object", where, i);
        if (get_id(o, "id", &g->id))
            return fail(err, errlen, "%s: annotations[%zu]: id: expected an integer", where, i);
        if (get_id(o, "image_id", &g->image_id))
            return fail(err, errlen, "%s: annotations[%zu]: image_id: expected an integer", where, i);
        if (coco_dataset_find_image(d, g->image_id) < 0)
            return fail(err, errlen, "%s: annotations[%zu]: image_id %lld is not in images", where, i,
                        g->image_id);
        if (get_id(o, "category_id", &cat) || find_category(d, cat) < 0)
            return fail(err, errlen, "%s: annotations[%zu]: category_id: expected one of the categories' ids",
                        where, i);
        g->category_id = (int)cat;
        if (get_bbox(o, &g->bbox))
            return fail(err, errlen, "%s: annotations[%zu]: bbox: expected [x, y, w, h] (4 numbers)", where,
                        i);
        if (json_object_object_get_ex(o, "area", &v)) {
            if (get_number(v, &g->area))
                return fail(err, errlen, "%s: annotations[%zu]: area: expected a number", where, i);
        } else {
            g->area = g->bbox.w * g->bbox.h;
        }
        if (json_object_object_get_ex(o, "iscrowd", &v)) {
            if (json_object_is_type(v, json_type_int) || json_object_is_type(v, json_type_boolean))
                g->iscrowd = json_object_get_int(v) != 0;
            else
                return fail(err, errlen, "%s: annotations[%zu]: iscrowd: expected 0 or 1", where, i);
        }
        if (g->id == 0) d->zero_id_gts++;
    }
    return 0;
}

/* Builds the sorted id indices; refuses duplicate ids (pycocotools would silently keep
 * the last one, which loses annotations or images). */
static int index_ids(coco_dataset *d, const char *where, char *err, size_t errlen) {
    int n = d->num_images > d->num_categories ? d->num_images : d->num_categories;
    long long *ids = malloc(sizeof *ids * (size_t)(n ? n : 1));
    d->image_order = malloc(sizeof(int) * (size_t)(d->num_images ? d->num_images : 1));
    d->category_order = malloc(sizeof(int) * (size_t)(d->num_categories ? d->num_categories : 1));
    if (!ids || !d->image_order || !d->category_order) {
        free(ids);
        return fail(err, errlen, "%s: out of memory", where);
    }
    for (int i = 0; i < d->num_images; i++) ids[i] = d->images[i].id;
    int dup = sort_by_id(ids, d->num_images, d->image_order);
    if (dup >= 0) {
        free(ids);
        return fail(err, errlen, "%s: images[%d]: id %lld appears twice", where, dup, d->images[dup].id);
    }
    for (int i = 0; i < d->num_categories; i++) ids[i] = d->categories[i].id;
    int cdup = dup == -2 ? -2 : sort_by_id(ids, d->num_categories, d->category_order);
    free(ids);
    if (dup == -2 || cdup == -2) return fail(err, errlen, "%s: out of memory", where);
    if (cdup >= 0)
        return fail(err, errlen, "%s: categories[%d]: id %d appears twice", where, cdup,
                    d->categories[cdup].id);
    return 0;
}

static int check_unique_gt_ids(coco_dataset *d, const char *where, char *err, size_t errlen) {
    long long *ids = malloc(sizeof *ids * (size_t)(d->num_gts ? d->num_gts : 1));
    int *order = malloc(sizeof *order * (size_t)(d->num_gts ? d->num_gts : 1));
    int rc = 0;
    if (!ids || !order) {
        rc = fail(err, errlen, "%s: out of memory", where);
    } else {
        for (int i = 0; i < d->num_gts; i++) ids[i] = d->gts[i].id;
        int dup = sort_by_id(ids, d->num_gts, order);
        if (dup == -2)
            rc = fail(err, errlen, "%s: out of memory", where);
        else if (dup >= 0)
            rc = fail(err, errlen, "%s: annotations[%d]: id %lld appears twice", where, dup, d->gts[dup].id);
    }
    free(ids);
    free(order);
    return rc;
}

int coco_dataset_parse(const char *json, size_t len, const char *where, coco_dataset *out, char *err,
                       size_t errlen) {
    memset(out, 0, sizeof *out);
    json_object *root = parse_json(json, len, where, err, errlen);
    if (!root) return -1;
    json_object *images = get_array(root, "images"), *anns = get_array(root, "annotations"),
                *cats = get_array(root, "categories");
    int rc = -1;
    if (!json_object_is_type(root, json_type_object))
        fail(err, errlen, "%s: expected a JSON object with images, annotations and categories", where);
    else if (!images)
        fail(err, errlen, "%s: images: expected an array", where);
    else if (!anns)
        fail(err, errlen, "%s: annotations: expected an array", where);
    else if (!cats)
        fail(err, errlen, "%s: categories: expected an array", where);
    else if (parse_images(images, where, out, err, errlen) == 0 &&
             parse_categories(cats, where, out, err, errlen) == 0 &&
             index_ids(out, where, err, errlen) == 0 &&
             parse_annotations(anns, where, out, err, errlen) == 0 &&
             check_unique_gt_ids(out, where, err, errlen) == 0)
        rc = 0;
    json_object_put(root);
    if (rc) coco_dataset_free(out);
    return rc;
}

int coco_results_parse(const char *json, size_t len, const char *where, const coco_dataset *d,
                       coco_det **dets, size_t *count, char *err, size_t errlen) {
    *dets = NULL;
    *count = 0;
    json_object *root = parse_json(json, len, where, err, errlen);
    if (!root) return -1;
    int rc = -1;
    coco_det *out = NULL;
    if (!json_object_is_type(root, json_type_array)) {
        fail(err, errlen, "%s: expected a JSON array of detections (COCO results format)", where);
        goto done;
    }
    size_t n = json_object_array_length(root);
    out = malloc(sizeof *out * (n ? n : 1));
    if (!out) {
        fail(err, errlen, "%s: out of memory", where);
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        json_object *o = json_object_array_get_idx(root, i), *v;
        coco_det *r = &out[i];
        long long cat;
        if (!json_object_is_type(o, json_type_object)) {
            fail(err, errlen, "%s: [%zu]: expected an object", where, i);
            goto done;
        }
        if (get_id(o, "image_id", &r->image_id) || coco_dataset_find_image(d, r->image_id) < 0) {
            fail(err, errlen, "%s: [%zu]: image_id: expected one of the annotation file's image ids", where,
                 i);
            goto done;
        }
        if (get_id(o, "category_id", &cat) || cat < INT_MIN || cat > INT_MAX) {
            fail(err, errlen, "%s: [%zu]: category_id: expected an integer", where, i);
            goto done;
        }
        r->category_id = (int)cat;
        if (get_bbox(o, &r->bbox)) {
            fail(err, errlen, "%s: [%zu]: bbox: expected [x, y, w, h] (4 numbers)", where, i);
            goto done;
        }
        if (!json_object_object_get_ex(o, "score", &v) || get_number(v, &r->score)) {
            fail(err, errlen, "%s: [%zu]: score: expected a number", where, i);
            goto done;
        }
    }
    *dets = out;
    *count = n;
    out = NULL;
    rc = 0;
done:
    free(out);
    json_object_put(root);
    return rc;
}

/* --------------------------------------------------------------- evaluation */

/* A ground truth or detection placed in its cell: sort key (category rank, image rank),
 * then (detections) score descending, then position in the input (a stable sort). */
typedef struct {
    int krank, irank;
    double score;
    size_t pos;
} cell_ref;

static int cmp_cell_ref(const void *a, const void *b) {
    const cell_ref *x = a, *y = b;
    if (x->krank != y->krank) return x->krank < y->krank ? -1 : 1;
    if (x->irank != y->irank) return x->irank < y->irank ? -1 : 1;
    if (x->score != y->score) return x->score > y->score ? -1 : 1;
    return x->pos < y->pos ? -1 : x->pos > y->pos;
}

/* One evaluated cell: its detections are evaluated[start .. start+count-1]. */
typedef struct {
    int krank;
    size_t start;
    int count;
    int npig[COCO_NUM_AREA]; /* ground truth not ignored, per area range */
} cell_eval;

/* Per evaluated detection and area range: bit t of `tp` = matched (to a ground truth
 * with a non-zero id) at threshold t, bit t of `ig` = ignored at threshold t. */
typedef struct {
    uint16_t tp[COCO_NUM_AREA], ig[COCO_NUM_AREA];
} det_flags;

typedef struct {
    const coco_dataset *d;
    const coco_det *dets;
    int *img_rank, *cat_rank; /* rank by id of each image / category index */
    cell_ref *gref, *dref;
    size_t ng, nd;
    cell_eval *cells;
    size_t ncells;
    double *score;    /* per evaluated detection */
    det_flags *flags; /* per evaluated detection */
    size_t nevaluated;
    /* per-cell scratch, sized for the largest cell */
    double *iou;
    int *gorder, *gtm;
    uint8_t *gig;
} eval_state;

/* Matching in one cell for one area range (cocoeval.py evaluateImg). `gts` are the
 * cell's ground truth in file order, `dts` its detections best first (at most 100),
 * iou[d * G + g] their IoU. */
static void match_cell(eval_state *s, const coco_gt *const *gts, int G, const coco_det *const *dts, int D,
                       int a, det_flags *fl, int *npig) {
    const double *iou = s->iou;
    int *order = s->gorder, *gtm = s->gtm;
    uint8_t *gig = s->gig;
    int n = 0;
    /* ground truth not ignored first, then ignored, each in file order (stable argsort) */
    for (int pass = 0; pass < 2; pass++)
        for (int g = 0; g < G; g++) {
            int ig = gts[g]->iscrowd || gts[g]->area < area_lo[a] || gts[g]->area > area_hi[a];
            if (ig == pass) order[n] = g, gig[n++] = (uint8_t)ig;
        }
    *npig = 0;
    for (int g = 0; g < G; g++) *npig += !gig[g];
    for (int dd = 0; dd < D; dd++) fl[dd].tp[a] = fl[dd].ig[a] = 0;
    for (int t = 0; t < COCO_NUM_IOU; t++) {
        for (int g = 0; g < G; g++) gtm[g] = 0;
        for (int dd = 0; dd < D; dd++) {
            double best = fmin(coco_iou_threshold(t), 1 - 1e-10);
            int m = -1;
            for (int g = 0; g < G; g++) {
                const coco_gt *gt = gts[order[g]];
                if (gtm[g] && !gt->iscrowd) continue;
                if (m > -1 && !gig[m] && gig[g]) break;
                double v = iou[(size_t)dd * G + order[g]];
                if (v < best) continue;
                best = v;
                m = g;
            }
            if (m == -1) continue;
            if (gig[m]) fl[dd].ig[a] |= (uint16_t)(1u << t);
            /* pycocotools stores the matched ground truth's id and later tests it for
             * non-zero: a match to id 0 counts as no match */
            if (gts[order[m]]->id != 0) fl[dd].tp[a] |= (uint16_t)(1u << t);
            gtm[m] = 1;
        }
    }
    for (int dd = 0; dd < D; dd++) {
        double area = dts[dd]->bbox.w * dts[dd]->bbox.h;
        if (area < area_lo[a] || area > area_hi[a])
            fl[dd].ig[a] |= (uint16_t)~fl[dd].tp[a] & ((1u << COCO_NUM_IOU) - 1);
    }
}

static int alloc_scratch(eval_state *s, int G, int D) {
    size_t gn = (size_t)(G ? G : 1);
    free(s->iou), free(s->gorder), free(s->gtm), free(s->gig);
    s->iou = malloc(sizeof(double) * gn * (size_t)(D ? D : 1));
    s->gorder = malloc(sizeof(int) * gn);
    s->gtm = malloc(sizeof(int) * gn);
    s->gig = malloc(gn);
    return s->iou && s->gorder && s->gtm && s->gig ? 0 : -1;
}

/* Evaluates every cell (every image/category pair with ground truth or detections). */
static int evaluate_cells(eval_state *s) {
    size_t gi = 0, di = 0;
    int cap_g = -1, cap_d = -1;
    const coco_gt **gts = malloc(sizeof(const coco_gt *) * (s->ng ? s->ng : 1));
    const coco_det **dts = malloc(sizeof(const coco_det *) * 100);
    s->cells = malloc(sizeof *s->cells * (s->ng + s->nd + 1));
    s->score = malloc(sizeof *s->score * (s->nd ? s->nd : 1));
    s->flags = malloc(sizeof *s->flags * (s->nd ? s->nd : 1));
    if (!gts || !dts || !s->cells || !s->score || !s->flags) goto nomem;
    while (gi < s->ng || di < s->nd) {
        /* the next cell in (category, image) order: the smaller of the two heads */
        int from_g = di >= s->nd;
        if (gi < s->ng && !from_g) {
            const cell_ref *g0 = &s->gref[gi], *d0 = &s->dref[di];
            from_g = g0->krank < d0->krank || (g0->krank == d0->krank && g0->irank <= d0->irank);
        }
        const cell_ref key = from_g ? s->gref[gi] : s->dref[di];
        int krank = key.krank, irank = key.irank, G = 0, D = 0;
        while (gi < s->ng && s->gref[gi].krank == krank && s->gref[gi].irank == irank)
            gts[G++] = &s->d->gts[s->gref[gi++].pos];
        while (di < s->nd && s->dref[di].krank == krank && s->dref[di].irank == irank) {
            if (D < 100) dts[D++] = &s->dets[s->dref[di].pos]; /* maxDets[-1]: the rest never count */
            di++;
        }
        if (G > cap_g || D > cap_d) {
            cap_g = G > cap_g ? G : cap_g;
            cap_d = D > cap_d ? D : cap_d;
            if (alloc_scratch(s, cap_g, cap_d)) goto nomem;
        }
        for (int dd = 0; dd < D; dd++)
            for (int g = 0; g < G; g++)
                s->iou[(size_t)dd * G + g] = coco_iou(&dts[dd]->bbox, &gts[g]->bbox, gts[g]->iscrowd);
        cell_eval *c = &s->cells[s->ncells++];
        c->krank = krank;
        c->start = s->nevaluated;
        c->count = D;
        for (int dd = 0; dd < D; dd++) s->score[s->nevaluated + (size_t)dd] = dts[dd]->score;
        for (int a = 0; a < COCO_NUM_AREA; a++)
            match_cell(s, gts, G, dts, D, a, &s->flags[s->nevaluated], &c->npig[a]);
        s->nevaluated += (size_t)D;
    }
    free(gts);
    free(dts);
    return 0;
nomem:
    free(gts);
    free(dts);
    return -1;
}

typedef struct {
    double score;
    size_t pos; /* position in the concatenation: keeps the sort stable */
    size_t e;   /* evaluated detection */
} acc_ref;

static int cmp_acc_ref(const void *a, const void *b) {
    const acc_ref *x = a, *y = b;
    if (x->score != y->score) return x->score > y->score ? -1 : 1;
    return x->pos < y->pos ? -1 : x->pos > y->pos;
}

static size_t pidx(int t, int r, int k, int a, int m, int K) {
    return ((((size_t)t * COCO_NUM_RECALL + (size_t)r) * (size_t)K + (size_t)k) * COCO_NUM_AREA + (size_t)a) *
               COCO_NUM_MAXDET +
           (size_t)m;
}

static size_t ridx(int t, int k, int a, int m, int K) {
    return (((size_t)t * (size_t)K + (size_t)k) * COCO_NUM_AREA + (size_t)a) * COCO_NUM_MAXDET + (size_t)m;
}

/* One precision/recall curve (cocoeval.py accumulate, inner loop over thresholds). */
static void accumulate_curve(const eval_state *s, const acc_ref *refs, size_t n, int npig, int k, int a,
                             int m, int K, double *rc, double *pr, coco_metrics *out) {
    for (int t = 0; t < COCO_NUM_IOU; t++) {
        double tp = 0, fp = 0;
        for (size_t i = 0; i < n; i++) {
            const det_flags *f = &s->flags[refs[i].e];
            if (!(f->ig[a] >> t & 1)) {
                if (f->tp[a] >> t & 1)
                    tp += 1;
                else
                    fp += 1;
            }
            rc[i] = tp / npig;
            pr[i] = tp / (fp + tp + 2.220446049250313e-16); /* np.spacing(1) */
        }
        out->recall[ridx(t, k, a, m, K)] = n ? rc[n - 1] : 0;
        for (size_t i = n; i-- > 1;)
            if (pr[i] > pr[i - 1]) pr[i - 1] = pr[i];
        size_t i = 0;
        for (int r = 0; r < COCO_NUM_RECALL; r++) {
            double thr = coco_recall_threshold(r);
            while (i < n && rc[i] < thr) i++; /* searchsorted(rc, thr, side='left') */
            out->precision[pidx(t, r, k, a, m, K)] = i < n ? pr[i] : 0;
        }
    }
}

static int accumulate(const eval_state *s, coco_metrics *out) {
    int K = s->d->num_categories;
    acc_ref *refs = malloc(sizeof *refs * (s->nevaluated ? s->nevaluated : 1));
    double *rc = malloc(sizeof *rc * (s->nevaluated ? s->nevaluated : 1));
    double *pr = malloc(sizeof *pr * (s->nevaluated ? s->nevaluated : 1));
    if (!refs || !rc || !pr) {
        free(refs), free(rc), free(pr);
        return -1;
    }
    size_t c0 = 0;
    while (c0 < s->ncells) {
        int k = s->cells[c0].krank;
        size_t c1 = c0;
        while (c1 < s->ncells && s->cells[c1].krank == k) c1++;
        for (int a = 0; a < COCO_NUM_AREA; a++) {
            int npig = 0;
            for (size_t c = c0; c < c1; c++) npig += s->cells[c].npig[a];
            if (npig == 0) continue;
            for (int m = 0; m < COCO_NUM_MAXDET; m++) {
                size_t n = 0;
                for (size_t c = c0; c < c1; c++) {
                    int take = s->cells[c].count < max_dets[m] ? s->cells[c].count : max_dets[m];
                    for (int j = 0; j < take; j++, n++) {
                        refs[n].e = s->cells[c].start + (size_t)j;
                        refs[n].score = s->score[refs[n].e];
                        refs[n].pos = n;
                    }
                }
                qsort(refs, n, sizeof *refs, cmp_acc_ref);
                accumulate_curve(s, refs, n, npig, k, a, m, K, rc, pr, out);
            }
        }
        c0 = c1;
    }
    free(refs), free(rc), free(pr);
    return 0;
}

/* Mean of the entries > -1 of precision (ap) or recall over the selected thresholds,
 * area range a and maxDet index m, all categories or one (k >= 0); -1 when none. */
static double summarize(const coco_metrics *mt, int ap, int t_only, int a, int m, int k_only) {
    int K = mt->num_categories;
    double sum = 0;
    long n = 0;
    for (int t = 0; t < COCO_NUM_IOU; t++) {
        if (t_only >= 0 && t != t_only) continue;
        for (int k = 0; k < K; k++) {
            if (k_only >= 0 && k != k_only) continue;
            if (!ap) {
                double v = mt->recall[ridx(t, k, a, m, K)];
                if (v > -1) sum += v, n++;
                continue;
            }
            for (int r = 0; r < COCO_NUM_RECALL; r++) {
                double v = mt->precision[pidx(t, r, k, a, m, K)];
                if (v > -1) sum += v, n++;
            }
        }
    }
    return n ? sum / (double)n : -1;
}

static void fill_stats(coco_metrics *mt) {
    double *st = mt->stats;
    st[0] = summarize(mt, 1, -1, 0, 2, -1);
    st[1] = summarize(mt, 1, 0, 0, 2, -1); /* IoU .50 */
    st[2] = summarize(mt, 1, 5, 0, 2, -1); /* IoU .75 */
    for (int a = 1; a < COCO_NUM_AREA; a++) st[2 + a] = summarize(mt, 1, -1, a, 2, -1);
    for (int m = 0; m < COCO_NUM_MAXDET; m++) st[6 + m] = summarize(mt, 0, -1, 0, m, -1);
    for (int a = 1; a < COCO_NUM_AREA; a++) st[8 + a] = summarize(mt, 0, -1, a, 2, -1);
}

void coco_metrics_free(coco_metrics *m) {
    if (!m) return;
    free(m->category_ap);
    free(m->category_gts);
    free(m->precision);
    free(m->recall);
    memset(m, 0, sizeof *m);
}

static void free_state(eval_state *s) {
    free(s->img_rank), free(s->cat_rank), free(s->gref), free(s->dref), free(s->cells);
    free(s->score), free(s->flags), free(s->iou), free(s->gorder), free(s->gtm), free(s->gig);
}

/* Places ground truth and detections in their cells, sorted (see cmp_cell_ref). */
static int place(eval_state *s, char *err, size_t errlen) {
    const coco_dataset *d = s->d;
    for (int r = 0; r < d->num_images; r++) s->img_rank[d->image_order[r]] = r;
    for (int r = 0; r < d->num_categories; r++) s->cat_rank[d->category_order[r]] = r;
    for (int g = 0; g < d->num_gts; g++) {
        int im = coco_dataset_find_image(d, d->gts[g].image_id), k = find_category(d, d->gts[g].category_id);
        if (im < 0 || k < 0)
            return fail(err, errlen, "annotation %lld: unknown image or category id", d->gts[g].id);
        s->gref[s->ng++] = (cell_ref){s->cat_rank[k], s->img_rank[im], 0, (size_t)g};
    }
    for (size_t j = 0; j < s->nd; j++) {
        int im = coco_dataset_find_image(d, s->dets[j].image_id),
            k = find_category(d, s->dets[j].category_id);
        if (im < 0)
            return fail(err, errlen, "detection %zu: image_id %lld is not in the annotations", j,
                        s->dets[j].image_id);
        s->dref[j] = (cell_ref){k < 0 ? -1 : s->cat_rank[k], s->img_rank[im], s->dets[j].score, j};
    }
    /* detections of categories that are not evaluated sort first and are dropped */
    qsort(s->gref, s->ng, sizeof *s->gref, cmp_cell_ref);
    qsort(s->dref, s->nd, sizeof *s->dref, cmp_cell_ref);
    size_t skip = 0;
    while (skip < s->nd && s->dref[skip].krank < 0) skip++;
    memmove(s->dref, s->dref + skip, sizeof *s->dref * (s->nd - skip));
    s->nd -= skip;
    return 0;
}

int coco_evaluate(const coco_dataset *d, const coco_det *dets, size_t count, coco_metrics *out, char *err,
                  size_t errlen) {
    memset(out, 0, sizeof *out);
    int K = d->num_categories;
    size_t np = (size_t)COCO_NUM_IOU * COCO_NUM_RECALL * (size_t)K * COCO_NUM_AREA * COCO_NUM_MAXDET;
    size_t nr = (size_t)COCO_NUM_IOU * (size_t)K * COCO_NUM_AREA * COCO_NUM_MAXDET;
    eval_state s = {.d = d, .dets = dets, .nd = count};
    s.img_rank = malloc(sizeof(int) * (size_t)(d->num_images ? d->num_images : 1));
    s.cat_rank = malloc(sizeof(int) * (size_t)(K ? K : 1));
    s.gref = calloc((size_t)(d->num_gts ? d->num_gts : 1), sizeof *s.gref);
    s.dref = calloc(count ? count : 1, sizeof *s.dref);
    out->num_categories = K;
    out->precision = malloc(sizeof(double) * (np + 1));
    out->recall = malloc(sizeof(double) * (nr + 1));
    out->category_ap = malloc(sizeof(double) * (size_t)(K ? K : 1));
    out->category_gts = calloc((size_t)(K ? K : 1), sizeof(int));
    int rc = -1;
    if (!s.img_rank || !s.cat_rank || !s.gref || !s.dref || !out->precision || !out->recall ||
        !out->category_ap || !out->category_gts) {
        fail(err, errlen, "coco evaluation: out of memory");
        goto done;
    }
    for (size_t i = 0; i < np; i++) out->precision[i] = -1;
    for (size_t i = 0; i < nr; i++) out->recall[i] = -1;
    if (place(&s, err, errlen)) goto done;
    if (evaluate_cells(&s) || accumulate(&s, out)) {
        fail(err, errlen, "coco evaluation: out of memory");
        goto done;
    }
    fill_stats(out);
    /* per category in the file's order: AP over all thresholds, all areas, 100 dets */
    for (int k = 0; k < K; k++) out->category_ap[k] = summarize(out, 1, -1, 0, 2, s.cat_rank[k]);
    for (int g = 0; g < d->num_gts; g++) {
        int k = find_category(d, d->gts[g].category_id);
        if (k >= 0 && !d->gts[g].iscrowd) out->category_gts[k]++;
    }
    rc = 0;
done:
    free_state(&s);
    if (rc) coco_metrics_free(out);
    return rc;
}
