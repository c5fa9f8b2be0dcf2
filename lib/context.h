/* Internal: a context — one worker's arena, thread pool and results. */
#ifndef EFFDET_CONTEXT_H
#define EFFDET_CONTEXT_H

#include "arena.h"
#include "model.h"
#include "kernels.h"
#include "postprocess.h"
#include "threadpool.h"

struct effdet_context {
    const effdet_model *m;
    const kernel_table *k; /* this CPU's kernels (or EFFDET_ISA's), chosen at creation */
    threadpool *tp;
    arena ar;
    int measure; /* forward pass only sizes the arena */
    int profiling;
    effdet_forward_timing timing;

    /* Persistent tensors, at the bottom of the arena (scratch goes above). */
    tensor input; /* NHWC image_h x image_w x 3 */
    tensor feat[3], fpn_in[2], fpn_out[EFFDET_NUM_LEVELS], cls[EFFDET_NUM_LEVELS], box[EFFDET_NUM_LEVELS];
    tensor nodes[2][ARCH_MAX_FPN_NODES]; /* BiFPN node outputs, ping-pong between cells */
    size_t scratch_base;

    /* Post-processing state (allocated once per context). */
    anchor_grid anchors;
    void *pp_scratch;
    effdet_detection *dets;
    uint8_t *letterbox_u8;
};

/* Lay out the persistent tensors (real or measure mode). */
void context_alloc_persistent(effdet_context *ctx);

/* The forward pass on ctx->input (NHWC). */
effdet_status forward_run(effdet_context *ctx, effdet_error *err);

#endif
