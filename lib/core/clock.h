/* Internal: a monotonic clock in milliseconds, for the per-stage timings (inline: the
 * forward pass reads it per op when profiling). effdet_now_ms() (clock.c) is the same
 * clock for callers. */
#ifndef EFFDET_CLOCK_H
#define EFFDET_CLOCK_H

#include <time.h>

static inline double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

#endif
