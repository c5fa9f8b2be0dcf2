/* The demo model's sample images (the JPEGs of models/samples/, embedded at build time), served
 * at GET /samples/NAME so that the web page offers them in one click, offline. */
#ifndef EFFDETD_SAMPLES_H
#define EFFDETD_SAMPLES_H

#include <stddef.h>

#include "sbuf.h"

typedef struct {
    const char *name;
    const unsigned char *data;
    size_t len;
} web_sample;

/* Fills *out with the sample called `name` (its bytes are static: never free them);
 * -1 when there is none. */
int web_sample_find(const char *name, web_sample *out);

/* {"samples":["NAME.jpg",...]} (the body of GET /samples). */
void web_samples_json(sbuf *b);

#endif
