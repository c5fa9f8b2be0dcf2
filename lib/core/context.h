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
    const kernel_table *k;   /* this CPU's kernels (or EFFDET_ISA's), chosen at creation */
    int amx;                 /* bf16 model: its 1x1 convs run k->pwconv_amx (core/amx.h) */
    const char *amx_why_not; /* bf16 model without amx: why (a static string) */
    threadpool *tp;
    arena ar;         /* placed by the plan made at creation (arena.h) */
    int keep_tensors; /* the plan keeps feat, fpn_in and fpn_out to the end (effdet_debug.h) */
    int profiling;
    effdet_forward_timing timing;

    /* Where the last pass put its tensors. input is the pass's first buffer, at the same
     * place on every pass; cls and box live to the end of the pass; the others only
     * while alive (all of them with keep_tensors). */
    tensor input; /* NHWC image_h x image_w x 3 */
    tensor feat[3], fpn_in[2], fpn_out[EFFDET_NUM_LEVELS], cls[EFFDET_NUM_LEVELS], box[EFFDET_NUM_LEVELS];
    tensor nodes[2][ARCH_MAX_FPN_NODES]; /* BiFPN node outputs of the current and previous cell */

    /* Post-processing state (allocated once per context). */
    anchor_grid anchors;
    void *pp_scratch;
    effdet_detection *dets;
    void *letterbox_scratch; /* the letterbox's resize state (letterbox.h) */
    size_t letterbox_scratch_bytes;
    struct jpeg_split_scratch *jpeg_scratch; /* the split JPEG decoder's buffers (jpeg_decode.h) */
};

/* Arena bytes one single-threaded context of m needs: the plan of a pass that runs no
 * kernels (context.c; model.c calls it at load for effdet_info.arena_bytes). 0 when out
 * of memory. */
size_t model_measure_arena(const effdet_model *m);

/* The forward pass on ctx->input (NHWC) (forward.c; effdet_forward() is its public
 * entry, on NCHW input). With ctx->ar.planning it runs no kernels and records the
 * arena's takes and drops. */
effdet_status forward_run(effdet_context *ctx, effdet_error *err);

#endif
