/* Internal: error reporting helpers shared by every libeffdet source file. */
#ifndef EFFDET_STATUS_H
#define EFFDET_STATUS_H

#include "effdet.h"

/* Write a printf-style message into err (if not NULL) and return s. */
effdet_status set_error(effdet_error *err, effdet_status s, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
