/* libFuzzer target: the config file parser (effdetd.conf and SIGHUP reloads). Every
 * parse that succeeds must leave each option within its documented bounds, and
 * what --check-config writes out must parse again. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_bounds(const effdetd_config *c) {
    for (const cfg_option *o = config_options(); o->name; o++) {
        const char *field = (const char *)c + o->offset;
        double v;
        switch (o->type) {
        case CFG_INT: v = *(const int *)field; break;
        case CFG_LONG: v = (double)*(const long long *)field; break;
        case CFG_DOUBLE: v = *(const double *)field; break;
        case CFG_STRING:
        case CFG_ENUM:
            if (!memchr(field, '\0', o->size)) abort();
            continue;
        default: continue;
        }
        if (o->min < o->max && (v < o->min || v > o->max)) abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static effdetd_config c, again;
    char err[512];
    config_defaults(&c);
    if (config_parse_text(&c, (const char *)data, size, "fuzz.conf", err, sizeof err) != 0) {
        if (!memchr(err, '\0', sizeof err) || !err[0]) abort(); /* a failure always says why */
        return 0;
    }
    check_bounds(&c);
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f) return 0;
    config_write(&c, f);
    fclose(f);
    config_defaults(&again);
    if (config_parse_text(&again, text, len, "written", err, sizeof err) != 0) abort();
    free(text);
    return 0;
}
