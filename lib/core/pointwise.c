/* The forward pass's 1x1 convolutions in the model's precision (pointwise.h). */
#include "core/pointwise.h"

void pointwise_run(const effdet_context *ctx, threadpool *tp, const tensor *in, const pw_layer *l,
                   act_kind act, tensor *out) {
    if (l->wbf)
        (ctx->amx ? ctx->k->pwconv_amx : ctx->k->pwconv_bf16)(tp, in, l->wbf, l->b, act, out);
    else
        ctx->k->pwconv(tp, in, l->w, l->b, act, out);
}

size_t pointwise_folded_floats(const pw_layer *l) {
    if (l->wbf)
        return (bf16_packed_elems(l->cin, l->cout) * sizeof(uint16_t) + sizeof(float) - 1) / sizeof(float);
    return (size_t)l->cin * l->cout;
}

pw_layer pointwise_with_weights(const pw_layer *l, void *buf) {
    pw_layer f = *l;
    if (l->wbf) {
        f.wbf = buf;
        f.w = NULL; /* only the packed copy is folded */
    } else {
        f.w = buf;
    }
    return f;
}

void pointwise_fold(const effdet_context *ctx, threadpool *tp, const pw_layer *l, const float *gate,
                    pw_layer *f) {
    if (l->wbf)
        ctx->k->fold_bf16(tp, l->w, gate, l->cin, l->cout, f->wbf);
    else
        ctx->k->scale_rows(tp, l->w, gate, l->cin, l->cout, f->w);
}
