/*
 * The EfficientDet forward pass: backbone (stem + MBConv blocks) -> extra levels P6,
 * P7 -> BiFPN cells -> class and box heads, all on channels-last tensors carved out of
 * the context's arena. Every op call goes through OP(), which skips the kernel in
 * measure mode (sizing the arena at load time) and times it when profiling is on.
 */
#include <string.h>

#include "core/clock.h"
#include "core/context.h"
#include "core/fpenv.h"
#include "core/pointwise.h"
#include "core/status.h"

/* Kernels run unless the pass only measures, or an allocation did not fit (a sizing
 * bug: forward_run() then reports it instead of writing through NULL). */
static int computing(const effdet_context *ctx) { return !ctx->measure && !ctx->ar.overflow; }

#define OP(ctx, kind, call)                                                                                  \
    do {                                                                                                     \
        if (!computing(ctx)) break;                                                                           \
        double t0_ = (ctx)->profiling ? now_ms() : 0;                                                        \
        call;                                                                                                \
        if ((ctx)->profiling) (ctx)->timing.op_ms[kind] += now_ms() - t0_;                                   \
    } while (0)

static tensor new_tensor(effdet_context *ctx, int h, int w, int c) {
    tensor t = {arena_floats(&ctx->ar, (size_t)h * w * c), h, w, c};
    return t;
}

/* In the model's precision (core/pointwise.h). */
static void pointwise(effdet_context *ctx, const tensor *in, const pw_layer *l, act_kind act, tensor *out) {
    OP(ctx, EFFDET_OP_PWCONV, pointwise_run(ctx, ctx->tp, in, l, act, out));
}

/* A k x k, stride-s window over `in`, padded per the model's style. */
static conv_geom window(const effdet_context *ctx, const tensor *in, int k, int stride) {
    return arch_conv_geom(ctx->m->arch.padding, in->h, in->w, k, stride);
}

/* Depthwise conv into out, which has the window's output size. */
static void depthwise_into(effdet_context *ctx, const tensor *in, const dw_layer *l, const conv_geom *g,
                           act_kind act, tensor *out) {
    OP(ctx, EFFDET_OP_DWCONV,
       ctx->k->dwconv(ctx->tp, in, l->w, l->b, g->k, g->stride, g->pad_top, g->pad_left, act, out));
}

/* Depthwise conv into a new tensor. */
static tensor depthwise(effdet_context *ctx, const tensor *in, const dw_layer *l, act_kind act) {
    conv_geom g = window(ctx, in, l->k, l->stride);
    tensor out = new_tensor(ctx, g.out_h, g.out_w, in->c);
    depthwise_into(ctx, in, l, &g, act, &out);
    return out;
}

/* op_maxpool3s2: a 3 x 3 window, stride 2. */
static void maxpool_into(effdet_context *ctx, const tensor *in, tensor *out) {
    conv_geom g = window(ctx, in, 3, 2);
    OP(ctx, EFFDET_OP_POOL, ctx->k->maxpool3s2(ctx->tp, in, g.pad_top, g.pad_left, out));
}

/* ---------------------------------------------------------------- backbone */

static tensor run_stem(effdet_context *ctx) {
    const conv_layer *s = &ctx->m->stem;
    conv_geom g = window(ctx, &ctx->input, s->k, s->stride);
    tensor out = new_tensor(ctx, g.out_h, g.out_w, s->cout);
    OP(ctx, EFFDET_OP_STEM,
       ctx->k->conv2d(ctx->tp, &ctx->input, s->w, s->b, g.k, g.stride, g.pad_top, g.pad_left, ACT_SWISH, &out));
    return out;
}

/* MBConv: [expand 1x1 + swish] -> depthwise + swish -> SE -> project 1x1 -> [+ x].
 * SE never makes its own pass over the depthwise output: the depthwise conv returns
 * per-row channel sums for the means, and the gate scales the projection weights
 * (mid x out multiplies) instead of the h x w x mid activation, whichever is cheaper. */
static tensor run_block(effdet_context *ctx, const block_layers *bl, const tensor *x) {
    const block_spec *b = &bl->spec;
    tensor e = *x;
    if (b->type == BLOCK_IR) {
        e = new_tensor(ctx, x->h, x->w, b->mid_ch);
        pointwise(ctx, x, &bl->expand, ACT_SWISH, &e);
    }
    const dw_layer *dw = &bl->dw;
    conv_geom g = window(ctx, &e, dw->k, dw->stride);
    tensor d = new_tensor(ctx, g.out_h, g.out_w, e.c);
    float *row_sums = arena_floats(&ctx->ar, (size_t)g.out_h * e.c);
    OP(ctx, EFFDET_OP_DWCONV,
       ctx->k->dwconv_sum(ctx->tp, &e, dw->w, dw->b, g.k, g.stride, g.pad_top, g.pad_left, ACT_SWISH, &d, row_sums));

    const se_layer *se = &bl->se;
    float *gate = arena_floats(&ctx->ar, (size_t)d.c);
    float *se_scratch = arena_floats(&ctx->ar, (size_t)se->rd);
    pw_layer project = bl->project;
    /* Folding reads the weights cold (from L3/DRAM) while d is still in L2 from the
     * depthwise conv: measured ~3x the cost per multiply, so fold only when it is at
     * least 3x fewer multiplies (every D0 stage but the 16x16 ones). A bf16 model folds
     * into its packed bf16 layout (core/pointwise.h). */
    int fold = (size_t)project.cout * 3 <= (size_t)d.h * d.w;
    if (fold) {
        float *buf = arena_floats(&ctx->ar, pointwise_folded_floats(&project));
        project = pointwise_with_weights(&bl->project, buf);
    }
    OP(ctx, EFFDET_OP_SE, {
        ctx->k->se_gates(ctx->tp, row_sums, d.h, d.h * d.w, d.c, se->w1, se->b1, se->rd, se->w2, se->b2,
                         se_scratch, gate);
        if (fold)
            pointwise_fold(ctx, ctx->tp, &bl->project, gate, &project);
        else
            ctx->k->scale_channels(ctx->tp, &d, gate);
    });

    tensor y = new_tensor(ctx, d.h, d.w, b->out_ch);
    pointwise(ctx, &d, &project, ACT_NONE, &y);
    if (b->skip) OP(ctx, EFFDET_OP_OTHER, ctx->k->add(ctx->tp, y.data, x->data, tensor_numel(&y)));
    return y;
}

static void run_backbone(effdet_context *ctx) {
    const effdet_arch *a = &ctx->m->arch;
    size_t x_mark = arena_mark(&ctx->ar);
    tensor x = run_stem(ctx);
    for (int i = 0; i < a->num_blocks; i++) {
        tensor y = run_block(ctx, &ctx->m->blocks[i], &x);
        /* Keep the block output at the bottom of the scratch area so the next block's
         * expansion can reuse everything above it. */
        arena_release(&ctx->ar, x_mark);
        tensor nx = new_tensor(ctx, y.h, y.w, y.c);
        if (computing(ctx)) memmove(nx.data, y.data, tensor_numel(&y) * sizeof(float));
        x = nx;
        for (int f = 0; f < 3; f++)
            if (a->feature_block[f] == i && computing(ctx))
                memcpy(ctx->feat[f].data, x.data, tensor_numel(&x) * sizeof(float));
    }
    arena_release(&ctx->ar, x_mark);
}

/* ------------------------------------------------------------------- BiFPN */

/* P6 = pool(BN(conv(P5))) (conv only when widths differ), P7 = pool(P6). */
static void run_extra_levels(effdet_context *ctx) {
    size_t mark = arena_mark(&ctx->ar);
    tensor p5 = ctx->feat[2];
    if (ctx->m->p6_conv.has_conv) {
        tensor t = new_tensor(ctx, p5.h, p5.w, ctx->m->arch.fpn_channels);
        pointwise(ctx, &p5, &ctx->m->p6_conv.conv, ACT_NONE, &t);
        p5 = t;
    }
    maxpool_into(ctx, &p5, &ctx->fpn_in[0]);
    maxpool_into(ctx, &ctx->fpn_in[0], &ctx->fpn_in[1]);
    arena_release(&ctx->ar, mark);
}

/* Bring one node input to the node's width (lateral conv) and size (pool/upsample). */
static tensor resample_input(effdet_context *ctx, const tensor *src, const lateral_layer *lat,
                             const tensor *node) {
    tensor t = *src;
    if (lat->has_conv) {
        tensor c = new_tensor(ctx, t.h, t.w, lat->conv.cout);
        pointwise(ctx, &t, &lat->conv, ACT_NONE, &c);
        t = c;
    }
    if (t.h == node->h && t.w == node->w) return t;
    tensor r = new_tensor(ctx, node->h, node->w, t.c);
    if (t.h > node->h)
        maxpool_into(ctx, &t, &r);
    else
        OP(ctx, EFFDET_OP_UPSAMPLE, ctx->k->upsample_nearest(ctx->tp, &t, &r));
    return r;
}

/* fuse -> swish -> depthwise 3x3 -> pointwise (+BN folded), no activation after. */
static void run_fpn_node(effdet_context *ctx, const fpn_node_layers *nl, const tensor *const *ids,
                         tensor *out) {
    size_t mark = arena_mark(&ctx->ar);
    tensor ins[3];
    const tensor *inp[3];
    for (int j = 0; j < nl->spec.num_inputs; j++) {
        ins[j] = resample_input(ctx, ids[nl->spec.inputs[j]], &nl->lateral[j], out);
        inp[j] = &ins[j];
    }
    tensor fused = new_tensor(ctx, out->h, out->w, out->c);
    const float *wts = ctx->m->arch.fusion == FUSE_FASTATTN ? nl->edge_w : NULL;
    OP(ctx, EFFDET_OP_FUSE, ctx->k->fuse(ctx->tp, inp, nl->spec.num_inputs, wts, ACT_SWISH, &fused));
    tensor d = depthwise(ctx, &fused, &nl->dw, ACT_NONE);
    pointwise(ctx, &d, &nl->pw, ACT_NONE, out);
    arena_release(&ctx->ar, mark);
}

static void run_bifpn(effdet_context *ctx) {
    const effdet_arch *a = &ctx->m->arch;
    const tensor *ids[EFFDET_NUM_LEVELS + ARCH_MAX_FPN_NODES];
    for (int f = 0; f < 3; f++) ids[f] = &ctx->feat[f];
    ids[3] = &ctx->fpn_in[0];
    ids[4] = &ctx->fpn_in[1];
    for (int c = 0; c < a->fpn_repeats; c++) {
        const fpn_node_layers *cell = &ctx->m->nodes[c * a->num_fpn_nodes];
        tensor *set = ctx->nodes[c % 2];
        for (int n = 0; n < a->num_fpn_nodes; n++) {
            run_fpn_node(ctx, &cell[n], ids, &set[n]);
            ids[EFFDET_NUM_LEVELS + n] = &set[n];
        }
        /* The cell's output at each level is the last node computed at that level. */
        for (int n = 0; n < a->num_fpn_nodes; n++) ids[a->fpn_nodes[n].level - a->min_level] = &set[n];
    }
    for (int l = 0; l < EFFDET_NUM_LEVELS; l++) ctx->fpn_out[l] = *ids[l];
}

/* ------------------------------------------------------------------- heads */

/* repeats x (depthwise -> pointwise + level BN -> swish), then the predictor. Two
 * scratch tensors alternate: dw reads x and writes A, pw reads A and writes B = x. */
static void run_head(effdet_context *ctx, const head_layers *h, int level, tensor *out) {
    size_t mark = arena_mark(&ctx->ar);
    tensor x = ctx->fpn_out[level];
    tensor A = new_tensor(ctx, x.h, x.w, x.c), B = new_tensor(ctx, x.h, x.w, x.c);
    for (int r = 0; r < h->repeats; r++) {
        conv_geom g = window(ctx, &x, h->dw[r].k, h->dw[r].stride); /* 3 x 3, stride 1: same size */
        depthwise_into(ctx, &x, &h->dw[r], &g, ACT_NONE, &A);
        pointwise(ctx, &A, &h->pw[r][level], ACT_SWISH, &B);
        x = B;
    }
    conv_geom g = window(ctx, &x, h->pred_dw.k, h->pred_dw.stride);
    depthwise_into(ctx, &x, &h->pred_dw, &g, ACT_NONE, &A);
    pointwise(ctx, &A, &h->pred_pw, ACT_NONE, out);
    arena_release(&ctx->ar, mark);
}

effdet_status forward_run(effdet_context *ctx, effdet_error *err) {
    fpenv_saved fp = fpenv_enter();
    arena_release(&ctx->ar, ctx->scratch_base);
    memset(&ctx->timing, 0, sizeof ctx->timing);
    double t0 = now_ms();
    run_backbone(ctx);
    double t1 = now_ms();
    run_extra_levels(ctx);
    run_bifpn(ctx);
    double t2 = now_ms();
    for (int l = 0; l < EFFDET_NUM_LEVELS; l++) {
        run_head(ctx, &ctx->m->class_head, l, &ctx->cls[l]);
        run_head(ctx, &ctx->m->box_head, l, &ctx->box[l]);
    }
    double t3 = now_ms();
    ctx->timing.backbone_ms = t1 - t0;
    ctx->timing.bifpn_ms = t2 - t1;
    ctx->timing.heads_ms = t3 - t2;
    ctx->timing.total_ms = t3 - t0;
    fpenv_leave(fp);
    if (ctx->ar.overflow)
        return set_error(err, EFFDET_ERR_INTERNAL, "arena overflow (%zu bytes): sizing bug", ctx->ar.cap);
    return EFFDET_OK;
}

/* Public entry: the caller's NCHW input into the context's NHWC input tensor, then the
 * pass. */
effdet_status effdet_forward(effdet_context *ctx, const float *input_nchw, effdet_error *err) {
    if (!ctx || !input_nchw) return set_error(err, EFFDET_ERR_ARG, "effdet_forward: NULL argument");
    tensor *in = &ctx->input;
    size_t hw = (size_t)in->h * in->w;
    for (size_t i = 0; i < hw; i++)
        for (int c = 0; c < 3; c++) in->data[i * 3 + c] = input_nchw[c * hw + i];
    return forward_run(ctx, err);
}
