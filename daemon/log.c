/* Logging: one fprintf per line, so lines from different threads never interleave. */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int level_from_name(const char *name) {
    static const char *names[] = {"error", "warn", "info", "debug"};
    for (int i = 0; i < 4; i++)
        if (strcmp(name, names[i]) == 0) return i;
    return LV_INFO;
}

void log_init(logger *lg, const char *level_name) {
    atomic_init(&lg->level, level_from_name(level_name));
    lg->journal = getenv("JOURNAL_STREAM") != NULL;
}

void log_set_level(logger *lg, const char *level_name) {
    atomic_store(&lg->level, level_from_name(level_name));
}

void log_msg(const logger *lg, int level, const char *fmt, ...) {
    if (level > atomic_load(&lg->level)) return;
    static const char *tags[] = {"error", "warn", "info", "debug"};
    static const int syslog_prio[] = {3, 4, 6, 7}; /* err, warning, info, debug */
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (lg->journal) {
        fprintf(stderr, "<%d>%s\n", syslog_prio[level], msg);
        return;
    }
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    localtime_r(&ts.tv_sec, &tm);
    char when[32];
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
    fprintf(stderr, "%s.%03ld effdetd %s: %s\n", when, ts.tv_nsec / 1000000, tags[level], msg);
}
