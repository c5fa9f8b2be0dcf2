/*
 * Depthwise k x k convolution, NHWC. Channels are innermost, so every tap is a
 * contiguous multiply-add over c that the compiler vectorises. Output pixels whose
 * window lies wholly inside the input ("interior") go through a k3/k5 specialisation
 * with the taps unrolled and no bounds checks, accumulating in registers; the thin
 * border (padding rows and columns) goes through a checked per-tap loop.
 */
#include "mathfun.h"
#include <stddef.h>

#include "ops.h"

typedef struct {
    const tensor *in;
    const float *w, *bias;
    int k, stride, pad_top, pad_left;
    act_kind act;
    tensor *out;
    int x_lo, x_hi; /* output columns [x_lo, x_hi) are interior */
} dwconv_job;

/* Any pixel, padding included: zero padding means leaving out the taps outside, so
 * the tap loops run over the window's part inside the input. Each channel vector's
 * sum stays in a register across the taps. */
static void dw_pixel_checked(const tensor *in, const float *restrict w, const float *restrict bias, int k,
                             int iy0, int ix0, float *restrict out) {
    int c = in->c;
    int ky0 = iy0 < 0 ? -iy0 : 0, ky1 = in->h - iy0 < k ? in->h - iy0 : k;
    int kx0 = ix0 < 0 ? -ix0 : 0, kx1 = in->w - ix0 < k ? in->w - ix0 : k;
    const float *base = in->data + ((ptrdiff_t)iy0 * in->w + ix0) * c;
    size_t row_stride = (size_t)in->w * c;
    int cv = c - c % VLEN;
    for (int ci = 0; ci < cv; ci += VLEN) {
        vfloat acc = {0};
        if (bias) acc = vload(bias + ci);
        for (int ky = ky0; ky < ky1; ky++)
            for (int kx = kx0; kx < kx1; kx++)
                acc = vmadd(vload(base + ky * row_stride + (size_t)kx * c + ci),
                            vload(w + (size_t)(ky * k + kx) * c + ci), acc);
        vstore(out + ci, acc);
    }
    for (int ci = cv; ci < c; ci++) {
        float acc = bias ? bias[ci] : 0.0f;
        for (int ky = ky0; ky < ky1; ky++)
            for (int kx = kx0; kx < kx1; kx++)
                acc = MADD(base[ky * row_stride + (size_t)kx * c + ci], w[(ky * k + kx) * c + ci], acc);
        out[ci] = acc;
    }
}

/* Output pixels computed together per channel vector: independent FMA chains hide
 * the FMA latency, and each weight vector loaded into a register serves them all. */
#define DW_PIXELS_K3 8
#define DW_PIXELS_K5 6

/* P interior pixels (x .. x+P-1) of one channel vector; wk holds the K*K tap weights. */
static inline __attribute__((always_inline)) void dw_pixels_vec(const float *restrict src, size_t row_stride,
                                                                const vfloat *wk, vfloat b, int c, int stride,
                                                                float *restrict out, const int K,
                                                                const int P) {
    vfloat acc[P];
    for (int p = 0; p < P; p++) acc[p] = b;
#pragma GCC unroll 5
    for (int ky = 0; ky < K; ky++)
#pragma GCC unroll 5
        for (int kx = 0; kx < K; kx++)
#pragma GCC unroll 4
            for (int p = 0; p < P; p++)
                acc[p] = vmadd(vload(src + ky * row_stride + (size_t)(p * stride + kx) * c), wk[ky * K + kx],
                               acc[p]);
    for (int p = 0; p < P; p++) vstore(out + (size_t)p * c, acc[p]);
}

/* Channels [c0, c) of one interior pixel, scalar (c not a multiple of the vector width). */
static void dw_pixel_tail(const float *restrict src, size_t row_stride, const float *restrict w,
                          const float *restrict bias, int c0, int c, int k, float *restrict out) {
    for (int ci = c0; ci < c; ci++) {
        float acc = bias ? bias[ci] : 0.0f;
        for (int ky = 0; ky < k; ky++)
            for (int kx = 0; kx < k; kx++)
                acc = MADD(src[ky * row_stride + (size_t)kx * c + ci], w[(ky * k + kx) * c + ci], acc);
        out[ci] = acc;
    }
}

/* A run of nx interior pixels of one output row. K and P are literals at each call
 * site, so the taps unroll and the K*K weight vectors of a channel vector stay in
 * registers while the run is swept. row = input row of tap ky=0, already offset to the
 * first pixel's leftmost input column. */
static inline __attribute__((always_inline)) void dw_span_interior(const float *restrict row,
                                                                   size_t row_stride, const float *restrict w,
                                                                   const float *restrict bias, int c,
                                                                   int stride, int nx, float *restrict out,
                                                                   const int K, const int P) {
    int cv = c - c % VLEN;
    for (int ci = 0; ci < cv; ci += VLEN) {
        vfloat wk[K * K];
        for (int t = 0; t < K * K; t++) wk[t] = vload(w + (size_t)t * c + ci);
        vfloat b = {0};
        if (bias) b = vload(bias + ci);
        const float *src = row + ci;
        float *o = out + ci;
        int x = 0;
        for (; x + P <= nx; x += P)
            dw_pixels_vec(src + (size_t)x * stride * c, row_stride, wk, b, c, stride, o + (size_t)x * c, K,
                          P);
        for (; x < nx; x++)
            dw_pixels_vec(src + (size_t)x * stride * c, row_stride, wk, b, c, stride, o + (size_t)x * c, K,
                          1);
    }
    if (cv < c)
        for (int x = 0; x < nx; x++)
            dw_pixel_tail(row + (size_t)x * stride * c, row_stride, w, bias, cv, c, K, out + (size_t)x * c);
}

static void dw_span_k3(const float *row, size_t row_stride, const float *w, const float *bias, int c,
                       int stride, int nx, float *out) {
    dw_span_interior(row, row_stride, w, bias, c, stride, nx, out, 3, DW_PIXELS_K3);
}

static void dw_span_k5(const float *row, size_t row_stride, const float *w, const float *bias, int c,
                       int stride, int nx, float *out) {
    dw_span_interior(row, row_stride, w, bias, c, stride, nx, out, 5, DW_PIXELS_K5);
}

static void dw_span_any_k(const float *row, size_t row_stride, const float *w, const float *bias, int c,
                          int stride, int nx, float *out, int k) {
    for (int x = 0; x < nx; x++) {
        const float *src = row + (size_t)x * stride * c;
        float *o = out + (size_t)x * c;
        for (int ci = 0; ci < c; ci++) o[ci] = bias ? bias[ci] : 0.0f;
        for (int ky = 0; ky < k; ky++)
            for (int kx = 0; kx < k; kx++) {
                const float *restrict s = src + ky * row_stride + (size_t)kx * c;
                const float *restrict wt = w + (size_t)(ky * k + kx) * c;
                for (int ci = 0; ci < c; ci++) o[ci] = MADD(s[ci], wt[ci], o[ci]);
            }
    }
}

static void dwconv_rows(void *p, int begin, int end) {
    const dwconv_job *job = p;
    const tensor *in = job->in;
    const tensor *out = job->out;
    int c = in->c, k = job->k, s = job->stride;
    size_t row_stride = (size_t)in->w * c;
    for (int y = begin; y < end; y++) {
        int iy0 = y * s - job->pad_top;
        float *orow = out->data + (size_t)y * out->w * c;
        int rows_inside = iy0 >= 0 && iy0 + k <= in->h;
        int x_lo = rows_inside ? job->x_lo : out->w;
        int x_hi = rows_inside ? job->x_hi : out->w;
        for (int x = 0; x < x_lo; x++)
            dw_pixel_checked(in, job->w, job->bias, k, iy0, x * s - job->pad_left, orow + (size_t)x * c);
        if (x_hi > x_lo) {
            const float *row = in->data + (size_t)iy0 * row_stride + (size_t)(x_lo * s - job->pad_left) * c;
            float *o = orow + (size_t)x_lo * c;
            if (k == 3)
                dw_span_k3(row, row_stride, job->w, job->bias, c, s, x_hi - x_lo, o);
            else if (k == 5)
                dw_span_k5(row, row_stride, job->w, job->bias, c, s, x_hi - x_lo, o);
            else
                dw_span_any_k(row, row_stride, job->w, job->bias, c, s, x_hi - x_lo, o, k);
        }
        for (int x = x_hi; x < out->w; x++)
            dw_pixel_checked(in, job->w, job->bias, k, iy0, x * s - job->pad_left, orow + (size_t)x * c);
        activate_span(orow, (size_t)out->w * c, job->act);
    }
}

/* Output columns [lo, hi) whose window x*s - pad .. x*s - pad + k - 1 is inside [0, w). */
static void interior_columns(int in_w, int out_w, int k, int stride, int pad, int *lo, int *hi) {
    int first = (pad + stride - 1) / stride;
    int last_start = in_w - k + pad; /* largest x*s with the window's right edge inside */
    int end = last_start < 0 ? 0 : last_start / stride + 1;
    if (first > out_w) first = out_w;
    if (end > out_w) end = out_w;
    if (end < first) end = first;
    *lo = first;
    *hi = end;
}

void op_dwconv(threadpool *tp, const tensor *in, const float *w, const float *bias, int k, int stride,
               int pad_top, int pad_left, act_kind act, tensor *out) {
    dwconv_job job = {in, w, bias, k, stride, pad_top, pad_left, act, out, 0, 0};
    interior_columns(in->w, out->w, k, stride, pad_left, &job.x_lo, &job.x_hi);
    size_t row_work = (size_t)out->w * out->c * k * k;
    int grain = (int)(65536 / (row_work ? row_work : 1)) + 1;
    threadpool_run(tp, out->h, grain, dwconv_rows, &job);
}
