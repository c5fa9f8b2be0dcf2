#include "core/status.h"

#include <stdarg.h>
#include <stdio.h>

effdet_status set_error(effdet_error *err, effdet_status s, const char *fmt, ...) {
    if (!err) return s;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
    return s;
}

const char *effdet_status_name(effdet_status s) {
    switch (s) {
    case EFFDET_OK: return "ok";
    case EFFDET_ERR_IO: return "io";
    case EFFDET_ERR_FORMAT: return "format";
    case EFFDET_ERR_ARG: return "invalid_argument";
    case EFFDET_ERR_NOMEM: return "out_of_memory";
    case EFFDET_ERR_IMAGE: return "invalid_image";
    case EFFDET_ERR_TOO_LARGE: return "image_too_large";
    case EFFDET_ERR_INTERNAL: return "internal";
    case EFFDET_ERR_UNSUPPORTED: return "unsupported";
    }
    return "unknown";
}
