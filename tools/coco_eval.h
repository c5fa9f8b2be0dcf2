/*
 * COCO bbox evaluation, computed as pycocotools' COCOeval does (evaluate + accumulate +
 * summarize, iouType "bbox", default parameters), so that the numbers we print are the
 * numbers papers and model cards quote.
 *
 *   coco_dataset_parse()   a COCO annotation file (images, annotations, categories)
 *   coco_results_parse()   a COCO results file (a JSON array of detections)
 *   coco_evaluate()        the 12 summary metrics and per-category AP
 *
 * Independent of libeffdet: it needs only json-c and libm. No global state.
 */
#ifndef EFFDET_COCO_EVAL_H
#define EFFDET_COCO_EVAL_H

#include <stddef.h>

#define COCO_NUM_IOU 10     /* IoU thresholds .50:.05:.95 */
#define COCO_NUM_RECALL 101 /* recall points 0:.01:1 */
#define COCO_NUM_AREA 4     /* all, small, medium, large */
#define COCO_NUM_MAXDET 3   /* 1, 10, 100 detections per image and category */
#define COCO_NUM_STATS 12

/* Names of the 12 summary metrics, in pycocotools' stats[] order. */
extern const char *const coco_stat_names[COCO_NUM_STATS];

typedef struct {
    double x, y, w, h; /* COCO bbox: top-left corner and size, pixels */
} coco_box;

typedef struct {
    long long id, image_id;
    int category_id;
    coco_box bbox;
    double area; /* the annotation's own `area` (w*h when the file has none) */
    int iscrowd;
} coco_gt;

typedef struct {
    long long image_id;
    int category_id;
    coco_box bbox;
    double score;
} coco_det;

typedef struct {
    long long id;
    char *file_name;   /* NULL when the file has none */
    int width, height; /* 0 when absent */
} coco_image;

typedef struct {
    int id;
    char *name;
} coco_category;

typedef struct {
    coco_image *images; /* in file order */
    int num_images;
    coco_category *categories; /* in file order */
    int num_categories;
    coco_gt *gts; /* in file order */
    int num_gts;
    int zero_id_gts;     /* annotations with id 0 (see coco_evaluate) */
    int *image_order;    /* image indices sorted by id (pycocotools evaluates in this order) */
    int *category_order; /* category indices sorted by id */
} coco_dataset;

/* Parse an annotation file's bytes (need not be NUL-terminated). `where` names the file in
 * messages. Returns 0, or -1 with a one-line message in err. On failure *out is empty. */
int coco_dataset_parse(const char *json, size_t len, const char *where, coco_dataset *out, char *err,
                       size_t errlen);
void coco_dataset_free(coco_dataset *d);

/* Index of the image with this id in d->images, or -1. */
int coco_dataset_find_image(const coco_dataset *d, long long image_id);

/* Parse a results file: [{"image_id", "category_id", "bbox", "score"}, ...]. Every
 * image_id must be one of the dataset's (pycocotools refuses such results too).
 * *dets is malloc'd (free it); returns 0 or -1 with a message. */
int coco_results_parse(const char *json, size_t len, const char *where, const coco_dataset *d,
                       coco_det **dets, size_t *count, char *err, size_t errlen);

typedef struct {
    double stats[COCO_NUM_STATS]; /* AP AP50 AP75 APs APm APl AR1 AR10 AR100 ARs ARm ARl; -1 = no gt */
    double *category_ap;          /* per category, in d->categories order; -1 = no gt */
    int *category_gts;            /* non-crowd ground truth objects per category */
    /* pycocotools' eval['precision'] [T][R][K][A][M] and eval['recall'] [T][K][A][M],
     * -1 where undefined. Kept for tests and for anyone who wants a PR curve. */
    double *precision, *recall;
    int num_categories;
} coco_metrics;

/* Evaluate detections (any order) against the dataset. Detections whose category is not
 * one of the dataset's are ignored, as pycocotools ignores them. As pycocotools, a
 * detection matched to an annotation whose id is 0 counts as a false positive (it stores
 * the matched id and tests it for non-zero); d->zero_id_gts says whether that can happen.
 * Returns 0, or -1 with a message (out of memory, unknown image id). */
int coco_evaluate(const coco_dataset *d, const coco_det *dets, size_t count, coco_metrics *out, char *err,
                  size_t errlen);
void coco_metrics_free(coco_metrics *m);

/* The parameter vectors, bit-identical to numpy.linspace as pycocotools builds them. */
double coco_iou_threshold(int t);
double coco_recall_threshold(int r);

/* IoU of a detection with a ground-truth box as pycocotools' maskApi bbIou: for a crowd
 * region the union is the detection's own area. */
double coco_iou(const coco_box *dt, const coco_box *gt, int crowd);

#endif
