/*
 * Max pool 3x3 stride 2 (BiFPN downsampling). Padding counts as -infinity, so a tap
 * outside the input is simply skipped; every window has at least one tap inside for
 * the paddings the network uses (before <= 1).
 */
#include <math.h>

#include "ops/mathfun.h"
#include "ops/ops.h"

typedef struct {
    const tensor *in;
    int pad_top, pad_left;
    tensor *out;
} maxpool_job;

/* One output pixel: the window's tap ranges are clipped once (padding never wins), then
 * each channel vector's maximum stays in a register across the taps. */
static void maxpool_pixel(const tensor *in, int iy0, int ix0, float *restrict o) {
    int c = in->c;
    int y0 = iy0 < 0 ? 0 : iy0, y1 = iy0 + 3 > in->h ? in->h : iy0 + 3;
    int x0 = ix0 < 0 ? 0 : ix0, x1 = ix0 + 3 > in->w ? in->w : ix0 + 3;
    int ci = 0;
#ifdef HAVE_VEXP
    for (; ci + VLEN <= c; ci += VLEN) {
        vfloat m = vsplat(-INFINITY);
        for (int iy = y0; iy < y1; iy++)
            for (int ix = x0; ix < x1; ix++)
                /* maxps(a, b) is exactly a > b ? a : b, NaN and signed zeros included. */
                m = vmax(vload(in->data + ((size_t)iy * in->w + ix) * c + ci), m);
        vstore(o + ci, m);
    }
#endif
    for (; ci < c; ci++) {
        float m = -INFINITY;
        for (int iy = y0; iy < y1; iy++)
            for (int ix = x0; ix < x1; ix++) {
                float v = in->data[((size_t)iy * in->w + ix) * c + ci];
                m = v > m ? v : m;
            }
        o[ci] = m;
    }
}

static void maxpool_rows(void *p, int begin, int end) {
    const maxpool_job *job = p;
    const tensor *in = job->in;
    const tensor *out = job->out;
    int c = in->c;
    for (int y = begin; y < end; y++)
        for (int x = 0; x < out->w; x++)
            maxpool_pixel(in, 2 * y - job->pad_top, 2 * x - job->pad_left,
                          out->data + ((size_t)y * out->w + x) * c);
}

void op_maxpool3s2(threadpool *tp, const tensor *in, int pad_top, int pad_left, tensor *out) {
    maxpool_job job = {in, pad_top, pad_left, out};
    int grain = (int)(65536 / ((size_t)out->w * out->c * 9 + 1)) + 1;
    threadpool_run(tp, out->h, grain, maxpool_rows, &job);
}
