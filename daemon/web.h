/* The built-in web page served at GET / (web/index.html, embedded at build time). */
#ifndef EFFDETD_WEB_H
#define EFFDETD_WEB_H

#include <stddef.h>

/* The page's bytes (UTF-8 HTML with inline CSS and JS, NUL-terminated for convenience);
 * *len gets the size without that NUL. Static storage: never free it. */
const unsigned char *web_index_html(size_t *len);

#endif
