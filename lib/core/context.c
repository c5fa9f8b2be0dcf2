/*
 * Contexts: one per worker thread. Everything a request needs is allocated here,
 * once: the arena (sized by the model's measure pass), the thread pool, the anchor
 * grid and post-processing scratch.
 */
#include <cblas.h>
#include <stdlib.h>
#include <string.h>

#include "core/context.h"
#include "core/cpu.h"
#include "core/status.h"

static tensor persistent(effdet_context *ctx, int h, int w, int c) {
    tensor t = {arena_floats(&ctx->ar, (size_t)h * w * c), h, w, c};
    return t;
}

void context_alloc_persistent(effdet_context *ctx) {
    const effdet_arch *a = &ctx->m->arch;
    int F = a->fpn_channels;
    ctx->input = persistent(ctx, a->image_h, a->image_w, 3);
    for (int f = 0; f < 3; f++) {
        int l = f; /* P3..P5 */
        ctx->feat[f] = persistent(ctx, a->level_h[l], a->level_w[l], a->feature_ch[f]);
    }
    for (int i = 0; i < 2; i++) ctx->fpn_in[i] = persistent(ctx, a->level_h[3 + i], a->level_w[3 + i], F);
    for (int s = 0; s < 2 && s < a->fpn_repeats; s++)
        for (int n = 0; n < a->num_fpn_nodes; n++) {
            int l = a->fpn_nodes[n].level - a->min_level;
            ctx->nodes[s][n] = persistent(ctx, a->level_h[l], a->level_w[l], F);
        }
    for (int l = 0; l < EFFDET_NUM_LEVELS; l++) {
        ctx->cls[l] = persistent(ctx, a->level_h[l], a->level_w[l], a->num_anchors * a->num_classes);
        ctx->box[l] = persistent(ctx, a->level_h[l], a->level_w[l], a->num_anchors * 4);
    }
    ctx->scratch_base = arena_mark(&ctx->ar);
}

/* Size of the arena: run the forward pass in measure mode (no memory, no kernels). */
size_t model_measure_arena(const effdet_model *m) {
    effdet_context ctx;
    memset(&ctx, 0, sizeof ctx);
    ctx.m = m;
    ctx.measure = 1;
    ctx.ar.measure = 1;
    context_alloc_persistent(&ctx);
    forward_run(&ctx, NULL);
    return ctx.ar.peak;
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
    ctx->ar.cap = m->info.arena_bytes;
    ctx->ar.base = aligned_alloc(ARENA_ALIGN, (ctx->ar.cap + ARENA_ALIGN - 1) / ARENA_ALIGN * ARENA_ALIGN);
    if (!ctx->ar.base) {
        st = set_error(err, EFFDET_ERR_NOMEM, "out of memory allocating a %zu-byte arena", ctx->ar.cap);
        goto fail;
    }
    if (threads > 1 && !(ctx->tp = threadpool_create(threads))) {
        st = set_error(err, EFFDET_ERR_NOMEM, "cannot start %d threads", threads);
        goto fail;
    }
    context_alloc_persistent(ctx);
    if ((st = anchors_build(&ctx->anchors, &m->arch, err))) goto fail;
    ctx->pp_scratch = malloc(postprocess_scratch_bytes(&ctx->anchors, m->arch.max_detection_points));
    ctx->dets = malloc(sizeof(effdet_detection) * (size_t)m->arch.max_detection_points);
    ctx->letterbox_u8 = malloc((size_t)m->arch.image_h * m->arch.image_w * 3);
    if (!ctx->pp_scratch || !ctx->dets || !ctx->letterbox_u8) {
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
    anchors_free(&ctx->anchors);
    free(ctx->pp_scratch);
    free(ctx->dets);
    free(ctx->letterbox_u8);
    free(ctx);
}

effdet_status effdet_get_tensor(const effdet_context *ctx, effdet_tensor_kind kind, int index,
                                effdet_tensor *out) {
    const tensor *t = NULL;
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
