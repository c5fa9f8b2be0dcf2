/*
 * Internal: a loaded model — the architecture plus every layer's weights, prepared
 * once at load: BatchNorm folded into the preceding conv, weights repacked into the
 * layouts the kernels read (lib/ops/ops.h). Immutable after effdet_model_load().
 */
#ifndef EFFDET_MODEL_H
#define EFFDET_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "effdet.h"
#include "model/arch.h"
#include "model/labels.h"

#define MODEL_MAX_HEAD_REPEATS 16

typedef struct {
    int cin, cout;
    float *w;      /* [cin][cout] */
    float *b;      /* [cout] */
    uint16_t *wbf; /* bf16 model: w in kernels.h's packed bf16 layout; NULL = this layer runs fp32 */
} pw_layer;

typedef struct {
    int c, k, stride;
    float *w; /* [k*k][c] */
    float *b; /* [c] (zeros when the conv has neither bias nor BN) */
} dw_layer;

typedef struct {
    int cin, cout, k, stride;
    float *w; /* [k][k][cin][cout] */
    float *b;
} conv_layer;

typedef struct {
    int c, rd;
    float *w1, *b1; /* reduce: [c][rd], [rd] */
    float *w2, *b2; /* expand: [rd][c], [c] */
} se_layer;

typedef struct {
    block_spec spec;
    pw_layer expand; /* IR blocks only */
    dw_layer dw;
    se_layer se;
    pw_layer project;
} block_layers;

/* A BiFPN input's optional lateral 1x1 conv + BN (cell 0, backbone widths != fpn). */
typedef struct {
    int has_conv;
    pw_layer conv;
} lateral_layer;

typedef struct {
    fpn_node_spec spec;
    float edge_w[3]; /* normalised-fusion weights as stored (clamped at run time) */
    lateral_layer lateral[3];
    dw_layer dw; /* after_combine: swish -> dw -> pw -> BN (folded) */
    pw_layer pw;
} fpn_node_layers;

typedef struct {
    int repeats;
    dw_layer dw[MODEL_MAX_HEAD_REPEATS];                    /* shared by all levels */
    pw_layer pw[MODEL_MAX_HEAD_REPEATS][EFFDET_NUM_LEVELS]; /* each level's own BN folded in */
    dw_layer pred_dw;
    pw_layer pred_pw;
} head_layers;

struct effdet_model {
    effdet_arch arch;
    effdet_info info;
    conv_layer stem;
    block_layers *blocks;   /* arch.num_blocks */
    lateral_layer p6_conv;  /* P5 -> P6 (then max pool) */
    fpn_node_layers *nodes; /* arch.fpn_repeats x arch.num_fpn_nodes */
    head_layers class_head, box_head;
    label_map labels;       /* class names */
    effdet_precision precision; /* of the 1x1 convs (effdet_load_opts) */
    /* every weight buffer, for freeing */
    void **allocs;
    int num_allocs, cap_allocs;
};

/* Fill m->labels from the metadata config (model_labels.c). */
effdet_status model_load_labels(effdet_model *m, const char *config_json, const char *path, effdet_error *err);

#endif
