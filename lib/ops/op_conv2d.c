/*
 * Full k x k convolution, used once: the stem (3 input channels, 32-64 outputs). The
 * k taps of one kernel row of a pixel are k*cin contiguous floats of the NHWC input,
 * and the weights [ky][kx][cin][cout] hold a row of cout outputs per tap, so a pixel is
 * k*k*cin "broadcast one input, multiply-add a weight row" steps. Interior pixels go in
 * blocks of 8 with two output vectors each (16 accumulators in registers): each
 * weight-vector load serves 8 pixels and each input broadcast 2 vectors, and the
 * activation is applied before the store. Pixels whose window crosses the padding take
 * a per-pixel path that skips the taps outside.
 */
#include "ops/mathfun.h"
#include "ops/ops.h"

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

/* Pixels per interior block and output vectors per pass (accumulators: P * NV). */
#define CONV_P 8
#define CONV_NV 2

/* P interior pixels, output vectors [co0, co0 + NV*VLEN). src: the input under tap
 * (0, 0) of pixel 0; successive pixels are pix_stride floats apart. K, cin runtime; P,
 * NV literals at the call sites so the accumulators stay in registers. */
static inline __attribute__((always_inline)) void conv_block(const conv2d_job *job, const float *restrict src,
                                                             int co0, float *restrict out, const int P,
                                                             const int NV) {
    const tensor *in = job->in;
    int cout = job->out->c, k = job->k, taps = k * in->c;
    size_t row_stride = (size_t)in->w * in->c;
    size_t pix_stride = (size_t)job->stride * in->c;
    vfloat acc[CONV_P][CONV_NV];
#pragma GCC unroll 8
    for (int p = 0; p < P; p++)
#pragma GCC unroll 2
        for (int v = 0; v < NV; v++) acc[p][v] = job->bias ? vload(job->bias + co0 + v * VLEN) : (vfloat){0};
    for (int ky = 0; ky < k; ky++) {
        const float *restrict row = src + ky * row_stride;
        const float *restrict wrow = job->w + (size_t)ky * taps * cout + co0;
        for (int j = 0; j < taps; j++) {
            vfloat wv[CONV_NV];
#pragma GCC unroll 2
            for (int v = 0; v < NV; v++) wv[v] = vload(wrow + (size_t)j * cout + v * VLEN);
#pragma GCC unroll 8
            for (int p = 0; p < P; p++) {
                vfloat x = (vfloat){0} + row[p * pix_stride + j];
#pragma GCC unroll 2
                for (int v = 0; v < NV; v++) acc[p][v] = vmadd(x, wv[v], acc[p][v]);
            }
        }
    }
#pragma GCC unroll 8
    for (int p = 0; p < P; p++)
#pragma GCC unroll 2
        for (int v = 0; v < NV; v++)
            vstore(out + (size_t)p * cout + co0 + v * VLEN, vact(acc[p][v], job->act));
}

/* P interior pixels starting at output column x of output row orow (input row iy0 under
 * the kernel's top row), every output channel. */
static inline __attribute__((always_inline)) void conv_pixels(const conv2d_job *job, int iy0, float *orow,
                                                              int x, const int P) {
    const tensor *in = job->in;
    int cout = job->out->c;
    const float *src = in->data + ((size_t)iy0 * in->w + (size_t)(x * job->stride - job->pad_left)) * in->c;
    int co0 = 0;
    for (; co0 + 2 * VLEN <= cout; co0 += 2 * VLEN) conv_block(job, src, co0, orow + (size_t)x * cout, P, 2);
    for (; co0 + VLEN <= cout; co0 += VLEN) conv_block(job, src, co0, orow + (size_t)x * cout, P, 1);
    if (co0 < cout)
        for (int p = 0; p < P; p++) {
            float *o = orow + (size_t)(x + p) * cout;
            conv_pixel_tail(job, iy0, (x + p) * job->stride - job->pad_left, co0, o);
            activate_span(o + co0, (size_t)(cout - co0), job->act);
        }
}

static void conv_pixels8(const conv2d_job *job, int iy0, float *orow, int x) {
    conv_pixels(job, iy0, orow, x, CONV_P);
}

static void conv_pixels1(const conv2d_job *job, int iy0, float *orow, int x) {
    conv_pixels(job, iy0, orow, x, 1);
}

/* Any pixel, padding included, then its activation. */
static void conv_pixel_clipped(const conv2d_job *job, int iy0, int ix0, float *restrict o) {
    int cout = job->out->c;
    int full = cout - cout % CONV_COUT_BLOCK;
    for (int co0 = 0; co0 < full; co0 += CONV_COUT_BLOCK) conv_pixel_block(job, iy0, ix0, co0, o);
    if (full < cout) conv_pixel_tail(job, iy0, ix0, full, o);
    activate_span(o, (size_t)cout, job->act);
}

static void conv2d_rows(void *p, int begin, int end) {
    const conv2d_job *job = p;
    const tensor *in = job->in, *out = job->out;
    int cout = out->c, k = job->k, s = job->stride;
    /* Output columns [x_lo, x_hi) have their window inside the input horizontally. */
    int x_lo = (job->pad_left + s - 1) / s;
    int last = in->w - k + job->pad_left;
    int x_hi = last < 0 ? 0 : last / s + 1;
    if (x_hi > out->w) x_hi = out->w;
    if (x_lo > x_hi) x_lo = x_hi;
    for (int y = begin; y < end; y++) {
        int iy0 = y * s - job->pad_top;
        float *orow = out->data + (size_t)y * out->w * cout;
        int inside = iy0 >= 0 && iy0 + k <= in->h;
        int lo = inside ? x_lo : out->w, hi = inside ? x_hi : out->w;
        for (int x = 0; x < lo; x++)
            conv_pixel_clipped(job, iy0, x * s - job->pad_left, orow + (size_t)x * cout);
        int x = lo;
        for (; x + CONV_P <= hi; x += CONV_P) conv_pixels8(job, iy0, orow, x);
        for (; x < hi; x++) conv_pixels1(job, iy0, orow, x);
        for (x = hi > lo ? hi : lo; x < out->w; x++)
            conv_pixel_clipped(job, iy0, x * s - job->pad_left, orow + (size_t)x * cout);
    }
}

void op_conv2d(threadpool *tp, const tensor *in, const float *w, const float *bias, int k, int stride,
               int pad_top, int pad_left, act_kind act, tensor *out) {
    conv2d_job job = {in, w, bias, k, stride, pad_top, pad_left, act, out};
    size_t row_work = (size_t)out->w * out->c * in->c * k * k;
    int grain = (int)(65536 / (row_work ? row_work : 1)) + 1;
    threadpool_run(tp, out->h, grain, conv2d_rows, &job);
}
