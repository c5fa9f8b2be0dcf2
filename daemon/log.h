/* Leveled logging to stderr. Under systemd (JOURNAL_STREAM set) each line starts with a
 * "<N>" syslog priority that journald understands; otherwise with a timestamp. */
#ifndef EFFDETD_LOG_H
#define EFFDETD_LOG_H

#include <stdatomic.h>

enum { LV_ERROR = 0, LV_WARN = 1, LV_INFO = 2, LV_DEBUG = 3 };

typedef struct {
    atomic_int level; /* changed on SIGHUP by the loop while workers log */
    int journal;
} logger;

void log_init(logger *lg, const char *level_name);
void log_set_level(logger *lg, const char *level_name);
void log_msg(const logger *lg, int level, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#define log_error(lg, ...) log_msg(lg, LV_ERROR, __VA_ARGS__)
#define log_warn(lg, ...) log_msg(lg, LV_WARN, __VA_ARGS__)
#define log_info(lg, ...) log_msg(lg, LV_INFO, __VA_ARGS__)
#define log_debug(lg, ...) log_msg(lg, LV_DEBUG, __VA_ARGS__)

#endif
