/* libFuzzer target: the COCO annotation-file and results-file parsers of effdet-eval
 * (tools/coco_eval.c), and the evaluation on what they accept. The input is parsed as an
 * annotation file; when that succeeds and is small, its annotations are scored against
 * themselves as detections (which must give AP 1 or -1 per the rules) and the input is
 * also parsed as a results file for it. Checks the documented value ranges. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "coco_eval.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_metrics(const coco_metrics *m) {
    for (int s = 0; s < COCO_NUM_STATS; s++)
        if (!(m->stats[s] == -1 || (m->stats[s] >= 0 && m->stats[s] <= 1))) abort();
    for (int k = 0; k < m->num_categories; k++)
        if (!(m->category_ap[k] == -1 || (m->category_ap[k] >= 0 && m->category_ap[k] <= 1))) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    coco_dataset d;
    char err[512];
    if (coco_dataset_parse((const char *)data, size, "fuzz.json", &d, err, sizeof err)) {
        if (!err[0] || strlen(err) >= sizeof err) abort();
        return 0;
    }
    if (d.num_gts <= 2000) {
        coco_det *dets = malloc(sizeof *dets * (size_t)(d.num_gts ? d.num_gts : 1));
        if (!dets) abort();
        for (int i = 0; i < d.num_gts; i++)
            dets[i] = (coco_det){d.gts[i].image_id, d.gts[i].category_id, d.gts[i].bbox, 0.5};
        coco_metrics m;
        if (coco_evaluate(&d, dets, (size_t)d.num_gts, &m, err, sizeof err) == 0) {
            check_metrics(&m);
            coco_metrics_free(&m);
        }
        free(dets);
    }
    coco_det *res = NULL;
    size_t n = 0;
    if (coco_results_parse((const char *)data, size, "fuzz.json", &d, &res, &n, err, sizeof err) == 0)
        free(res);
    coco_dataset_free(&d);
    return 0;
}
