/* Internal: a context — one worker's arena, thread pool and results. */
#ifndef EFFDET_CONTEXT_H
#define EFFDET_CONTEXT_H

#include "core/arena.h"
#include "core/threadpool.h"
#include "effdet_debug.h"
#include "model/model.h"
#include "ops/kernels.h"
#include "post/postprocess.h"

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

/* Arena bytes one context of m needs: the forward pass in measure mode, which lays
 * everything out without memory or kernels (context.c; model.c calls it at load). */
size_t model_measure_arena(const effdet_model *m);

/* The forward pass on ctx->input (NHWC) (forward.c; effdet_forward() is its public
 * entry, on NCHW input). */
effdet_status forward_run(effdet_context *ctx, effdet_error *err);

#endif
