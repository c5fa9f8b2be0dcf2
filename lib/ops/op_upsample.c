/*
 * Nearest-neighbour upsampling (BiFPN top-down path): output (y, x) reads input
 * (floor(y * in_h / out_h), floor(x * in_w / out_w)), like torch's "nearest" mode, so
 * non-integer ratios (odd sizes) pick the same source pixels as the reference.
 */
#include <string.h>

#include "ops/ops.h"

typedef struct {
    const tensor *in;
    tensor *out;
} upsample_job;

static void upsample_rows(void *p, int begin, int end) {
    const upsample_job *job = p;
    const tensor *in = job->in;
    const tensor *out = job->out;
    int c = in->c;
    size_t pixel_bytes = (size_t)c * sizeof(float);
    size_t row_bytes = (size_t)out->w * pixel_bytes;
    for (int y = begin; y < end; y++) {
        int iy = (int)((long long)y * in->h / out->h);
        float *orow = out->data + (size_t)y * out->w * c;
        /* The row above came from the same input row (every other row at 2x): one
         * row-sized copy instead of out->w pixel copies. */
        if (y > begin && (int)((long long)(y - 1) * in->h / out->h) == iy) {
            memcpy(orow, orow - (size_t)out->w * c, row_bytes);
            continue;
        }
        const float *irow = in->data + (size_t)iy * in->w * c;
        for (int x = 0; x < out->w; x++) {
            int ix = (int)((long long)x * in->w / out->w);
            memcpy(orow + (size_t)x * c, irow + (size_t)ix * c, pixel_bytes);
        }
    }
}

void op_upsample_nearest(threadpool *tp, const tensor *in, tensor *out) {
    upsample_job job = {in, out};
    int grain = (int)(65536 / ((size_t)out->w * out->c + 1)) + 1;
    threadpool_run(tp, out->h, grain, upsample_rows, &job);
}
