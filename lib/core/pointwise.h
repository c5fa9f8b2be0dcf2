/*
 * Internal: the 1x1 convolutions of the forward pass, in the model's precision. Every
 * pointwise layer of the network goes through pointwise_run(), which picks the fp32
 * kernel (ctx->k->pwconv: ours or OpenBLAS per shape) or the bf16 one
 * (ctx->k->pwconv_bf16) from the layer itself: a layer of a bf16 model carries packed
 * bf16 weights (pw_layer.wbf), an fp32 model's never do. Code that builds a layer's
 * weights per request (the SE gate folded into an MBConv projection) does it with
 * pointwise_with_weights() + pointwise_fold(), which write the layout the same
 * precision reads.
 */
#ifndef EFFDET_POINTWISE_H
#define EFFDET_POINTWISE_H

#include "core/context.h"

/* out = act(in . l + bias) (ops.h's op_pwconv), on tp (may be NULL: this thread only). */
void pointwise_run(const effdet_context *ctx, threadpool *tp, const tensor *in, const pw_layer *l,
                   act_kind act, tensor *out);

/* Arena floats that a per-request copy of l's weights takes (fp32: cin x cout; bf16:
 * the packed layout, rounded up to whole floats). Count it in the planning pass. */
size_t pointwise_folded_floats(const pw_layer *l);

/* l with its weights to live in buf (pointwise_folded_floats(l) floats from the arena;
 * NULL in the planning pass) instead of the model's. */
pw_layer pointwise_with_weights(const pw_layer *l, void *buf);

/* Fill f (from pointwise_with_weights(l, ...)) with l's weights, input channel i scaled
 * by gate[i]: op_scale_rows in fp32, op_fold_bf16 (scale, then round) in bf16. */
void pointwise_fold(const effdet_context *ctx, threadpool *tp, const pw_layer *l, const float *gate,
                    pw_layer *f);

#endif
