/* The one way daemon code writes a message for its caller: printf into err[errlen].
 * Pure C (no libevent), so the parsers that use it still build alone for fuzzing. */
#ifndef EFFDETD_ERRF_H
#define EFFDETD_ERRF_H

#include <stddef.h>

/* Writes the message (when err is not NULL) and returns -1, so a failing function can
 * `return errf(err, errlen, "...", ...);`. */
int errf(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
