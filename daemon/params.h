/* Request parameters: the query string / urlencoded form parser and the typed values
 * of POST /detect and the DeepStack routes. No libevent, no engine: fuzzed on its own. */
#ifndef EFFDETD_PARAMS_H
#define EFFDETD_PARAMS_H

#include <stddef.h>
#include <stdint.h>

#define PARAMS_MAX 32
#define PARAMS_BUF 8192

/* Decoded key/value pairs; strings live in buf. */
typedef struct {
    int count;
    const char *key[PARAMS_MAX];
    const char *value[PARAMS_MAX];
    size_t used;
    char buf[PARAMS_BUF];
} param_list;

void params_init(param_list *p);
/* Add a raw (already decoded) pair. -1 when the list or its buffer is full, or a
 * key/value holds a NUL byte. */
int params_add(param_list *p, const char *key, size_t klen, const char *value, size_t vlen);
/* Parse "a=1&b=x%20y" (+ is a space); appends to p. */
int params_parse_urlencoded(param_list *p, const char *s, size_t len, char *err, size_t errlen);
/* First value of key, or NULL; *count (optional) gets how many times it occurs. */
const char *params_get(const param_list *p, const char *key, int *count);

/* A number in [lo, hi]: no NaN/inf, no trailing text. */
int parse_real(const char *name, const char *v, double lo, double hi, double *out, char *err, size_t errlen);
int parse_int(const char *name, const char *v, int lo, int hi, int *out, char *err, size_t errlen);

enum { RENDER_JSON = 0, RENDER_JPEG = 1 };

typedef struct {
    double threshold;
    int max_detections;
    int nms;            /* 0 hard, 1 soft (effdet_nms_kind) */
    int render;         /* RENDER_JSON / RENDER_JPEG */
    char classes[2048]; /* comma list of labels, "" = all */
    char model[128];    /* "" = default model */
    char api_key[256];
} detect_params;

/* POST /detect: threshold, max_detections, classes, nms, model, render, api_key. Unknown
 * or repeated parameters are errors (a typo must not silently change the result).
 * `d` holds the defaults. */
int detect_params_parse(const param_list *p, const detect_params *d, detect_params *out, char *err,
                        size_t errlen);

/* DeepStack routes: min_confidence (0..1) and api_key; other fields are ignored because
 * clients send extras (Blue Iris sends typ, Agent DVR sends its own fields). */
int compat_params_parse(const param_list *p, double default_min_confidence, double *min_confidence,
                        char *api_key, size_t api_key_len, char *err, size_t errlen);

/* Build a class mask (num_classes bytes, 1 = keep) from "person, car". Labels match
 * case-insensitively; `label(arg, i)` returns the label of 0-based class i. */
int classes_to_mask(const char *list, int num_classes, const char *(*label)(const void *arg, int cls),
                    const void *arg, uint8_t *mask, char *err, size_t errlen);

#endif
