/*
 * Class label maps: `id label` text, a JSON array of names, or the built-in COCO map.
 */
#include "model/labels.h"

#include <ctype.h>
#include <errno.h>
#include <json-c/json.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"

/* The COCO map is config/coco-labels.txt itself, copied into the library by the
 * assembler at build time, so that file is the single source of truth. The path is
 * relative to the repository root, where make runs; mk/labels.mk makes this object
 * depend on the file (the compiler's dependency list cannot see it). */
__asm__(".pushsection .rodata\n"
        ".balign 16\n"
        "effdet_coco_labels_txt:\n"
        ".incbin \"config/coco-labels.txt\"\n"
        ".byte 0\n" /* NUL-terminated: the parser reads it as a C string */
        ".popsection\n");
extern const char effdet_coco_labels_txt[];

/* Labels longer than this are refused: they are display strings, not documents. */
#define MAX_LABEL_LEN 255

static effdet_status alloc_names(label_map *m, int n, const char *where, effdet_error *err) {
    m->num_classes = n;
    m->names = calloc((size_t)n, sizeof *m->names);
    if (!m->names) return set_error(err, EFFDET_ERR_NOMEM, "%s: %d labels", where, n);
    return EFFDET_OK;
}

static effdet_status set_name(label_map *m, int cls, const char *s, size_t len, const char *where,
                              effdet_error *err) {
    m->names[cls] = malloc(len + 1);
    if (!m->names[cls]) return set_error(err, EFFDET_ERR_NOMEM, "%s: label %d", where, cls + 1);
    memcpy(m->names[cls], s, len);
    m->names[cls][len] = 0;
    return EFFDET_OK;
}

static effdet_status name_missing_ids(label_map *m, const char *where, effdet_error *err) {
    for (int c = 0; c < m->num_classes; c++) {
        if (m->names[c]) continue;
        char buf[32];
        int len = snprintf(buf, sizeof buf, "class%d", c + 1);
        effdet_status st = set_name(m, c, buf, (size_t)len, where, err);
        if (st != EFFDET_OK) return st;
    }
    return EFFDET_OK;
}

/* One parsed line: an id and the label's extent; label NULL for a blank or comment line. */
typedef struct {
    long id;
    const char *label;
    size_t label_len;
} label_line;

static const char *skip_spaces(const char *p, const char *end) {
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\r')) p++;
    return p;
}

static effdet_status parse_line(const char *p, const char *end, int lineno, const char *where,
                                label_line *out, effdet_error *err) {
    out->id = 0;
    out->label = NULL;
    p = skip_spaces(p, end);
    if (p == end || *p == '#') return EFFDET_OK;
    if (!isdigit((unsigned char)*p))
        return set_error(err, EFFDET_ERR_FORMAT, "%s:%d: expected `id label`", where, lineno);
    long id = 0;
    while (p < end && isdigit((unsigned char)*p)) {
        id = id * 10 + (*p++ - '0');
        if (id > INT_MAX) return set_error(err, EFFDET_ERR_FORMAT, "%s:%d: id out of range", where, lineno);
    }
    if (p < end && *p != ' ' && *p != '\t')
        return set_error(err, EFFDET_ERR_FORMAT, "%s:%d: expected `id label`", where, lineno);
    p = skip_spaces(p, end);
    const char *e = end;
    while (e > p && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r')) e--;
    if (e == p) return set_error(err, EFFDET_ERR_FORMAT, "%s:%d: id %ld has no label", where, lineno, id);
    if (e - p > MAX_LABEL_LEN)
        return set_error(err, EFFDET_ERR_FORMAT, "%s:%d: label longer than %d bytes", where, lineno,
                         MAX_LABEL_LEN);
    out->id = id;
    out->label = p;
    out->label_len = (size_t)(e - p);
    return EFFDET_OK;
}

/* Calls parse_line on every line; with m->names set, also stores the labels. Without
 * names (the sizing pass) it only records the largest id. */
static effdet_status scan_lines(label_map *m, const char *text, const char *where, long *max_id,
                                effdet_error *err) {
    int lineno = 0;
    for (const char *p = text; *p;) {
        const char *end = strchr(p, '\n');
        if (!end) end = p + strlen(p);
        lineno++;
        label_line ln;
        effdet_status st = parse_line(p, end, lineno, where, &ln, err);
        if (st != EFFDET_OK) return st;
        if (ln.label) {
            if (ln.id < 1)
                return set_error(err, EFFDET_ERR_FORMAT, "%s:%d: id %ld out of range (ids start at 1)", where,
                                 lineno, ln.id);
            if (m->names && ln.id > m->num_classes)
                return set_error(err, EFFDET_ERR_FORMAT, "%s:%d: id %ld out of range 1..%d", where, lineno,
                                 ln.id, m->num_classes);
            if (ln.id > *max_id) *max_id = ln.id;
            if (m->names) {
                if (m->names[ln.id - 1])
                    return set_error(err, EFFDET_ERR_FORMAT, "%s:%d: duplicate id %ld", where, lineno, ln.id);
                st = set_name(m, (int)ln.id - 1, ln.label, ln.label_len, where, err);
                if (st != EFFDET_OK) return st;
            }
        }
        p = *end ? end + 1 : end;
    }
    return EFFDET_OK;
}

effdet_status labels_parse_text(label_map *m, const char *text, int num_classes, const char *where,
                                effdet_error *err) {
    memset(m, 0, sizeof *m);
    if (!where) where = "labels";
    effdet_status st;
    if (num_classes <= 0) { /* sizing pass: the largest id sets the class count */
        long max_id = 0;
        st = scan_lines(m, text, where, &max_id, err);
        if (st != EFFDET_OK) return st;
        if (max_id == 0) return set_error(err, EFFDET_ERR_FORMAT, "%s: no labels", where);
        num_classes = (int)max_id;
    }
    long max_id = 0;
    st = alloc_names(m, num_classes, where, err);
    if (st == EFFDET_OK) st = scan_lines(m, text, where, &max_id, err);
    if (st == EFFDET_OK) st = name_missing_ids(m, where, err);
    if (st != EFFDET_OK) labels_free(m);
    return st;
}

effdet_status labels_from_json(label_map *m, const struct json_object *array, int num_classes,
                               const char *where, effdet_error *err) {
    memset(m, 0, sizeof *m);
    if (!where) where = "labels";
    if (!json_object_is_type(array, json_type_array))
        return set_error(err, EFFDET_ERR_FORMAT, "%s: labels is not a JSON array", where);
    size_t n = json_object_array_length(array);
    if (n == 0 || n > INT_MAX)
        return set_error(err, EFFDET_ERR_FORMAT, "%s: labels has %zu entries", where, n);
    if (num_classes > 0 && n != (size_t)num_classes)
        return set_error(err, EFFDET_ERR_FORMAT, "%s: labels has %zu entries, the model has %d classes",
                         where, n, num_classes);
    effdet_status st = alloc_names(m, (int)n, where, err);
    for (size_t i = 0; st == EFFDET_OK && i < n; i++) {
        const json_object *v = json_object_array_get_idx(array, i);
        if (!json_object_is_type(v, json_type_string)) {
            st = set_error(err, EFFDET_ERR_FORMAT, "%s: labels[%zu] is not a string", where, i);
            break;
        }
        size_t len = (size_t)json_object_get_string_len(v);
        if (len == 0 || len > MAX_LABEL_LEN) {
            st = set_error(err, EFFDET_ERR_FORMAT, "%s: labels[%zu] has length %zu (1..%d)", where, i, len,
                           MAX_LABEL_LEN);
            break;
        }
        st = set_name(m, (int)i, json_object_get_string((json_object *)v), len, where, err);
    }
    if (st != EFFDET_OK) labels_free(m);
    return st;
}

effdet_status labels_from_json_text(label_map *m, const char *json, int num_classes, const char *where,
                                    effdet_error *err) {
    memset(m, 0, sizeof *m);
    if (!where) where = "labels";
    enum json_tokener_error jerr;
    json_object *array = json_tokener_parse_verbose(json, &jerr);
    if (!array) return set_error(err, EFFDET_ERR_FORMAT, "%s: %s", where, json_tokener_error_desc(jerr));
    effdet_status st = labels_from_json(m, array, num_classes, where, err);
    json_object_put(array);
    return st;
}

const char *labels_builtin_text(const char *name) {
    if (name && strcmp(name, "coco") == 0) return effdet_coco_labels_txt;
    return NULL;
}

effdet_status labels_builtin(label_map *m, const char *name, effdet_error *err) {
    memset(m, 0, sizeof *m);
    const char *text = labels_builtin_text(name);
    if (!text)
        return set_error(err, EFFDET_ERR_ARG, "labels: no built-in map named '%s'", name ? name : "(null)");
    /* the file decides the class count (90) */
    return labels_parse_text(m, text, 0, "config/coco-labels.txt (built in)", err);
}

int labels_find(const label_map *m, const char *label) {
    for (int c = 0; c < m->num_classes; c++)
        if (m->names[c] && strcmp(m->names[c], label) == 0) return c;
    return -1;
}

const char *labels_name(const label_map *m, int cls) {
    if (!m || cls < 0 || cls >= m->num_classes) return NULL;
    return m->names[cls];
}

void labels_free(label_map *m) {
    if (!m) return;
    if (m->names)
        for (int c = 0; c < m->num_classes; c++) free(m->names[c]);
    free(m->names);
    m->names = NULL;
    m->num_classes = 0;
}
