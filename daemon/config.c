/* Table-driven configuration parser. The table below is the single source of truth for
 * every option: config/effdetd.conf and effdetd.conf(5) document the same names,
 * bounds and defaults (tests/integration/daemon/test_config_doc.py checks they agree). */
#include "config.h"

#include "errf.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define OPT(field) offsetof(effdetd_config, field), sizeof(((effdetd_config *)0)->field)

static const cfg_option options[] = {
    {"listen", CFG_STRING, OPT(listen), 0, 0, "127.0.0.1:8080", NULL, CFG_RESTART,
     "Address and port to listen on: ADDR:PORT, [IPv6]:PORT. Port 0 picks a free port. Ignored when "
     "systemd passes a socket (LISTEN_FDS)."},
    {"port_file", CFG_STRING, OPT(port_file), 0, 0, "", NULL, CFG_RESTART,
     "Write the bound TCP port to this file once listening (useful with port 0)."},
    {"model", CFG_STRING, OPT(model), 0, 0, "", NULL, 0,
     "Path of a .safetensors model. Its name is the file stem (tf_efficientdet_d0.safetensors -> "
     "tf_efficientdet_d0)."},
    {"models_dir", CFG_STRING, OPT(models_dir), 0, 0, "", NULL, 0,
     "Directory of models: every *.safetensors in it is loaded and named by its file stem."},
    {"default_model", CFG_STRING, OPT(default_model), 0, 0, "", NULL, 0,
     "Model used when a request names none. Empty: the `model` option's model, else the first "
     "name in alphabetical order."},
    {"precision", CFG_ENUM, OPT(precision), 0, 0, "fp32", "fp32|bf16", 0,
     "Arithmetic of every model's 1x1 convolutions. fp32 is the reference-parity mode. bf16 stores "
     "their weights as bfloat16 and rounds their inputs to bfloat16 (sums in fp32): faster, "
     "less accurate, and only on CPUs with AVX512_BF16 (a model that cannot run is not loaded, "
     "with a log line naming the missing feature). Applied when a model is (re)loaded."},
    {"model_precision", CFG_STRING, OPT(model_precision), 0, 0, "", NULL, 0,
     "Per-model precision, overriding `precision`: comma-separated NAME=fp32|bf16 pairs, NAME "
     "a model's name (its file stem), e.g. tf_efficientdet_d3=bf16,tf_efficientdet_d0=fp32."},
    {"api_key", CFG_STRING, OPT(api_key), 0, 0, "", NULL, 0,
     "When set, detection and model endpoints require `Authorization: Bearer KEY` or the "
     "DeepStack form field api_key=KEY (401 otherwise). /healthz, /readyz and /metrics stay open. "
     "A key given as --api-key is visible to every local user in /proc/PID/cmdline: prefer this "
     "file (mode 600), api_key_file or the EFFDETD_API_KEY environment variable."},
    {"api_key_file", CFG_STRING, OPT(api_key_file), 0, 0, "", NULL, 0,
     "Read api_key from the first line of this file (at start and on every reload; a systemd "
     "credential such as $CREDENTIALS_DIRECTORY/api_key works). Overrides api_key."},
    {"instance", CFG_STRING, OPT(instance), 0, 0, "", NULL, 0,
     "This replica's name: the `instance` label of every metric and the `instance` field of "
     "GET /v1/models. Empty: HOSTNAME:PORT (the bound port). Printable ASCII without quotes, "
     "backslashes or spaces."},
    {"log_level", CFG_ENUM, OPT(log_level), 0, 0, "info", "error|warn|info|debug", 0,
     "Least severe message written to stderr."},
    {"access_log", CFG_BOOL, OPT(access_log), 0, 1, "yes", NULL, 0,
     "One line per request: method, path, status, bytes, ms, model, detections, rid (X-Request-Id)."},
    {"workers", CFG_INT, OPT(workers), 0, 256, "0", NULL, CFG_RESTART,
     "Worker threads running detections, each with its own engine context. 0 = number of CPU "
     "cores."},
    {"threads_per_worker", CFG_INT, OPT(threads_per_worker), 1, 64, "1", NULL, CFG_RESTART,
     "Threads each worker's engine context may use for one image."},
    {"queue_size", CFG_INT, OPT(queue_size), 0, 65536, "0", NULL, CFG_RESTART,
     "Jobs waiting for a worker; when full, requests get 503 + Retry-After at once. 0 = twice the "
     "number of workers, at least 8."},
    {"deadline_ms", CFG_INT, OPT(deadline_ms), 1, 3600000, "10000", NULL, 0,
     "A job still queued this long after its request arrived is not run: answered 504."},
    {"drain_timeout_ms", CFG_INT, OPT(drain_timeout_ms), 0, 3600000, "30000", NULL, 0,
     "On SIGTERM/SIGINT, how long to wait for queued and running jobs before exiting."},
    {"timeout_s", CFG_INT, OPT(timeout_s), 1, 3600, "30", NULL, 0,
     "Connection inactivity timeout (read and write): closes idle keep-alive and slow clients."},
    {"max_connections", CFG_INT, OPT(max_connections), 0, 1000000, "512", NULL, 0,
     "Most client connections at once. At the limit the connection doing the least (idle, or "
     "the slowest unfinished request, at least 0.5 s old) is closed to make room; when every "
     "connection is busy with a request, new clients wait in the kernel's listen backlog until "
     "one closes. 0 = no limit."},
    {"header_timeout_s", CFG_INT, OPT(header_timeout_s), 1, 3600, "10", NULL, 0,
     "A request's line and headers must arrive within this many seconds of its first byte (of "
     "the accept, for a connection's first request), however steadily they trickle in; "
     "otherwise the connection is closed."},
    {"min_body_rate", CFG_LONG, OPT(min_body_rate), 0, 1073741824, "10240", NULL, 0,
     "Bytes per second a request body must average once header_timeout_s has passed since its "
     "headers; a slower one is closed. 0 = no minimum."},
    {"body_budget_bytes", CFG_LONG, OPT(body_budget_bytes), 0, 68719476736.0, "268435456", NULL, 0,
     "Request-body bytes held at once across all connections (by Content-Length, from the end "
     "of the headers to the reply). A request that does not fit is answered 503 + Retry-After "
     "before its body is read. 0 = no budget."},
    {"max_body_bytes", CFG_LONG, OPT(max_body_bytes), 1024, 1073741824, "16777216", NULL, 0,
     "Largest request body; larger ones get 413."},
    {"max_header_bytes", CFG_LONG, OPT(max_header_bytes), 1024, 1048576, "16384", NULL, 0,
     "Largest request line + headers; larger ones are refused."},
    {"max_pixels", CFG_LONG, OPT(max_pixels), 1, 1000000000, "40000000", NULL, 0,
     "Largest image (width x height), checked from the JPEG header before decoding (413)."},
    {"max_parts", CFG_INT, OPT(max_parts), 1, 1024, "16", NULL, 0,
     "Most parts accepted in one multipart/form-data body."},
    {"threshold", CFG_DOUBLE, OPT(threshold), 0, 1, "0.25", NULL, 0,
     "Default score threshold of POST /detect (the `threshold` parameter overrides it)."},
    {"max_detections", CFG_INT, OPT(max_detections), 1, 5000, "100", NULL, 0,
     "Default maximum number of detections of POST /detect."},
    {"compat_min_confidence", CFG_DOUBLE, OPT(compat_min_confidence), 0, 1, "0.4", NULL, 0,
     "Default min_confidence of the DeepStack-compatible routes (DeepStack's own default)."},
    {"compat_max_predictions", CFG_INT, OPT(compat_max_predictions), 1, 5000, "20", NULL, 0,
     "Most predictions returned by the DeepStack-compatible routes. Frigate copies them into a "
     "fixed 20-row array, so more than 20 breaks it."},
    {"warmup", CFG_BOOL, OPT(warmup), 0, 1, "yes", NULL, 0,
     "Run one detection on a blank image per model before reporting ready."},
    {"allow_dct_scaling", CFG_BOOL, OPT(allow_dct_scaling), 0, 1, "no", NULL, 0,
     "Let libjpeg decode large images at 1/2..1/8 scale (faster, not bit-exact)."},
    {"render_quality", CFG_INT, OPT(render_quality), 1, 100, "85", NULL, 0,
     "JPEG quality of POST /detect?render=jpeg."},
    {NULL, 0, 0, 0, 0, 0, NULL, NULL, 0, NULL},
};

const cfg_option *config_options(void) {
    return options;
}

const cfg_option *config_find(const char *name) {
    for (const cfg_option *o = options; o->name; o++)
        if (strcmp(o->name, name) == 0) return o;
    return NULL;
}

void config_keep_restart_options(effdetd_config *next, const effdetd_config *cur, char *changed, size_t cap) {
    size_t used = 0;
    if (cap) changed[0] = '\0';
    for (const cfg_option *o = options; o->name; o++) {
        if (!(o->flags & CFG_RESTART)) continue;
        char *n = (char *)next + o->offset;
        const char *c = (const char *)cur + o->offset;
        int differs =
            o->type == CFG_STRING || o->type == CFG_ENUM ? strcmp(n, c) != 0 : memcmp(n, c, o->size) != 0;
        if (!differs) continue;
        memcpy(n, c, o->size);
        int w = snprintf(changed + used, cap - used, "%s%s", used ? ", " : "", o->name);
        if (w > 0 && (size_t)w < cap - used) used += (size_t)w;
    }
}

static int parse_bool(const char *v, int *out) {
    static const char *yes[] = {"yes", "true", "on", "1"}, *no[] = {"no", "false", "off", "0"};
    for (int i = 0; i < 4; i++) {
        if (strcasecmp(v, yes[i]) == 0) return *out = 1, 0;
        if (strcasecmp(v, no[i]) == 0) return *out = 0, 0;
    }
    return -1;
}

/* Integers accept a k/m/g suffix (powers of 1024) so sizes read naturally: 16m. */
static int parse_integer(const char *v, long long *out) {
    if (!*v || isspace((unsigned char)*v)) return -1;
    errno = 0;
    char *end;
    long long x = strtoll(v, &end, 10);
    if (errno || end == v) return -1;
    long long mult = 1;
    if (*end) {
        switch (tolower((unsigned char)*end)) {
        case 'k': mult = 1LL << 10; break;
        case 'm': mult = 1LL << 20; break;
        case 'g': mult = 1LL << 30; break;
        default: return -1;
        }
        end++;
        if (*end == 'b' || *end == 'B') end++;
        if (*end) return -1;
    }
    if (x > INT64_MAX / mult || x < INT64_MIN / mult) return -1;
    *out = x * mult;
    return 0;
}

static int parse_double(const char *v, double *out) {
    if (!*v || isspace((unsigned char)*v)) return -1;
    errno = 0;
    char *end;
    double x = strtod(v, &end);
    if (errno || end == v || *end || !isfinite(x)) return -1;
    *out = x;
    return 0;
}

static int enum_has(const char *choices, const char *v) {
    size_t n = strlen(v);
    for (const char *p = choices; *p;) {
        const char *bar = strchr(p, '|');
        size_t len = bar ? (size_t)(bar - p) : strlen(p);
        if (len == n && strncmp(p, v, n) == 0) return 1;
        p += len + (bar ? 1 : 0);
    }
    return 0;
}

int config_set(effdetd_config *c, const char *name, const char *value, const char *where, char *err,
               size_t errlen) {
    const cfg_option *o = config_find(name);
    if (!o) {
        errf(err, errlen, "%s: unknown option '%s'", where, name);
        return -1;
    }
    char *field = (char *)c + o->offset;
    switch (o->type) {
    case CFG_STRING:
    case CFG_ENUM:
        if (strlen(value) >= o->size) {
            errf(err, errlen, "%s: %s: value longer than %zu bytes", where, name, o->size - 1);
            return -1;
        }
        /* The file format has no escapes: a quote or a control byte in a value could not
         * be written back (--check-config) and is never part of a path, address or key. */
        for (const unsigned char *q = (const unsigned char *)value; *q; q++)
            if (*q == '"' || *q < 0x20 || *q == 0x7f) {
                errf(err, errlen, "%s: %s: a double quote or control character in the value", where, name);
                return -1;
            }
        if (o->type == CFG_ENUM && !enum_has(o->choices, value)) {
            errf(err, errlen, "%s: %s: '%s' is not one of %s", where, name, value, o->choices);
            return -1;
        }
        memcpy(field, value, strlen(value) + 1);
        return 0;
    case CFG_BOOL: {
        int b;
        if (parse_bool(value, &b)) {
            errf(err, errlen, "%s: %s: '%s' is not yes/no", where, name, value);
            return -1;
        }
        *(int *)field = b;
        return 0;
    }
    case CFG_INT:
    case CFG_LONG: {
        long long x;
        if (parse_integer(value, &x)) {
            errf(err, errlen, "%s: %s: '%s' is not an integer", where, name, value);
            return -1;
        }
        if (x < (long long)o->min || x > (long long)o->max) {
            errf(err, errlen, "%s: %s: %lld is outside [%.0f, %.0f]", where, name, x, o->min, o->max);
            return -1;
        }
        if (o->type == CFG_INT)
            *(int *)field = (int)x;
        else
            *(long long *)field = x;
        return 0;
    }
    case CFG_DOUBLE: {
        double x;
        if (parse_double(value, &x)) {
            errf(err, errlen, "%s: %s: '%s' is not a number", where, name, value);
            return -1;
        }
        if (x < o->min || x > o->max) {
            errf(err, errlen, "%s: %s: %g is outside [%g, %g]", where, name, x, o->min, o->max);
            return -1;
        }
        memcpy(field, &x, sizeof x); /* field is a double: offsetof from the table */
        return 0;
    }
    }
    errf(err, errlen, "%s: %s: bad option type", where, name);
    return -1;
}

void config_defaults(effdetd_config *c) {
    memset(c, 0, sizeof *c);
    for (const cfg_option *o = options; o->name; o++) {
        /* The table's defaults are valid by construction (tests/unit/test_daemon_config.c). */
        if (config_set(c, o->name, o->def, "default", NULL, 0) != 0) abort();
    }
}

/* One line: "name value", "name "quoted value"", blank, or '#' comment. Trailing '#...'
 * after an unquoted value is a comment too. */
static int parse_line(effdetd_config *c, char *line, const char *where, char *err, size_t errlen) {
    char *p = line;
    while (isspace((unsigned char)*p)) p++;
    if (*p == '\0' || *p == '#') return 0;
    char *name = p;
    while (*p && !isspace((unsigned char)*p) && *p != '=') p++;
    char *name_end = p;
    while (isspace((unsigned char)*p)) p++;
    if (*p == '=') { /* tolerate "name = value" */
        p++;
        while (isspace((unsigned char)*p)) p++;
    }
    *name_end = '\0';
    char *value = p, *vend;
    if (*p == '"') {
        value = ++p;
        while (*p && *p != '"') p++;
        if (*p != '"') {
            errf(err, errlen, "%s: %s: unterminated quote", where, name);
            return -1;
        }
        vend = p++;
        while (isspace((unsigned char)*p)) p++;
        if (*p && *p != '#') {
            errf(err, errlen, "%s: %s: text after the closing quote", where, name);
            return -1;
        }
    } else {
        while (*p && *p != '#') p++;
        vend = p;
        while (vend > value && isspace((unsigned char)vend[-1])) vend--;
        if (vend == value && config_find(name) && config_find(name)->type != CFG_STRING) {
            errf(err, errlen, "%s: %s: missing value", where, name);
            return -1;
        }
    }
    *vend = '\0';
    return config_set(c, name, value, where, err, errlen);
}

int config_parse_text(effdetd_config *c, const char *text, size_t len, const char *path, char *err,
                      size_t errlen) {
    char line[4096], where[600];
    size_t pos = 0;
    for (int lineno = 1; pos < len; lineno++) {
        const char *nl = memchr(text + pos, '\n', len - pos);
        size_t n = nl ? (size_t)(nl - (text + pos)) : len - pos;
        snprintf(where, sizeof where, "%s:%d", path, lineno);
        if (n >= sizeof line) {
            errf(err, errlen, "%s: line longer than %zu bytes", where, sizeof line - 1);
            return -1;
        }
        memcpy(line, text + pos, n);
        line[n] = '\0';
        if (strlen(line) != n) {
            errf(err, errlen, "%s: NUL byte in line", where);
            return -1;
        }
        if (n && line[n - 1] == '\r') line[n - 1] = '\0';
        if (parse_line(c, line, where, err, errlen)) return -1;
        pos += n + (nl ? 1 : 0);
    }
    return 0;
}

int config_load_file(effdetd_config *c, const char *path, char *err, size_t errlen) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        errf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return -1;
    }
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    int rc = -1;
    if (!buf) goto fail;
    for (;;) {
        size_t got = fread(buf + len, 1, cap - len, f);
        len += got;
        if (got == 0) break;
        if (len == cap) {
            if (cap >= (1u << 24)) {
                errf(err, errlen, "%s: file larger than 16 MiB", path);
                goto fail;
            }
            char *nb = realloc(buf, cap * 2);
            if (!nb) goto fail;
            buf = nb, cap *= 2;
        }
    }
    if (ferror(f)) {
        errf(err, errlen, "%s: read error", path);
        goto fail;
    }
    rc = config_parse_text(c, buf, len, path, err, errlen);
fail:
    if (rc && err && errlen && !*err) errf(err, errlen, "%s: out of memory", path);
    free(buf);
    fclose(f);
    return rc;
}

int config_build(effdetd_config *c, const char *path, const char *const *overrides, int n, char *err,
                 size_t errlen) {
    config_defaults(c);
    if (path && config_load_file(c, path, err, errlen)) return -1;
    const char *env = getenv("EFFDETD_API_KEY");
    if (env && *env && config_set(c, "api_key", env, "EFFDETD_API_KEY", err, errlen)) return -1;
    for (int i = 0; i < n; i++) {
        char where[80];
        snprintf(where, sizeof where, "--%s", overrides[2 * i]);
        for (char *p = where + 2; *p; p++)
            if (*p == '_') *p = '-';
        if (config_set(c, overrides[2 * i], overrides[2 * i + 1], where, err, errlen)) return -1;
    }
    if (c->api_key_file[0])
        return config_read_key_file(c->api_key_file, c->api_key, sizeof c->api_key, err, errlen);
    return 0;
}

int config_read_key_file(const char *path, char *key, size_t cap, char *err, size_t errlen) {
    FILE *f = fopen(path, "r");
    if (!f) {
        errf(err, errlen, "api_key_file %s: %s", path, strerror(errno));
        return -1;
    }
    char line[CFG_STR_MAX + 2];
    int ok = fgets(line, sizeof line, f) != NULL;
    fclose(f);
    size_t n = ok ? strcspn(line, "\r\n") : 0;
    while (n > 0 && isspace((unsigned char)line[n - 1])) n--;
    if (n == 0 || n >= cap) {
        errf(err, errlen, "api_key_file %s: %s", path,
             n ? "the key is too long" : "no key on the first line");
        return -1;
    }
    memcpy(key, line, n);
    key[n] = '\0';
    return 0;
}

/* One NAME=PRECISION item of model_precision, [p, end): its name's length and precision,
 * or -1 when malformed. */
static int parse_model_precision_item(const char *p, const char *end, size_t *name_len, const char **prec) {
    const char *eq = memchr(p, '=', (size_t)(end - p));
    if (!eq || eq == p) return -1;
    size_t plen = (size_t)(end - eq - 1);
    if ((plen == 4 && strncmp(eq + 1, "fp32", 4) == 0) || (plen == 4 && strncmp(eq + 1, "bf16", 4) == 0)) {
        *name_len = (size_t)(eq - p);
        *prec = strncmp(eq + 1, "fp32", 4) == 0 ? "fp32" : "bf16";
        return 0;
    }
    return -1;
}

const char *config_model_precision(const effdetd_config *c, const char *name) {
    const char *found = c->precision;
    for (const char *p = c->model_precision; *p;) {
        const char *end = strchr(p, ',');
        if (!end) end = p + strlen(p);
        size_t nlen;
        const char *prec;
        if (parse_model_precision_item(p, end, &nlen, &prec) == 0 && nlen == strlen(name) &&
            strncmp(p, name, nlen) == 0)
            found = prec; /* the last entry for a name wins */
        p = *end ? end + 1 : end;
    }
    return found;
}

int config_validate(const effdetd_config *c, char *err, size_t errlen) {
    /* Every comma-separated item, an empty one (",,", a trailing ",") included. */
    for (const char *p = c->model_precision; *c->model_precision; p++) {
        const char *end = strchr(p, ',');
        if (!end) end = p + strlen(p);
        size_t nlen;
        const char *prec;
        if (parse_model_precision_item(p, end, &nlen, &prec)) {
            errf(err, errlen, "model_precision: '%.*s' is not NAME=fp32 or NAME=bf16", (int)(end - p), p);
            return -1;
        }
        if (!*end) break;
        p = end;
    }
    if (!c->model[0] && !c->models_dir[0]) {
        errf(err, errlen, "no model: set `model` or `models_dir` (or --model / --models-dir)");
        return -1;
    }
    char host[256];
    int port;
    if (config_split_listen(c->listen, host, sizeof host, &port)) {
        errf(err, errlen, "listen: '%s' is not ADDR:PORT", c->listen);
        return -1;
    }
    /* The instance name goes verbatim into metric labels and JSON. */
    for (const char *p = c->instance; *p; p++)
        if (*p <= ' ' || *p > '~' || *p == '"' || *p == '\\') {
            errf(err, errlen, "instance: '%s' has a space, quote, backslash or non-ASCII byte", c->instance);
            return -1;
        }
    return 0;
}

static int needs_quotes(const char *s) {
    if (!*s) return 1;
    for (; *s; s++)
        if (isspace((unsigned char)*s) || *s == '#') return 1;
    return 0;
}

void config_write(const effdetd_config *c, FILE *f) {
    for (const cfg_option *o = options; o->name; o++) {
        const char *field = (const char *)c + o->offset;
        switch (o->type) {
        case CFG_STRING:
        case CFG_ENUM:
            if (needs_quotes(field))
                fprintf(f, "%s \"%s\"\n", o->name, field);
            else
                fprintf(f, "%s %s\n", o->name, field);
            break;
        case CFG_BOOL: fprintf(f, "%s %s\n", o->name, *(const int *)field ? "yes" : "no"); break;
        case CFG_INT: fprintf(f, "%s %d\n", o->name, *(const int *)field); break;
        case CFG_LONG: fprintf(f, "%s %lld\n", o->name, *(const long long *)field); break;
        case CFG_DOUBLE: {
            double d;
            memcpy(&d, field, sizeof d);
            fprintf(f, "%s %g\n", o->name, d);
            break;
        }
        }
    }
}

int config_split_listen(const char *listen, char *host, size_t hostlen, int *port) {
    const char *colon;
    size_t hlen;
    if (listen[0] == '[') {
        const char *close = strchr(listen, ']');
        if (!close || close[1] != ':') return -1;
        hlen = (size_t)(close - listen - 1);
        if (hlen >= hostlen) return -1;
        memcpy(host, listen + 1, hlen);
        colon = close + 1;
    } else {
        colon = strrchr(listen, ':');
        if (!colon) { /* a bare port */
            colon = listen - 1;
            hlen = 0;
        } else {
            hlen = (size_t)(colon - listen);
        }
        if (hlen >= hostlen || memchr(listen, ':', hlen)) return -1;
        memcpy(host, listen, hlen);
    }
    host[hlen] = '\0';
    if (hlen == 0) snprintf(host, hostlen, "0.0.0.0");
    const char *p = colon + 1;
    if (!*p) return -1;
    long v = 0;
    for (; *p; p++) {
        if (!isdigit((unsigned char)*p)) return -1;
        v = v * 10 + (*p - '0');
        if (v > 65535) return -1;
    }
    *port = (int)v;
    return 0;
}
