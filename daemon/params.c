/* Query-string / form parameter parsing. Everything here handles attacker-controlled
 * bytes: bounded buffers only, every length checked, fuzzed by fuzz/fuzz_params.c. */
#include "params.h"

#include "errf.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void params_init(param_list *p) {
    p->count = 0;
    p->used = 0;
}

static char *params_store(param_list *p, const char *s, size_t n) {
    if (memchr(s, '\0', n) || p->used + n + 1 > sizeof p->buf) return NULL;
    char *dst = p->buf + p->used;
    memcpy(dst, s, n);
    dst[n] = '\0';
    p->used += n + 1;
    return dst;
}

int params_add(param_list *p, const char *key, size_t klen, const char *value, size_t vlen) {
    if (p->count >= PARAMS_MAX) return -1;
    size_t mark = p->used;
    char *k = params_store(p, key, klen), *v = k ? params_store(p, value, vlen) : NULL;
    if (!v) {
        p->used = mark;
        return -1;
    }
    p->key[p->count] = k;
    p->value[p->count] = v;
    p->count++;
    return 0;
}

static int hexval(int c) {
    if (c >= '0' && c <= '9') return c - '0';
    c = tolower(c);
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

/* Percent-decode s[0..n) into dst (at least n bytes); returns the decoded length or -1. */
static long url_decode(const char *s, size_t n, char *dst) {
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '+') {
            dst[o++] = ' ';
        } else if (s[i] == '%') {
            if (i + 2 >= n) return -1;
            int hi = hexval((unsigned char)s[i + 1]), lo = hexval((unsigned char)s[i + 2]);
            if (hi < 0 || lo < 0) return -1;
            dst[o++] = (char)(hi * 16 + lo);
            i += 2;
        } else {
            dst[o++] = s[i];
        }
    }
    return (long)o;
}

int params_parse_urlencoded(param_list *p, const char *s, size_t len, char *err, size_t errlen) {
    char key[256], val[PARAMS_BUF];
    size_t pos = 0;
    while (pos < len) {
        const char *amp = memchr(s + pos, '&', len - pos);
        size_t n = amp ? (size_t)(amp - (s + pos)) : len - pos;
        const char *item = s + pos;
        pos += n + (amp ? 1 : 0);
        if (n == 0) continue; /* "a=1&&b=2" */
        const char *eq = memchr(item, '=', n);
        size_t kn = eq ? (size_t)(eq - item) : n, vn = eq ? n - kn - 1 : 0;
        if (kn == 0) {
            errf(err, errlen, "query: empty parameter name");
            return -1;
        }
        if (kn >= sizeof key || vn >= sizeof val) {
            errf(err, errlen, "query: parameter too long");
            return -1;
        }
        long kl = url_decode(item, kn, key), vl = url_decode(eq ? eq + 1 : "", vn, val);
        if (kl < 0 || vl < 0) {
            errf(err, errlen, "query: bad percent-encoding");
            return -1;
        }
        if (params_add(p, key, (size_t)kl, val, (size_t)vl)) {
            errf(err, errlen, "query: too many parameters, too long, or a NUL byte");
            return -1;
        }
    }
    return 0;
}

const char *params_get(const param_list *p, const char *key, int *count) {
    const char *first = NULL;
    int n = 0;
    for (int i = 0; i < p->count; i++) {
        if (strcmp(p->key[i], key) == 0) {
            if (!first) first = p->value[i];
            n++;
        }
    }
    if (count) *count = n;
    return first;
}

int parse_real(const char *name, const char *v, double lo, double hi, double *out, char *err, size_t errlen) {
    char *end = NULL;
    errno = 0;
    double x = NAN;
    if (*v && !isspace((unsigned char)*v)) x = strtod(v, &end);
    if (!end || isnan(x) || errno || *end || !isfinite(x)) {
        errf(err, errlen, "%s: '%.64s' is not a number", name, v);
        return -1;
    }
    if (x < lo || x > hi) {
        errf(err, errlen, "%s: %g is outside [%g, %g]", name, x, lo, hi);
        return -1;
    }
    *out = x;
    return 0;
}

int parse_int(const char *name, const char *v, int lo, int hi, int *out, char *err, size_t errlen) {
    char *end;
    errno = 0;
    long x = 0;
    int ok = *v && (isdigit((unsigned char)*v) || *v == '-' || *v == '+');
    if (ok) x = strtol(v, &end, 10);
    if (!ok || errno || *end) {
        errf(err, errlen, "%s: '%.64s' is not an integer", name, v);
        return -1;
    }
    if (x < lo || x > hi) {
        errf(err, errlen, "%s: %ld is outside [%d, %d]", name, x, lo, hi);
        return -1;
    }
    *out = (int)x;
    return 0;
}

static int copy_value(const char *name, const char *v, char *dst, size_t cap, char *err, size_t errlen) {
    size_t n = strlen(v);
    if (n >= cap) {
        errf(err, errlen, "%s: longer than %zu bytes", name, cap - 1);
        return -1;
    }
    memcpy(dst, v, n + 1);
    return 0;
}

int detect_params_parse(const param_list *p, const detect_params *d, detect_params *out, char *err,
                        size_t errlen) {
    static const char *known[] = {"threshold", "max_detections", "classes", "nms",
                                  "model",     "render",         "api_key"};
    *out = *d;
    for (int i = 0; i < p->count; i++) {
        int found = 0, times = 0;
        for (size_t k = 0; k < sizeof known / sizeof *known; k++) found |= strcmp(p->key[i], known[k]) == 0;
        if (!found) {
            errf(err, errlen,
                 "unknown parameter '%.64s' (known: threshold, max_detections, classes, nms, "
                 "model, render)",
                 p->key[i]);
            return -1;
        }
        params_get(p, p->key[i], &times);
        if (times > 1) {
            errf(err, errlen, "parameter '%.64s' given %d times", p->key[i], times);
            return -1;
        }
    }
    const char *v;
    if ((v = params_get(p, "threshold", NULL)) &&
        parse_real("threshold", v, 0, 1, &out->threshold, err, errlen))
        return -1;
    if ((v = params_get(p, "max_detections", NULL)) &&
        parse_int("max_detections", v, 1, 5000, &out->max_detections, err, errlen))
        return -1;
    if ((v = params_get(p, "nms", NULL))) {
        if (strcmp(v, "hard") == 0)
            out->nms = 0;
        else if (strcmp(v, "soft") == 0)
            out->nms = 1;
        else {
            errf(err, errlen, "nms: '%.64s' is not hard or soft", v);
            return -1;
        }
    }
    if ((v = params_get(p, "render", NULL))) {
        if (strcmp(v, "json") == 0)
            out->render = RENDER_JSON;
        else if (strcmp(v, "jpeg") == 0)
            out->render = RENDER_JPEG;
        else {
            errf(err, errlen, "render: '%.64s' is not json or jpeg", v);
            return -1;
        }
    }
    if ((v = params_get(p, "classes", NULL)) &&
        copy_value("classes", v, out->classes, sizeof out->classes, err, errlen))
        return -1;
    if ((v = params_get(p, "model", NULL)) &&
        copy_value("model", v, out->model, sizeof out->model, err, errlen))
        return -1;
    if ((v = params_get(p, "api_key", NULL)) &&
        copy_value("api_key", v, out->api_key, sizeof out->api_key, err, errlen))
        return -1;
    return 0;
}

int compat_params_parse(const param_list *p, double default_min_confidence, double *min_confidence,
                        char *api_key, size_t api_key_len, char *err, size_t errlen) {
    const char *v;
    int times;
    *min_confidence = default_min_confidence;
    if ((v = params_get(p, "min_confidence", &times))) {
        if (times > 1) {
            errf(err, errlen, "min_confidence given %d times", times);
            return -1;
        }
        if (parse_real("min_confidence", v, 0, 1, min_confidence, err, errlen)) return -1;
    }
    api_key[0] = '\0';
    if ((v = params_get(p, "api_key", NULL)) && copy_value("api_key", v, api_key, api_key_len, err, errlen))
        return -1;
    return 0;
}

int classes_to_mask(const char *list, int num_classes, const char *(*label)(const void *arg, int cls),
                    const void *arg, uint8_t *mask, char *err, size_t errlen) {
    memset(mask, 0, (size_t)num_classes);
    const char *p = list;
    int any = 0;
    while (*p) {
        const char *comma = strchr(p, ',');
        size_t n = comma ? (size_t)(comma - p) : strlen(p);
        const char *s = p, *e = p + n;
        p += n + (comma ? 1 : 0);
        while (s < e && isspace((unsigned char)*s)) s++;
        while (e > s && isspace((unsigned char)e[-1])) e--;
        if (s == e) continue;
        int hit = 0;
        for (int c = 0; c < num_classes; c++) {
            const char *l = label(arg, c);
            if (l && strlen(l) == (size_t)(e - s) && strncasecmp(l, s, (size_t)(e - s)) == 0) {
                mask[c] = 1;
                hit = 1;
            }
        }
        if (!hit) {
            errf(err, errlen, "classes: unknown label '%.*s'", (int)((e - s) > 64 ? 64 : (e - s)), s);
            return -1;
        }
        any = 1;
    }
    if (!any) {
        errf(err, errlen, "classes: no label given");
        return -1;
    }
    return 0;
}
