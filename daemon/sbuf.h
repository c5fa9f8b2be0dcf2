/* A growable byte buffer for building JSON and text replies. On allocation failure it
 * sets `oom` and ignores further writes; the caller checks once at the end. */
#ifndef EFFDETD_SBUF_H
#define EFFDETD_SBUF_H

#include <stddef.h>

typedef struct {
    char *data;
    size_t len, cap;
    int oom;
} sbuf;

void sb_init(sbuf *b);
void sb_free(sbuf *b);
void sb_put(sbuf *b, const char *s, size_t n);
void sb_puts(sbuf *b, const char *s);
void sb_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A JSON string literal, quotes included; control bytes and invalid UTF-8 are escaped
 * (\u00XX), so any byte string yields valid JSON. */
void sb_json_str(sbuf *b, const char *s);
/* A finite number with up to `digits` significant digits (JSON has no NaN/inf: 0). */
void sb_json_num(sbuf *b, double v, int digits);

#endif
