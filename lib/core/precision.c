/*
 * The precision option (effdet.h): names, and whether this CPU can run it. The check is
 * the one effdet_context_create() applies, so a tool or the daemon can refuse a bf16
 * model with the same message before loading it, and a model never loads in a mode its
 * contexts would then refuse.
 */
#include <stdlib.h>
#include <string.h>

#include "core/cpu.h"
#include "core/status.h"
#include "effdet.h"

const char *effdet_precision_name(effdet_precision p) {
    switch (p) {
    case EFFDET_PRECISION_FP32: return "fp32";
    case EFFDET_PRECISION_BF16: return "bf16";
    }
    return NULL;
}

effdet_status effdet_precision_parse(const char *name, effdet_precision *out, effdet_error *err) {
    if (name && strcmp(name, "fp32") == 0) {
        *out = EFFDET_PRECISION_FP32;
        return EFFDET_OK;
    }
    if (name && strcmp(name, "bf16") == 0) {
        *out = EFFDET_PRECISION_BF16;
        return EFFDET_OK;
    }
    return set_error(err, EFFDET_ERR_ARG, "precision '%s': expected fp32 or bf16", name ? name : "(null)");
}

effdet_status effdet_precision_check(effdet_precision p, effdet_error *err) {
    if (p == EFFDET_PRECISION_FP32) return EFFDET_OK;
    if (p != EFFDET_PRECISION_BF16) return set_error(err, EFFDET_ERR_ARG, "precision %d: unknown", (int)p);
    cpu_features f;
    cpu_detect(&f);
    isa_level l;
    effdet_status st = cpu_select_level(&f, getenv("EFFDET_ISA"), &l, err);
    if (st) return st;
    return cpu_check_bf16(&f, l, err);
}

void effdet_load_opts_default(effdet_load_opts *o) {
    memset(o, 0, sizeof *o);
    o->precision = EFFDET_PRECISION_FP32;
}
