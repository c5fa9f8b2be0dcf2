/*
 * Full k x k convolution, used once: the stem (3 input channels, 32-64 outputs). Each
 * output pixel is a sum over k*k*cin taps of a weight row of cout values, so the inner
 * loop runs over cout, contiguous in both the weights [ky][kx][cin][cout] and the
 * NHWC output.
 */
#include "mathfun.h"
#include "ops.h"

/* Output channels accumulated in registers at a time (two 256-bit vectors). */
#define CONV_COUT_BLOCK 16

typedef struct {
    const tensor *in;
    const float *w, *bias;
    int k, stride, pad_top, pad_left;
    act_kind act;
    tensor *out;
} conv2d_job;

/* One output pixel, channels [co0, co0 + CONV_COUT_BLOCK): the block's sums stay in
 * registers across all taps instead of going through memory cin*k*k times. */
static void conv_pixel_block(const conv2d_job *job, int iy0, int ix0, int co0, float *restrict out) {
    const tensor *in = job->in;
    int cin = in->c, cout = job->out->c, k = job->k;
    float acc[CONV_COUT_BLOCK];
    for (int j = 0; j < CONV_COUT_BLOCK; j++) acc[j] = job->bias ? job->bias[co0 + j] : 0.0f;
    for (int ky = 0; ky < k; ky++) {
        int iy = iy0 + ky;
        if (iy < 0 || iy >= in->h) continue;
        for (int kx = 0; kx < k; kx++) {
            int ix = ix0 + kx;
            if (ix < 0 || ix >= in->w) continue;
            const float *restrict src = in->data + ((size_t)iy * in->w + ix) * cin;
            const float *restrict wrow = job->w + ((size_t)(ky * k + kx) * cin) * cout + co0;
            for (int ci = 0; ci < cin; ci++, wrow += cout)
                for (int j = 0; j < CONV_COUT_BLOCK; j++) acc[j] = MADD(src[ci], wrow[j], acc[j]);
        }
    }
    for (int j = 0; j < CONV_COUT_BLOCK; j++) out[co0 + j] = acc[j];
}

/* Same for the last cout % CONV_COUT_BLOCK channels, accumulating in the output. */
static void conv_pixel_tail(const conv2d_job *job, int iy0, int ix0, int co0, float *restrict out) {
    const tensor *in = job->in;
    int cin = in->c, cout = job->out->c, k = job->k;
    for (int co = co0; co < cout; co++) out[co] = job->bias ? job->bias[co] : 0.0f;
    for (int ky = 0; ky < k; ky++) {
        int iy = iy0 + ky;
        if (iy < 0 || iy >= in->h) continue;
        for (int kx = 0; kx < k; kx++) {
            int ix = ix0 + kx;
            if (ix < 0 || ix >= in->w) continue;
            const float *restrict src = in->data + ((size_t)iy * in->w + ix) * cin;
            const float *restrict wrow = job->w + ((size_t)(ky * k + kx) * cin) * cout;
            for (int ci = 0; ci < cin; ci++, wrow += cout)
                for (int co = co0; co < cout; co++) out[co] = MADD(src[ci], wrow[co], out[co]);
        }
    }
}

static void conv2d_rows(void *p, int begin, int end) {
    const conv2d_job *job = p;
    const tensor *out = job->out;
    int cout = out->c;
    int full = cout - cout % CONV_COUT_BLOCK;
    for (int y = begin; y < end; y++) {
        int iy0 = y * job->stride - job->pad_top;
        float *orow = out->data + (size_t)y * out->w * cout;
        for (int x = 0; x < out->w; x++) {
            int ix0 = x * job->stride - job->pad_left;
            float *o = orow + (size_t)x * cout;
            for (int co0 = 0; co0 < full; co0 += CONV_COUT_BLOCK) conv_pixel_block(job, iy0, ix0, co0, o);
            if (full < cout) conv_pixel_tail(job, iy0, ix0, full, o);
        }
        activate_span(orow, (size_t)out->w * cout, job->act);
    }
}

void op_conv2d(threadpool *tp, const tensor *in, const float *w, const float *bias, int k, int stride,
               int pad_top, int pad_left, act_kind act, tensor *out) {
    conv2d_job job = {in, w, bias, k, stride, pad_top, pad_left, act, out};
    size_t row_work = (size_t)out->w * out->c * in->c * k * k;
    int grain = (int)(65536 / (row_work ? row_work : 1)) + 1;
    threadpool_run(tp, out->h, grain, conv2d_rows, &job);
}
