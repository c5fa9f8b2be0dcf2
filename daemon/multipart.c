/* multipart/form-data parser. The body is attacker-controlled: every scan is bounded by
 * the body length, header blocks by MP_MAX_PART_HEADERS; fuzzed by fuzz/fuzz_multipart.c. */
#include "multipart.h"

#include "errf.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

/* RFC 2046 bchars: DIGIT / ALPHA / "'()+_,-./:=?" and space (not last). */
static int is_bchar(int c) {
    return isalnum(c) || (c && strchr("'()+_,-./:=? ", c) != NULL);
}

static const char *skip_ws(const char *p, const char *end) {
    while (p < end && (*p == ' ' || *p == '\t')) p++;
    return p;
}

/* Parse `; key=value; key="quoted \" value"` parameters of a header value, calling
 * found(key, value) for each. Returns -1 on malformed quoting. */
typedef int (*param_cb)(void *arg, const char *key, size_t klen, const char *val, size_t vlen);

static int header_params(const char *p, const char *end, param_cb found, void *arg) {
    char val[512];
    while (p < end) {
        const char *semi = memchr(p, ';', (size_t)(end - p));
        if (!semi) return 0;
        p = skip_ws(semi + 1, end);
        const char *k = p;
        while (p < end && *p != '=' && *p != ';' && *p != ' ' && *p != '\t') p++;
        size_t klen = (size_t)(p - k);
        p = skip_ws(p, end);
        if (p >= end || *p != '=') continue; /* a flag parameter: ignore */
        p = skip_ws(p + 1, end);
        size_t vlen = 0;
        if (p < end && *p == '"') {
            p++;
            while (p < end && *p != '"') {
                if (*p == '\\' && p + 1 < end) p++;
                if (vlen + 1 >= sizeof val) return -1;
                val[vlen++] = *p++;
            }
            if (p >= end) return -1;
            p++;
        } else {
            while (p < end && *p != ';' && *p != ' ' && *p != '\t') {
                if (vlen + 1 >= sizeof val) return -1;
                val[vlen++] = *p++;
            }
        }
        val[vlen] = '\0';
        if (found(arg, k, klen, val, vlen)) return -1;
    }
    return 0;
}

typedef struct {
    char *out;
    size_t cap;
    int got;
} boundary_arg;

static int boundary_param(void *arg, const char *key, size_t klen, const char *val, size_t vlen) {
    boundary_arg *b = arg;
    if (klen != 8 || strncasecmp(key, "boundary", 8) != 0) return 0;
    if (vlen == 0 || vlen > MP_MAX_BOUNDARY || vlen >= b->cap || val[vlen - 1] == ' ') return -1;
    for (size_t i = 0; i < vlen; i++)
        if (!is_bchar((unsigned char)val[i])) return -1;
    memcpy(b->out, val, vlen + 1);
    b->got = 1;
    return 0;
}

int multipart_boundary(const char *content_type, char *out, size_t cap, char *err, size_t errlen) {
    static const char type[] = "multipart/form-data";
    const char *p = content_type;
    while (*p == ' ') p++;
    if (strncasecmp(p, type, sizeof type - 1) != 0 ||
        (p[sizeof type - 1] && p[sizeof type - 1] != ';' && p[sizeof type - 1] != ' ')) {
        errf(err, errlen, "Content-Type is not multipart/form-data");
        return -1;
    }
    boundary_arg b = {out, cap, 0};
    const char *end = p + strlen(p);
    if (header_params(p + sizeof type - 1, end, boundary_param, &b) || !b.got) {
        errf(err, errlen, "multipart/form-data without a valid boundary parameter");
        return -1;
    }
    return 0;
}

static int disposition_param(void *arg, const char *key, size_t klen, const char *val, size_t vlen) {
    mp_part *part = arg;
    if (klen == 4 && strncasecmp(key, "name", 4) == 0) {
        if (vlen >= sizeof part->name) return -1;
        memcpy(part->name, val, vlen + 1);
    } else if (klen == 8 && strncasecmp(key, "filename", 8) == 0) {
        if (vlen >= sizeof part->filename) vlen = sizeof part->filename - 1; /* only informative */
        memcpy(part->filename, val, vlen);
        part->filename[vlen] = '\0';
        part->has_filename = 1;
    }
    return 0;
}

/* Header block [p, end): CRLF-separated "Name: value" lines. */
static int parse_part_headers(const char *p, const char *end, mp_part *part, char *err, size_t errlen) {
    int disposition = 0;
    while (p < end) {
        const char *eol = memchr(p, '\r', (size_t)(end - p));
        if (!eol) eol = end;
        const char *colon = memchr(p, ':', (size_t)(eol - p));
        if (!colon) {
            errf(err, errlen, "multipart: part header line without ':'");
            return -1;
        }
        size_t nlen = (size_t)(colon - p);
        const char *v = skip_ws(colon + 1, eol);
        if (nlen == 19 && strncasecmp(p, "Content-Disposition", 19) == 0) {
            if ((size_t)(eol - v) < 9 || strncasecmp(v, "form-data", 9) != 0) {
                errf(err, errlen, "multipart: Content-Disposition is not form-data");
                return -1;
            }
            if (header_params(v + 9, eol, disposition_param, part)) {
                errf(err, errlen, "multipart: malformed Content-Disposition parameters");
                return -1;
            }
            disposition = 1;
        } else if (nlen == 12 && strncasecmp(p, "Content-Type", 12) == 0) {
            size_t n = (size_t)(eol - v);
            if (n >= sizeof part->content_type) n = sizeof part->content_type - 1;
            memcpy(part->content_type, v, n);
            part->content_type[n] = '\0';
        }
        p = eol + 2;
    }
    if (!disposition || !part->name[0]) {
        errf(err, errlen, "multipart: part without a Content-Disposition name");
        return -1;
    }
    return 0;
}

int multipart_parse(const uint8_t *body, size_t len, const char *boundary, mp_part *parts, int max_parts,
                    int *nparts, char *err, size_t errlen) {
    char delim[MP_MAX_BOUNDARY + 5]; /* CRLF "--" boundary */
    size_t blen = strlen(boundary);
    *nparts = 0;
    if (blen == 0 || blen > MP_MAX_BOUNDARY) {
        errf(err, errlen, "multipart: bad boundary length");
        return -1;
    }
    memcpy(delim, "\r\n--", 4);
    memcpy(delim + 4, boundary, blen);
    size_t dlen = blen + 4;
    const char *b = (const char *)body, *end = b + len;

    /* The first delimiter may open the body without the leading CRLF; anything before
     * it is a preamble to ignore. */
    const char *p;
    if (len >= dlen - 2 && memcmp(b, delim + 2, dlen - 2) == 0)
        p = b + dlen - 2;
    else {
        p = memmem(b, len, delim, dlen);
        if (!p) {
            errf(err, errlen, "multipart: opening boundary not found");
            return -1;
        }
        p += dlen;
    }
    for (;;) {
        if (end - p >= 2 && p[0] == '-' && p[1] == '-') break; /* close delimiter */
        p = skip_ws(p, end);
        if (end - p < 2 || p[0] != '\r' || p[1] != '\n') {
            errf(err, errlen, "multipart: boundary not followed by CRLF (unterminated body?)");
            return -1;
        }
        p += 2;
        if (*nparts >= max_parts) {
            errf(err, errlen, "multipart: more than %d parts", max_parts);
            return -1;
        }
        mp_part *part = &parts[*nparts];
        memset(part, 0, sizeof *part);
        const char *hend, *data; /* header block [p, hend); data after the blank line */
        if (end - p >= 2 && p[0] == '\r' && p[1] == '\n') {
            hend = p; /* no headers at all */
            data = p + 2;
        } else {
            size_t window = (size_t)(end - p) < MP_MAX_PART_HEADERS ? (size_t)(end - p) : MP_MAX_PART_HEADERS;
            hend = memmem(p, window, "\r\n\r\n", 4);
            if (!hend) {
                if ((size_t)(end - p) >= MP_MAX_PART_HEADERS)
                    errf(err, errlen, "multipart: part headers larger than %d bytes", MP_MAX_PART_HEADERS);
                else
                    errf(err, errlen, "multipart: unterminated part headers");
                return -1;
            }
            data = hend + 4;
        }
        if (parse_part_headers(p, hend, part, err, errlen)) return -1;
        const char *next = memmem(data, (size_t)(end - data), delim, dlen);
        if (!next) {
            errf(err, errlen, "multipart: closing boundary not found (unterminated body)");
            return -1;
        }
        part->data = (const uint8_t *)data;
        part->len = (size_t)(next - data);
        (*nparts)++;
        p = next + dlen;
    }
    return 0;
}
