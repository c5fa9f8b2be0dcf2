/* Growable buffer + JSON string escaping. */
#include "sbuf.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void sb_init(sbuf *b) {
    memset(b, 0, sizeof *b);
}

void sb_free(sbuf *b) {
    free(b->data);
    sb_init(b);
}

static int sb_reserve(sbuf *b, size_t extra) {
    if (b->oom) return -1;
    if (b->len + extra + 1 <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + extra + 1) cap *= 2;
    char *d = realloc(b->data, cap);
    if (!d) {
        b->oom = 1;
        return -1;
    }
    b->data = d;
    b->cap = cap;
    return 0;
}

void sb_put(sbuf *b, const char *s, size_t n) {
    if (sb_reserve(b, n)) return;
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
}

void sb_puts(sbuf *b, const char *s) {
    sb_put(b, s, strlen(s));
}

void sb_printf(sbuf *b, const char *fmt, ...) {
    char small[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if ((size_t)n < sizeof small) {
        sb_put(b, small, (size_t)n);
        return;
    }
    if (sb_reserve(b, (size_t)n)) return;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

/* Length of the valid UTF-8 sequence at s, or 0 when it is not valid. */
static int utf8_len(const unsigned char *s) {
    if (s[0] < 0x80) return 1;
    int n = (s[0] & 0xE0) == 0xC0 ? 2 : (s[0] & 0xF0) == 0xE0 ? 3 : (s[0] & 0xF8) == 0xF0 ? 4 : 0;
    if (n == 0 || (n == 2 && s[0] < 0xC2)) return 0;
    for (int i = 1; i < n; i++)
        if ((s[i] & 0xC0) != 0x80) return 0;
    return n;
}

void sb_json_str(sbuf *b, const char *str) {
    const unsigned char *s = (const unsigned char *)str;
    sb_put(b, "\"", 1);
    while (*s) {
        int n = utf8_len(s);
        if (*s == '"' || *s == '\\') {
            char esc[2] = {'\\', (char)*s};
            sb_put(b, esc, 2);
        } else if (*s < 0x20 || n == 0) {
            sb_printf(b, "\\u%04x", *s);
            n = 1;
        } else {
            sb_put(b, (const char *)s, (size_t)n);
        }
        s += n;
    }
    sb_put(b, "\"", 1);
}

void sb_json_num(sbuf *b, double v, int digits) {
    if (!isfinite(v)) v = 0;
    sb_printf(b, "%.*g", digits, v);
}
