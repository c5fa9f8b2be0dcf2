/*
 * Max pool 3x3 stride 2 (BiFPN downsampling). Padding counts as -infinity, so a tap
 * outside the input is simply skipped; every window has at least one tap inside for
 * the paddings the network uses (before <= 1).
 */
#include <math.h>

#include "ops.h"

typedef struct {
    const tensor *in;
    int pad_top, pad_left;
    tensor *out;
} maxpool_job;

static void maxpool_rows(void *p, int begin, int end) {
    const maxpool_job *job = p;
    const tensor *in = job->in;
    const tensor *out = job->out;
    int c = in->c;
    for (int y = begin; y < end; y++) {
        int iy0 = 2 * y - job->pad_top;
        for (int x = 0; x < out->w; x++) {
            int ix0 = 2 * x - job->pad_left;
            float *restrict o = out->data + ((size_t)y * out->w + x) * c;
            for (int ci = 0; ci < c; ci++) o[ci] = -INFINITY;
            for (int iy = iy0; iy < iy0 + 3; iy++) {
                if (iy < 0 || iy >= in->h) continue;
                for (int ix = ix0; ix < ix0 + 3; ix++) {
                    if (ix < 0 || ix >= in->w) continue;
                    const float *restrict src = in->data + ((size_t)iy * in->w + ix) * c;
                    /* a > b ? a : b rather than fmaxf: vectorises to a single max. */
                    for (int ci = 0; ci < c; ci++) o[ci] = src[ci] > o[ci] ? src[ci] : o[ci];
                }
            }
        }
    }
}

void op_maxpool3s2(threadpool *tp, const tensor *in, int pad_top, int pad_left, tensor *out) {
    maxpool_job job = {in, pad_top, pad_left, out};
    int grain = (int)(65536 / ((size_t)out->w * out->c * 9 + 1)) + 1;
    threadpool_run(tp, out->h, grain, maxpool_rows, &job);
}
