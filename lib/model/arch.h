/*
 * Internal: an EfficientDet architecture, fully derived from a handful of settings
 * (the paper's compound coefficient for named models, or custom metadata fields).
 * Nothing here depends on weights: effdet_describe() uses it alone.
 */
#ifndef EFFDET_ARCH_H
#define EFFDET_ARCH_H

#include "effdet.h"

#define ARCH_MAX_BLOCKS 96
#define ARCH_MAX_ASPECTS 8
#define ARCH_MAX_FPN_NODES 8

typedef enum { PAD_TF_SAME, PAD_SYMMETRIC } pad_mode;
typedef enum { FUSE_FASTATTN, FUSE_SUM } fuse_kind;
typedef enum { BLOCK_DS, BLOCK_IR } block_type;

/* One MBConv block of the backbone (docs/engine.md, "Backbone"). */
typedef struct {
    block_type type;
    int stage, index_in_stage;
    int k, stride;
    int in_ch, mid_ch, out_ch, se_ch;
    int skip; /* residual add: stride 1 and in == out */
} block_spec;

/* One BiFPN node (docs/engine.md, "BiFPN"): level and the ids of the tensors it fuses. */
typedef struct {
    int level;      /* 3..7 */
    int num_inputs; /* 2 or 3 */
    int inputs[3];  /* ids: 0..4 = cell inputs P3..P7, 5.. = earlier nodes */
} fpn_node_spec;

typedef struct {
    char name[64];
    char backbone[64];
    double width_mult, depth_mult;
    int image_h, image_w;
    int num_classes;
    int fpn_channels, fpn_repeats, head_repeats;
    int min_level, max_level; /* always 3, 7 */
    int num_scales;
    int num_aspects;
    float aspect[ARCH_MAX_ASPECTS][2]; /* (x factor, y factor) */
    double anchor_scale;
    pad_mode padding;
    int redundant_bias; /* tf variant: biases on convs that feed a BN */
    fuse_kind fusion;
    float backbone_bn_eps, fpn_bn_eps;
    int max_detection_points, max_det_per_image;

    /* derived by arch_derive() */
    int stem_ch;
    int num_blocks;
    block_spec blocks[ARCH_MAX_BLOCKS];
    int feature_block[3]; /* index of the last block of stages 2, 4, 6 (P3, P4, P5) */
    int feature_ch[3];
    int level_h[EFFDET_NUM_LEVELS], level_w[EFFDET_NUM_LEVELS];
    int num_anchors; /* per location */
    int num_fpn_nodes;
    fpn_node_spec fpn_nodes[ARCH_MAX_FPN_NODES];
} effdet_arch;

/* Fill the settings of a named model (tf_efficientdet_d0..d7, efficientdet_d0/d1).
 * num_classes <= 0 keeps the default (90). Calls arch_derive(). */
effdet_status arch_from_name(effdet_arch *a, const char *name, int num_classes, effdet_error *err);

/* Parse the JSON config string of a weights file's __metadata__ (a known name, or
 * custom fields); `where` names the file for messages. Calls arch_derive(). */
effdet_status arch_from_metadata(effdet_arch *a, const char *config_json, const char *where,
                                 effdet_error *err);

/* Derive blocks, feature taps, level sizes and BiFPN wiring from the settings. */
effdet_status arch_derive(effdet_arch *a, effdet_error *err);

/* EfficientNet's round_filters: scale by the width multiplier, round to a multiple of 8. */
int arch_round_channels(int ch, double width_mult);

/* Trainable parameter count (conv weights and biases, BN weight and bias, fusion edge
 * weights) — equals PyTorch's sum(p.numel() for p in model.parameters()). */
long long arch_param_count(const effdet_arch *a);

/* Public info view of an architecture. */
void arch_fill_info(const effdet_arch *a, effdet_info *info);

/* Where a k x k, stride-s window (conv or pool) goes over an in_h x in_w input: the
 * output size and the padding before (top/left) under the model's padding mode; the
 * rest of the window past the far edge is padding too. TF "SAME": out = ceil(in / s),
 * total padding max((out - 1) * s + k - in, 0), the odd pixel after; symmetric:
 * ((s - 1) + (k - 1)) / 2 on each side (docs/engine.md, "Padding"). The forward pass
 * takes every window's geometry from here. */
typedef struct {
    int k, stride;
    int out_h, out_w;
    int pad_top, pad_left;
} conv_geom;

conv_geom arch_conv_geom(pad_mode mode, int in_h, int in_w, int k, int stride);

#endif
