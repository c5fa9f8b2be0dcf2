/*
 * Contexts: one per worker thread. Everything a request needs is allocated here,
 * once: the arena (placed by the memory plan of arena.h), the thread pool, the anchor
 * grid and post-processing scratch.
 */
#include <cblas.h>
#include <stdlib.h>
#include <string.h>

#include "core/amx.h"
#include "core/context.h"
#include "core/cpu.h"
#include "core/status.h"
#include "image/jpeg_decode.h"

/* Record one pass's takes and drops (no kernels run) and place them (arena.h). */
static size_t plan_pass(effdet_context *ctx) {
    arena_free_plan(&ctx->ar);
    ctx->ar.planning = 1;
    ctx->ar.broken = 0;
    forward_run(ctx, NULL);
    ctx->ar.planning = 0;
    return arena_plan(&ctx->ar);
}

size_t model_measure_arena(const effdet_model *m) {
    effdet_context ctx;
    memset(&ctx, 0, sizeof ctx);
    ctx.m = m;
    size_t bytes = plan_pass(&ctx);
    arena_free_plan(&ctx.ar);
    return bytes;
}

/* Plan this context's arena (its thread count sets the band buffers, keep_tensors the
 * lifetimes) and allocate it. */
static effdet_status plan_arena(effdet_context *ctx, effdet_error *err) {
    size_t bytes = plan_pass(ctx);
    if (!bytes) return set_error(err, EFFDET_ERR_NOMEM, "out of memory planning the arena");
    free(ctx->ar.base);
    ctx->ar.cap = bytes;
    ctx->ar.base = aligned_alloc(ARENA_ALIGN, bytes); /* arena_plan's sizes are multiples of ARENA_ALIGN */
    if (!ctx->ar.base)
        return set_error(err, EFFDET_ERR_NOMEM, "out of memory allocating a %zu-byte arena", bytes);
    /* Where every pass puts the input (its first take), for the callers that write it. */
    ctx->input.data = ctx->ar.base + ctx->ar.blocks[0].offset / sizeof(float);
    return EFFDET_OK;
}

effdet_status effdet_context_keep_tensors(effdet_context *ctx, effdet_error *err) {
    if (!ctx) return set_error(err, EFFDET_ERR_ARG, "effdet_context_keep_tensors: NULL context");
    if (ctx->keep_tensors) return EFFDET_OK;
    ctx->keep_tensors = 1;
    return plan_arena(ctx, err);
}

size_t effdet_context_arena_bytes(const effdet_context *ctx) {
    return ctx->ar.cap;
}

effdet_status effdet_context_create(const effdet_model *m, int threads, effdet_context **out,
                                    effdet_error *err) {
    *out = NULL;
    if (!m) return set_error(err, EFFDET_ERR_ARG, "no model");
    if (threads < 1 || threads > 256)
        return set_error(err, EFFDET_ERR_ARG, "threads must be 1..256 (got %d)", threads);
    /* We parallelise GEMMs ourselves, per context; OpenBLAS's own threads would
     * oversubscribe the CPU as soon as two contexts run at once. */
    openblas_set_num_threads(1);
    effdet_context *ctx = calloc(1, sizeof *ctx);
    if (!ctx) return set_error(err, EFFDET_ERR_NOMEM, "out of memory");
    effdet_status st;
    ctx->m = m;
    if ((st = kernels_select(&ctx->k, err))) goto fail;
    /* A bf16 model loaded before EFFDET_ISA changed (or moved to another machine) would
     * otherwise reach a NULL kernel. */
    if (m->precision != EFFDET_PRECISION_FP32 && (st = effdet_precision_check(m->precision, err))) goto fail;
    if (m->precision == EFFDET_PRECISION_BF16) ctx->amx = amx_usable(ctx->k, &ctx->amx_why_not);
    if (threads > 1 && !(ctx->tp = threadpool_create(threads))) {
        st = set_error(err, EFFDET_ERR_NOMEM, "cannot start %d threads", threads);
        goto fail;
    }
    if ((st = plan_arena(ctx, err))) goto fail;
    if ((st = anchors_build(&ctx->anchors, &m->arch, err))) goto fail;
    ctx->pp_scratch = malloc(postprocess_scratch_bytes(&ctx->anchors, m->arch.max_detection_points));
    ctx->dets = malloc(sizeof(effdet_detection) * (size_t)m->arch.max_detection_points);
    /* image_h x image_w x 3 bytes: the resize state of any image up to ~16x the network
     * input per side (letterbox_normalize_nhwc allocates for larger ones) */
    ctx->letterbox_scratch_bytes = (size_t)m->arch.image_h * m->arch.image_w * 3;
    ctx->letterbox_scratch = malloc(ctx->letterbox_scratch_bytes);
    ctx->jpeg_scratch = jpeg_split_scratch_create(); /* empty until a large frame comes */
    if (!ctx->pp_scratch || !ctx->dets || !ctx->letterbox_scratch || !ctx->jpeg_scratch) {
        st = set_error(err, EFFDET_ERR_NOMEM, "out of memory");
        goto fail;
    }
    *out = ctx;
    return EFFDET_OK;
fail:
    effdet_context_free(ctx);
    return st;
}

void effdet_context_free(effdet_context *ctx) {
    if (!ctx) return;
    threadpool_free(ctx->tp);
    free(ctx->ar.base);
    arena_free_plan(&ctx->ar);
    anchors_free(&ctx->anchors);
    free(ctx->pp_scratch);
    free(ctx->dets);
    free(ctx->letterbox_scratch);
    jpeg_split_scratch_free(ctx->jpeg_scratch);
    free(ctx);
}

effdet_status effdet_get_tensor(const effdet_context *ctx, effdet_tensor_kind kind, int index,
                                effdet_tensor *out) {
    const tensor *t = NULL;
    /* Without keep_tensors only the outputs survive the pass. */
    if (!ctx->keep_tensors && kind != EFFDET_T_CLASS && kind != EFFDET_T_BOX) return EFFDET_ERR_ARG;
    switch (kind) {
    case EFFDET_T_FEAT: t = index >= 0 && index < 3 ? &ctx->feat[index] : NULL; break;
    case EFFDET_T_FPN_IN: t = index >= 0 && index < 2 ? &ctx->fpn_in[index] : NULL; break;
    case EFFDET_T_FPN: t = index >= 0 && index < EFFDET_NUM_LEVELS ? &ctx->fpn_out[index] : NULL; break;
    case EFFDET_T_CLASS: t = index >= 0 && index < EFFDET_NUM_LEVELS ? &ctx->cls[index] : NULL; break;
    case EFFDET_T_BOX: t = index >= 0 && index < EFFDET_NUM_LEVELS ? &ctx->box[index] : NULL; break;
    }
    if (!t || !t->data) return EFFDET_ERR_ARG;
    out->data = t->data;
    out->h = t->h, out->w = t->w, out->c = t->c;
    return EFFDET_OK;
}

const char *effdet_context_isa(const effdet_context *ctx) {
    return ctx->k->isa;
}

const char *effdet_context_bf16_kernel(const effdet_context *ctx, const char **why_not_amx) {
    if (why_not_amx) *why_not_amx = NULL;
    if (ctx->m->precision != EFFDET_PRECISION_BF16) return NULL;
    if (ctx->amx) return "amx";
    if (why_not_amx) *why_not_amx = ctx->amx_why_not;
    return "avx512_bf16";
}

void effdet_context_set_profiling(effdet_context *ctx, int on) {
    ctx->profiling = on;
}
const effdet_forward_timing *effdet_context_timing(const effdet_context *ctx) {
    return &ctx->timing;
}

const char *effdet_op_kind_name(effdet_op_kind k) {
    static const char *names[EFFDET_OP_COUNT] = {"stem",    "pwconv",   "dwconv", "se",
                                                 "maxpool", "upsample", "fuse",   "other"};
    return k >= 0 && k < EFFDET_OP_COUNT ? names[k] : "unknown";
}
