/* libFuzzer target: query-string / form parameter parsing and the typed values of
 * POST /detect and the DeepStack routes. Checks the values' documented ranges. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "params.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *labels[] = {"person", "bicycle", "car", "traffic light", ""};
static const char *label(const void *arg, int c) {
    return c >= 0 && c < 5 ? labels[c] : NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *q = malloc(size ? size : 1);
    if (!q) return 0;
    memcpy(q, data, size);
    static param_list p; /* 8 KiB: keep it off the fuzzer's stack */
    char err[256];
    params_init(&p);
    if (params_parse_urlencoded(&p, q, size, err, sizeof err) == 0) {
        if (p.count < 0 || p.count > PARAMS_MAX || p.used > PARAMS_BUF) abort();
        for (int i = 0; i < p.count; i++)
            if (p.key[i] < p.buf || p.value[i] >= p.buf + p.used) abort();
        detect_params d = {0}, out;
        d.threshold = 0.25;
        d.max_detections = 100;
        if (detect_params_parse(&p, &d, &out, err, sizeof err) == 0) {
            if (!(out.threshold >= 0 && out.threshold <= 1) || isnan(out.threshold)) abort();
            if (out.max_detections < 1 || out.max_detections > 5000) abort();
            if (out.nms != 0 && out.nms != 1) abort();
            if (out.classes[0]) {
                uint8_t mask[5];
                (void)classes_to_mask(out.classes, 5, label, NULL, mask, err, sizeof err);
            }
        }
        double mc;
        char key[64];
        if (compat_params_parse(&p, 0.4, &mc, key, sizeof key, err, sizeof err) == 0 && !(mc >= 0 && mc <= 1))
            abort();
    }
    free(q);
    return 0;
}
