/*
 * The model config carried in a safetensors file's __metadata__.config (a JSON string,
 * effdet's own field names). A known architecture name supplies every size; any field
 * present overrides it, so custom models (backbone_multipliers, fpn sizes, ...) need
 * no code. Unsupported variants are refused by name rather than run wrongly.
 */
#include <json-c/json.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/status.h"
#include "model/arch.h"

typedef struct {
    json_object *root;
    const char *where;
    effdet_error *err;
} meta;

static json_object *field(const meta *m, const char *key) {
    json_object *v = NULL;
    if (!json_object_object_get_ex(m->root, key, &v)) return NULL;
    if (json_object_is_type(v, json_type_null)) return NULL;
    return v;
}

static effdet_status bad(const meta *m, const char *key, const char *what) {
    return set_error(m->err, EFFDET_ERR_FORMAT, "%s: metadata field '%s': %s", m->where, key, what);
}

static effdet_status get_int(const meta *m, const char *key, int *dst) {
    json_object *v = field(m, key);
    if (!v) return EFFDET_OK;
    if (!json_object_is_type(v, json_type_int)) return bad(m, key, "expected an integer");
    int64_t x = json_object_get_int64(v);
    if (x < -1000000 || x > 1000000) return bad(m, key, "integer out of range");
    *dst = (int)x;
    return EFFDET_OK;
}

static effdet_status get_number(const meta *m, const char *key, double *dst) {
    json_object *v = field(m, key);
    if (!v) return EFFDET_OK;
    if (!json_object_is_type(v, json_type_double) && !json_object_is_type(v, json_type_int))
        return bad(m, key, "expected a number");
    double x = json_object_get_double(v);
    if (!isfinite(x)) return bad(m, key, "not a finite number");
    *dst = x;
    return EFFDET_OK;
}

static effdet_status get_bool(const meta *m, const char *key, int *dst) {
    json_object *v = field(m, key);
    if (!v) return EFFDET_OK;
    if (!json_object_is_type(v, json_type_boolean)) return bad(m, key, "expected true or false");
    *dst = json_object_get_boolean(v);
    return EFFDET_OK;
}

static const char *get_string(const meta *m, const char *key) {
    json_object *v = field(m, key);
    return v && json_object_is_type(v, json_type_string) ? json_object_get_string(v) : NULL;
}

/* Fields whose only supported value is effdet's default: refuse anything else. */
static effdet_status require_string(const meta *m, const char *key, const char *const *allowed) {
    json_object *v = field(m, key);
    if (!v) return EFFDET_OK;
    if (!json_object_is_type(v, json_type_string)) return bad(m, key, "expected a string");
    const char *s = json_object_get_string(v);
    for (int i = 0; allowed[i]; i++)
        if (strcmp(s, allowed[i]) == 0) return EFFDET_OK;
    char msg[160];
    snprintf(msg, sizeof msg, "unsupported value '%.60s'", s);
    return bad(m, key, msg);
}

static effdet_status parse_image_size(const meta *m, effdet_arch *a) {
    json_object *v = field(m, "image_size");
    if (!v) return EFFDET_OK;
    if (json_object_is_type(v, json_type_int)) {
        a->image_h = a->image_w = json_object_get_int(v);
        return EFFDET_OK;
    }
    if (!json_object_is_type(v, json_type_array) || json_object_array_length(v) != 2 ||
        !json_object_is_type(json_object_array_get_idx(v, 0), json_type_int) ||
        !json_object_is_type(json_object_array_get_idx(v, 1), json_type_int))
        return bad(m, "image_size", "expected [height, width]");
    a->image_h = json_object_get_int(json_object_array_get_idx(v, 0));
    a->image_w = json_object_get_int(json_object_array_get_idx(v, 1));
    return EFFDET_OK;
}

static effdet_status parse_aspects(const meta *m, effdet_arch *a) {
    json_object *v = field(m, "aspect_ratios");
    if (!v) return EFFDET_OK;
    size_t n = json_object_is_type(v, json_type_array) ? json_object_array_length(v) : 0;
    if (n < 1 || n > ARCH_MAX_ASPECTS) return bad(m, "aspect_ratios", "expected a list of 1..8 [x, y] pairs");
    for (size_t i = 0; i < n; i++) {
        json_object *p = json_object_array_get_idx(v, i);
        if (!json_object_is_type(p, json_type_array) || json_object_array_length(p) != 2)
            return bad(m, "aspect_ratios", "expected [x, y] pairs");
        for (int j = 0; j < 2; j++) {
            double x = json_object_get_double(json_object_array_get_idx(p, j));
            if (!(x > 0 && x < 100)) return bad(m, "aspect_ratios", "factors must be positive numbers");
            a->aspect[i][j] = (float)x;
        }
    }
    a->num_aspects = (int)n;
    return EFFDET_OK;
}

/* "tf_efficientnet_b3" / "efficientnet_b3" -> B3's multipliers; or explicit
 * backbone_multipliers for custom backbones. */
static effdet_status parse_backbone(const meta *m, effdet_arch *a) {
    static const double mult[8][2] = {{1.0, 1.0}, {1.0, 1.1}, {1.1, 1.2}, {1.2, 1.4},
                                      {1.4, 1.8}, {1.6, 2.2}, {1.8, 2.6}, {2.0, 3.1}};
    json_object *bm = field(m, "backbone_multipliers");
    const char *bname = get_string(m, "backbone_name");
    if (bm) {
        json_object *w = NULL, *d = NULL;
        if (!json_object_is_type(bm, json_type_object) || !json_object_object_get_ex(bm, "channel_multiplier", &w) ||
            !json_object_object_get_ex(bm, "depth_multiplier", &d))
            return bad(m, "backbone_multipliers", "expected {\"channel_multiplier\": w, \"depth_multiplier\": d}");
        a->width_mult = json_object_get_double(w);
        a->depth_mult = json_object_get_double(d);
    } else if (bname) {
        int b = -1;
        if (sscanf(bname, "tf_efficientnet_b%d", &b) != 1 && sscanf(bname, "efficientnet_b%d", &b) != 1) b = -1;
        if (b < 0 || b > 7) return bad(m, "backbone_name", "unknown backbone (expected [tf_]efficientnet_b0..b7)");
        a->width_mult = mult[b][0];
        a->depth_mult = mult[b][1];
    }
    if (bname) snprintf(a->backbone, sizeof a->backbone, "%s", bname);
    if (a->width_mult == 0) return bad(m, "backbone_name", "missing (and no backbone_multipliers)");
    return EFFDET_OK;
}

static effdet_status parse_variant(const meta *m, effdet_arch *a) {
    static const char *const swish[] = {"swish", "silu", "SiLU", NULL};
    static const char *const yes_max[] = {"max", NULL};
    static const char *const nearest[] = {"nearest", NULL};
    effdet_status st;
    if ((st = require_string(m, "act_type", swish)) || (st = require_string(m, "downsample_type", yes_max)) ||
        (st = require_string(m, "upsample_type", nearest)))
        return st;
    int sep = 1, resample_bn = 1;
    if ((st = get_bool(m, "separable_conv", &sep)) || (st = get_bool(m, "apply_resample_bn", &resample_bn)) ||
        (st = get_bool(m, "redundant_bias", &a->redundant_bias)))
        return st;
    if (!sep) return bad(m, "separable_conv", "only separable convs are supported");
    if (!resample_bn) return bad(m, "apply_resample_bn", "only true is supported");

    const char *fpn = get_string(m, "fpn_name");
    if (fpn) {
        if (strcmp(fpn, "bifpn_fa") == 0) a->fusion = FUSE_FASTATTN;
        else if (strcmp(fpn, "bifpn_sum") == 0) a->fusion = FUSE_SUM;
        else return bad(m, "fpn_name", "unsupported (expected bifpn_fa or bifpn_sum)");
    }
    /* "padding" is the fixtures' explicit field; effdet's own is pad_type ('same' = TF). */
    const char *pad = get_string(m, "padding");
    if (!pad) pad = get_string(m, "pad_type");
    if (pad) {
        if (strcmp(pad, "tf_same") == 0 || strcmp(pad, "same") == 0) a->padding = PAD_TF_SAME;
        else if (strcmp(pad, "") == 0 || strcmp(pad, "symmetric") == 0) a->padding = PAD_SYMMETRIC;
        else return bad(m, "padding", "unsupported (expected tf_same or symmetric)");
    }
    return EFFDET_OK;
}

effdet_status arch_from_metadata(effdet_arch *a, const char *config_json, const char *where, effdet_error *err) {
    meta m = {NULL, where, err};
    effdet_status st = EFFDET_OK;
    if (!config_json) return set_error(err, EFFDET_ERR_FORMAT, "%s: no __metadata__.config (the model's settings)", where);
    m.root = json_tokener_parse(config_json);
    if (!m.root || !json_object_is_type(m.root, json_type_object)) {
        st = set_error(err, EFFDET_ERR_FORMAT, "%s: __metadata__.config is not a JSON object", where);
        goto done;
    }
    const char *name = get_string(&m, "name");
    if (!name) {
        st = bad(&m, "name", "missing");
        goto done;
    }
    arch_from_name(a, "tf_efficientdet_d0", 0, NULL); /* defaults */
    a->width_mult = 0;
    effdet_arch named;
    int is_named = arch_from_name(&named, name, 0, NULL) == EFFDET_OK;
    if (is_named) *a = named;
    snprintf(a->name, sizeof a->name, "%s", name);

    double anchor_scale = a->anchor_scale, bb_eps = a->backbone_bn_eps, fpn_eps = a->fpn_bn_eps;
    if ((st = parse_backbone(&m, a)) || (st = parse_variant(&m, a)) || (st = parse_image_size(&m, a)) ||
        (st = parse_aspects(&m, a)) || (st = get_int(&m, "num_classes", &a->num_classes)) ||
        (st = get_int(&m, "fpn_channels", &a->fpn_channels)) ||
        (st = get_int(&m, "fpn_cell_repeats", &a->fpn_repeats)) ||
        (st = get_int(&m, "box_class_repeats", &a->head_repeats)) ||
        (st = get_int(&m, "min_level", &a->min_level)) || (st = get_int(&m, "max_level", &a->max_level)) ||
        (st = get_int(&m, "num_scales", &a->num_scales)) ||
        (st = get_int(&m, "max_detection_points", &a->max_detection_points)) ||
        (st = get_int(&m, "max_det_per_image", &a->max_det_per_image)) ||
        (st = get_number(&m, "anchor_scale", &anchor_scale)) ||
        (st = get_number(&m, "backbone_bn_eps", &bb_eps)) || (st = get_number(&m, "fpn_bn_eps", &fpn_eps)))
        goto done;
    a->anchor_scale = anchor_scale;
    a->backbone_bn_eps = (float)bb_eps;
    a->fpn_bn_eps = (float)fpn_eps;
    if (!is_named && !field(&m, "fpn_channels")) {
        st = bad(&m, "fpn_channels", "missing (required for a custom model)");
        goto done;
    }
    st = arch_derive(a, err);
    if (st) {
        /* Prefix the derivation error with the file it came from. */
        char msg[sizeof err->msg];
        snprintf(msg, sizeof msg, "%s", err ? err->msg : "");
        st = set_error(err, st, "%s: %s", where, msg);
    }
done:
    json_object_put(m.root);
    return st;
}
