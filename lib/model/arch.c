/*
 * EfficientDet architectures: the paper's Table 1 for named models, EfficientNet
 * compound scaling of the B0 stage table for the backbone, and the BiFPN wiring —
 * all derived here from a few numbers, never read from a description file.
 */
#include "model/arch.h"

#include <json-c/json.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/status.h"

/* EfficientNet-B0 stage table (docs/engine.md, "Backbone"): type, expansion, kernel,
 * first stride, output channels, repeats. Stem has 32 channels. */
static const struct {
    block_type type;
    int expand, k, stride, out_ch, repeats;
} B0_STAGES[7] = {
    {BLOCK_DS, 1, 3, 1, 16, 1},  {BLOCK_IR, 6, 3, 2, 24, 2},  {BLOCK_IR, 6, 5, 2, 40, 2},
    {BLOCK_IR, 6, 3, 2, 80, 3},  {BLOCK_IR, 6, 5, 1, 112, 3}, {BLOCK_IR, 6, 5, 2, 192, 4},
    {BLOCK_IR, 6, 3, 1, 320, 1},
};
#define B0_STEM_CH 32

/* (width, depth) multipliers of EfficientNet-B0..B7. */
static const double BACKBONE_MULT[8][2] = {
    {1.0, 1.0}, {1.0, 1.1}, {1.1, 1.2}, {1.2, 1.4}, {1.4, 1.8}, {1.6, 2.2}, {1.8, 2.6}, {2.0, 3.1},
};

/* The paper's Table 1 as effdet implements it (D7 reuses B6 with a larger input and
 * anchor scale 5; D6/D7 fuse by plain sum). */
static const struct {
    const char *name;
    int backbone; /* B index */
    int image, fpn_ch, fpn_repeats, head_repeats;
    fuse_kind fusion;
    double anchor_scale;
    int tf; /* tf_ variant: TF-SAME padding, redundant biases, BN eps 1e-3 everywhere */
} NAMED[] = {
    {"tf_efficientdet_d0", 0, 512, 64, 3, 3, FUSE_FASTATTN, 4.0, 1},
    {"tf_efficientdet_d1", 1, 640, 88, 4, 3, FUSE_FASTATTN, 4.0, 1},
    {"tf_efficientdet_d2", 2, 768, 112, 5, 3, FUSE_FASTATTN, 4.0, 1},
    {"tf_efficientdet_d3", 3, 896, 160, 6, 4, FUSE_FASTATTN, 4.0, 1},
    {"tf_efficientdet_d4", 4, 1024, 224, 7, 4, FUSE_FASTATTN, 4.0, 1},
    {"tf_efficientdet_d5", 5, 1280, 288, 7, 4, FUSE_FASTATTN, 4.0, 1},
    {"tf_efficientdet_d6", 6, 1280, 384, 8, 5, FUSE_SUM, 4.0, 1},
    {"tf_efficientdet_d7", 6, 1536, 384, 8, 5, FUSE_SUM, 5.0, 1},
    {"efficientdet_d0", 0, 512, 64, 3, 3, FUSE_FASTATTN, 4.0, 0},
    {"efficientdet_d1", 1, 640, 88, 4, 3, FUSE_FASTATTN, 4.0, 0},
};
#define NUM_NAMED ((int)(sizeof NAMED / sizeof NAMED[0]))

static const char *const KNOWN_NAMES[] = {
    "tf_efficientdet_d0", "tf_efficientdet_d1", "tf_efficientdet_d2", "tf_efficientdet_d3",
    "tf_efficientdet_d4", "tf_efficientdet_d5", "tf_efficientdet_d6", "tf_efficientdet_d7",
    "efficientdet_d0",    "efficientdet_d1",    NULL,
};

const char *const *effdet_known_models(void) { return KNOWN_NAMES; }

int arch_round_channels(int ch, double width_mult) {
    /* timm's make_divisible(ch * w, 8): round to nearest multiple of 8, never below 8,
     * and never more than 10% below the exact product. */
    double v = ch * width_mult;
    int n = (int)((v + 4) / 8) * 8;
    if (n < 8) n = 8;
    if (n < 0.9 * v) n += 8;
    return n;
}

/* One axis of arch_conv_geom(). */
static void pad_axis(pad_mode mode, int in, int k, int stride, int *out, int *before) {
    if (mode == PAD_TF_SAME) {
        /* TF "SAME": output ceil(in / s); the odd pixel of padding goes after. */
        int o = (in + stride - 1) / stride;
        int total = (o - 1) * stride + k - in;
        if (total < 0) total = 0;
        *out = o;
        *before = total / 2;
    } else {
        int p = ((stride - 1) + (k - 1)) / 2;
        *out = (in + 2 * p - k) / stride + 1;
        *before = p;
    }
}

conv_geom arch_conv_geom(pad_mode mode, int in_h, int in_w, int k, int stride) {
    conv_geom g = {.k = k, .stride = stride};
    pad_axis(mode, in_h, k, stride, &g.out_h, &g.pad_top);
    pad_axis(mode, in_w, k, stride, &g.out_w, &g.pad_left);
    return g;
}

static void set_defaults(effdet_arch *a) {
    memset(a, 0, sizeof *a);
    a->num_classes = 90;
    a->min_level = 3;
    a->max_level = 7;
    a->num_scales = 3;
    a->num_aspects = 3;
    const float aspects[3][2] = {{1.0f, 1.0f}, {1.4f, 0.7f}, {0.7f, 1.4f}};
    memcpy(a->aspect, aspects, sizeof aspects);
    a->anchor_scale = 4.0;
    a->padding = PAD_TF_SAME;
    a->redundant_bias = 1;
    a->fusion = FUSE_FASTATTN;
    a->backbone_bn_eps = 1e-3f;
    a->fpn_bn_eps = 1e-3f;
    a->max_detection_points = 5000;
    a->max_det_per_image = 100;
}

static int find_named(const char *name) {
    for (int i = 0; i < NUM_NAMED; i++)
        if (strcmp(NAMED[i].name, name) == 0) return i;
    return -1;
}

static void apply_named(effdet_arch *a, int i) {
    snprintf(a->name, sizeof a->name, "%s", NAMED[i].name);
    int b = NAMED[i].backbone;
    snprintf(a->backbone, sizeof a->backbone, "%sefficientnet_b%d", NAMED[i].tf ? "tf_" : "", b);
    a->width_mult = BACKBONE_MULT[b][0];
    a->depth_mult = BACKBONE_MULT[b][1];
    a->image_h = a->image_w = NAMED[i].image;
    a->fpn_channels = NAMED[i].fpn_ch;
    a->fpn_repeats = NAMED[i].fpn_repeats;
    a->head_repeats = NAMED[i].head_repeats;
    a->fusion = NAMED[i].fusion;
    a->anchor_scale = NAMED[i].anchor_scale;
    if (!NAMED[i].tf) {
        /* PyTorch-trained variant: symmetric padding, no biases before BN, and timm's
         * default BN eps in the backbone. */
        a->padding = PAD_SYMMETRIC;
        a->redundant_bias = 0;
        a->backbone_bn_eps = 1e-5f;
    }
}

effdet_status arch_from_name(effdet_arch *a, const char *name, int num_classes, effdet_error *err) {
    int i = find_named(name);
    if (i < 0) {
        char known[512] = "";
        for (int k = 0; KNOWN_NAMES[k]; k++)
            snprintf(known + strlen(known), sizeof known - strlen(known), "%s%s", k ? ", " : "", KNOWN_NAMES[k]);
        return set_error(err, EFFDET_ERR_ARG, "unknown model '%s' (known: %s)", name, known);
    }
    set_defaults(a);
    apply_named(a, i);
    if (num_classes > 0) a->num_classes = num_classes;
    return arch_derive(a, err);
}

/* ---- derivation */

static effdet_status derive_backbone(effdet_arch *a, effdet_error *err) {
    a->stem_ch = arch_round_channels(B0_STEM_CH, a->width_mult);
    int in_ch = a->stem_ch, n = 0;
    for (int s = 0; s < 7; s++) {
        int out_ch = arch_round_channels(B0_STAGES[s].out_ch, a->width_mult);
        int repeats = (int)ceil(B0_STAGES[s].repeats * a->depth_mult);
        for (int r = 0; r < repeats; r++) {
            if (n >= ARCH_MAX_BLOCKS)
                return set_error(err, EFFDET_ERR_FORMAT, "depth multiplier %g gives more than %d blocks", a->depth_mult, ARCH_MAX_BLOCKS);
            block_spec *b = &a->blocks[n++];
            b->type = B0_STAGES[s].type;
            b->stage = s;
            b->index_in_stage = r;
            b->k = B0_STAGES[s].k;
            b->stride = r == 0 ? B0_STAGES[s].stride : 1;
            b->in_ch = in_ch;
            b->mid_ch = in_ch * B0_STAGES[s].expand;
            b->out_ch = out_ch;
            /* SE squeeze width follows the block's input width (timm divides the 0.25
             * ratio by the expansion); Python's round() is half-to-even. */
            b->se_ch = (int)nearbyint(0.25 * in_ch);
            if (b->se_ch < 1) b->se_ch = 1;
            b->skip = b->stride == 1 && in_ch == out_ch;
            in_ch = out_ch;
        }
        /* Stages 2, 4 and 6 (strides 8, 16, 32) feed the BiFPN as P3, P4, P5. */
        if (s == 2 || s == 4 || s == 6) {
            int f = (s - 2) / 2;
            a->feature_block[f] = n - 1;
            a->feature_ch[f] = out_ch;
        }
    }
    a->num_blocks = n;
    return EFFDET_OK;
}

/* effdet's bifpn_config(): top-down from max_level-1 to min_level, each node fusing the
 * level's latest tensor with the next coarser one; then bottom-up from min_level+1 to
 * max_level, fusing every tensor of the level with the next finer one. */
static void derive_fpn_nodes(effdet_arch *a) {
    int last_id[EFFDET_NUM_LEVELS][4], count[EFFDET_NUM_LEVELS];
    int nlev = EFFDET_NUM_LEVELS, next_id = nlev, n = 0;
    for (int l = 0; l < nlev; l++) {
        last_id[l][0] = l;
        count[l] = 1;
    }
    for (int l = nlev - 2; l >= 0; l--) {
        fpn_node_spec *nd = &a->fpn_nodes[n++];
        nd->level = a->min_level + l;
        nd->num_inputs = 2;
        nd->inputs[0] = last_id[l][count[l] - 1];
        nd->inputs[1] = last_id[l + 1][count[l + 1] - 1];
        last_id[l][count[l]++] = next_id++;
    }
    for (int l = 1; l < nlev; l++) {
        fpn_node_spec *nd = &a->fpn_nodes[n++];
        nd->level = a->min_level + l;
        nd->num_inputs = 0;
        for (int j = 0; j < count[l]; j++) nd->inputs[nd->num_inputs++] = last_id[l][j];
        nd->inputs[nd->num_inputs++] = last_id[l - 1][count[l - 1] - 1];
        last_id[l][count[l]++] = next_id++;
    }
    a->num_fpn_nodes = n;
}

effdet_status arch_derive(effdet_arch *a, effdet_error *err) {
    if (a->min_level != 3 || a->max_level != 7)
        return set_error(err, EFFDET_ERR_FORMAT, "levels %d..%d unsupported (only 3..7)", a->min_level, a->max_level);
    if (a->image_h < 32 || a->image_w < 32 || a->image_h > 4096 || a->image_w > 4096)
        return set_error(err, EFFDET_ERR_FORMAT, "image_size %dx%d out of range (32..4096)", a->image_h, a->image_w);
    if (a->num_classes < 1 || a->num_classes > 10000)
        return set_error(err, EFFDET_ERR_FORMAT, "num_classes %d out of range (1..10000)", a->num_classes);
    if (a->fpn_channels < 1 || a->fpn_channels > 4096 || a->fpn_repeats < 1 || a->fpn_repeats > 16 ||
        a->head_repeats < 1 || a->head_repeats > 16)
        return set_error(err, EFFDET_ERR_FORMAT, "fpn_channels %d / fpn_cell_repeats %d / box_class_repeats %d out of range",
                         a->fpn_channels, a->fpn_repeats, a->head_repeats);
    if (!(a->width_mult > 0.05 && a->width_mult <= 8) || !(a->depth_mult > 0.05 && a->depth_mult <= 8))
        return set_error(err, EFFDET_ERR_FORMAT, "backbone multipliers (%g, %g) out of range", a->width_mult, a->depth_mult);
    if (a->num_scales < 1 || a->num_aspects < 1 || a->num_scales * a->num_aspects > 64 || !(a->anchor_scale > 0))
        return set_error(err, EFFDET_ERR_FORMAT, "bad anchor settings (num_scales %d, %d aspect ratios, anchor_scale %g)",
                         a->num_scales, a->num_aspects, a->anchor_scale);
    if (!(a->backbone_bn_eps > 0) || !(a->fpn_bn_eps > 0))
        return set_error(err, EFFDET_ERR_FORMAT, "BN eps must be positive");
    if (a->max_detection_points < 1 || a->max_det_per_image < 1)
        return set_error(err, EFFDET_ERR_FORMAT, "max_detection_points / max_det_per_image must be positive");

    effdet_status st = derive_backbone(a, err);
    if (st) return st;
    /* Feature map sizes: halve with ceiling, as effdet's get_feat_sizes (and as both
     * padding styles produce for stride-2 convs and pools). */
    int h = a->image_h, w = a->image_w;
    for (int l = 1; l <= a->max_level; l++) {
        h = (h + 1) / 2;
        w = (w + 1) / 2;
        if (l >= a->min_level) {
            a->level_h[l - a->min_level] = h;
            a->level_w[l - a->min_level] = w;
        }
    }
    a->num_anchors = a->num_scales * a->num_aspects;
    if ((long long)a->num_anchors * a->num_classes > 1000000)
        return set_error(err, EFFDET_ERR_FORMAT, "num_classes %d too large for %d anchors", a->num_classes, a->num_anchors);
    derive_fpn_nodes(a);
    return EFFDET_OK;
}

/* ---- parameter count */

static long long conv_params(int cin, int cout, int k, int groups, int bias) {
    return (long long)cout * (cin / groups) * k * k + (bias ? cout : 0);
}

long long arch_param_count(const effdet_arch *a) {
    long long p = 0;
    const long long bn_backbone = 2; /* weight + bias per channel; running stats are buffers */
    p += conv_params(3, a->stem_ch, 3, 1, 0) + bn_backbone * a->stem_ch;
    for (int i = 0; i < a->num_blocks; i++) {
        const block_spec *b = &a->blocks[i];
        if (b->type == BLOCK_IR) p += conv_params(b->in_ch, b->mid_ch, 1, 1, 0) + 2LL * b->mid_ch;
        p += conv_params(b->mid_ch, b->mid_ch, b->k, b->mid_ch, 0) + 2LL * b->mid_ch;
        p += conv_params(b->mid_ch, b->se_ch, 1, 1, 1) + conv_params(b->se_ch, b->mid_ch, 1, 1, 1);
        p += conv_params(b->mid_ch, b->out_ch, 1, 1, 0) + 2LL * b->out_ch;
    }
    int F = a->fpn_channels, rb = a->redundant_bias;
    /* P6 from P5 (1x1 conv + BN when the widths differ); P7 is a pool only. */
    if (a->feature_ch[2] != F) p += conv_params(a->feature_ch[2], F, 1, 1, rb) + 2LL * F;
    for (int c = 0; c < a->fpn_repeats; c++) {
        for (int n = 0; n < a->num_fpn_nodes; n++) {
            const fpn_node_spec *nd = &a->fpn_nodes[n];
            if (a->fusion == FUSE_FASTATTN) p += nd->num_inputs;
            for (int j = 0; j < nd->num_inputs; j++) {
                int id = nd->inputs[j];
                if (c == 0 && id < 3 && a->feature_ch[id] != F) p += conv_params(a->feature_ch[id], F, 1, 1, rb) + 2LL * F;
            }
            p += conv_params(F, F, 3, F, 0) + conv_params(F, F, 1, 1, rb) + 2LL * F;
        }
    }
    int outs[2] = {a->num_anchors * a->num_classes, a->num_anchors * 4};
    for (int h = 0; h < 2; h++) {
        p += (long long)a->head_repeats * (conv_params(F, F, 3, F, 0) + conv_params(F, F, 1, 1, rb));
        p += (long long)a->head_repeats * EFFDET_NUM_LEVELS * 2 * F;
        p += conv_params(F, F, 3, F, 0) + conv_params(F, outs[h], 1, 1, 1);
    }
    return p;
}

void arch_fill_info(const effdet_arch *a, effdet_info *info) {
    memset(info, 0, sizeof *info);
    snprintf(info->name, sizeof info->name, "%s", a->name);
    snprintf(info->backbone, sizeof info->backbone, "%s", a->backbone);
    info->input_h = a->image_h;
    info->input_w = a->image_w;
    info->num_classes = a->num_classes;
    info->fpn_channels = a->fpn_channels;
    info->fpn_repeats = a->fpn_repeats;
    info->head_repeats = a->head_repeats;
    info->num_anchors = a->num_anchors;
    info->min_level = a->min_level;
    info->max_level = a->max_level;
    for (int l = 0; l < EFFDET_NUM_LEVELS; l++) {
        info->level_h[l] = a->level_h[l];
        info->level_w[l] = a->level_w[l];
    }
    for (int f = 0; f < 3; f++) info->feature_channels[f] = a->feature_ch[f];
    info->params = arch_param_count(a);
}

effdet_status effdet_describe(const char *name, int num_classes, effdet_info *out, effdet_error *err) {
    effdet_arch a;
    effdet_status st = arch_from_name(&a, name, num_classes, err);
    if (st) return st;
    arch_fill_info(&a, out);
    return EFFDET_OK;
}
