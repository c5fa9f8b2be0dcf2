/*
 * Squeeze-and-excitation's gate applied to the pixels: x(y, x, ch) *= s[ch], in place.
 * The forward pass uses it when scaling the projection weights (op_scale_rows) would
 * be more multiplies.
 */
#include "ops/ops.h"

typedef struct {
    tensor *x;
    const float *scale; /* c gates */
} scale_channels_job;

static void scale_pixels(void *p, int begin, int end) {
    const scale_channels_job *job = p;
    int c = job->x->c;
    const float *restrict s = job->scale;
    for (int px = begin; px < end; px++) {
        float *restrict v = job->x->data + (size_t)px * c;
        for (int j = 0; j < c; j++) v[j] *= s[j];
    }
}

void op_scale_channels(threadpool *tp, tensor *x, const float *s) {
    scale_channels_job job = {x, s};
    int c = x->c;
    int grain = 16384 / (c > 0 ? c : 1) + 1;
    threadpool_run(tp, x->h * x->w, grain, scale_pixels, &job);
}
