/* Embeds the sample images of models/samples/ into the daemon, like web/index.html
 * (daemon/web.c): the page's one-click samples must work with nothing installed and no
 * network. mk/samples.mk makes this object depend on the images. */
#include "samples.h"

#include <stdint.h>
#include <string.h>

/* The bytes of one file between two labels, and its size computed by the assembler. */
#define SAMPLE_INCBIN(sym, path)                                                                             \
    __asm__(".pushsection .rodata\n.balign 16\n" #sym ":\n.incbin \"" path "\"\n" #sym "_end:\n"             \
            ".balign 8\n" #sym "_size:\n.quad " #sym "_end - " #sym "\n.popsection\n");                      \
    extern const unsigned char sym[];                                                                        \
    extern const uint64_t sym##_size

SAMPLE_INCBIN(effdetd_sample_0, "models/samples/shapes_0183.jpg");
SAMPLE_INCBIN(effdetd_sample_1, "models/samples/shapes_0061.jpg");
SAMPLE_INCBIN(effdetd_sample_2, "models/samples/shapes_0149.jpg");
SAMPLE_INCBIN(effdetd_sample_3, "models/samples/shapes_0019.jpg");

static const struct {
    const char *name;
    const unsigned char *data;
    const uint64_t *size;
} table[] = {
    {"shapes_0183.jpg", effdetd_sample_0, &effdetd_sample_0_size},
    {"shapes_0061.jpg", effdetd_sample_1, &effdetd_sample_1_size},
    {"shapes_0149.jpg", effdetd_sample_2, &effdetd_sample_2_size},
    {"shapes_0019.jpg", effdetd_sample_3, &effdetd_sample_3_size},
};

#define NSAMPLES (sizeof table / sizeof table[0])

int web_sample_find(const char *name, web_sample *out) {
    for (size_t i = 0; i < NSAMPLES; i++)
        if (strcmp(name, table[i].name) == 0) {
            /* the size is read here: it is a link-time value, not a C constant */
            *out = (web_sample){table[i].name, table[i].data, (size_t)*table[i].size};
            return 0;
        }
    return -1;
}

void web_samples_json(sbuf *b) {
    sb_puts(b, "{\"samples\":[");
    for (size_t i = 0; i < NSAMPLES; i++) {
        if (i) sb_puts(b, ",");
        sb_json_str(b, table[i].name);
    }
    sb_puts(b, "]}");
}
