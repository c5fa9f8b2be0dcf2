/*
 * Squeeze-and-excitation gates: s = sigmoid(W2 . swish(W1 . mean(x) + b1) + b2). SE is
 * done in pieces the forward pass fuses into its neighbours: the means come from
 * op_dwconv_sum's per-row sums (no extra pass over x), and the gate then multiplies the
 * projection weights (op_scale_rows) or x when that is less work (op_scale_channels).
 * The two FCs are a few thousand multiply-adds: the calling thread does them alone.
 */
#include "ops/mathfun.h"
#include "ops/ops.h"

/* Channels summed together in one pass over the row sums (their sums live on the stack). */
#define SE_CHANNEL_BLOCK 128

/* gate[c] = sigmoid(b2 + W2 . swish(b1 + W1 . mean)); gate may alias mean. */
static void se_gates(const float *mean, int c, const float *restrict w1, const float *restrict b1, int rd,
                     const float *restrict w2, const float *restrict b2, float *restrict hidden,
                     float *gate) {
    for (int r = 0; r < rd; r++) hidden[r] = b1[r];
    for (int i = 0; i < c; i++) {
        const float m = mean[i];
        const float *restrict wr = w1 + (size_t)i * rd;
        for (int r = 0; r < rd; r++) hidden[r] = MADD(m, wr[r], hidden[r]);
    }
    activate_span(hidden, (size_t)rd, ACT_SWISH);
    for (int i = 0; i < c; i++) gate[i] = b2[i];
    for (int r = 0; r < rd; r++) {
        const float h = hidden[r];
        const float *restrict wr = w2 + (size_t)r * c;
        for (int i = 0; i < c; i++) gate[i] = MADD(h, wr[i], gate[i]);
    }
    activate_span(gate, (size_t)c, ACT_SIGMOID);
}

void op_se_gates(threadpool *tp, const float *row_sums, int rows, int npix, int c, const float *w1, const float *b1, int rd,
                 const float *w2, const float *b2, float *scratch, float *gate) {
    (void)tp; /* the FCs are too small to split */
    /* Rows added in double, in order: the ~65536-pixel means of the first stages stay
     * accurate to float precision, and the order never depends on the thread count.
     * Row-major over a block of channels rather than one channel down all rows: the
     * rows were written by every thread, and a strided walk fetched each line from the
     * other core one miss at a time. */
    for (int j0 = 0; j0 < c; j0 += SE_CHANNEL_BLOCK) {
        int len = c - j0 < SE_CHANNEL_BLOCK ? c - j0 : SE_CHANNEL_BLOCK;
        double acc[SE_CHANNEL_BLOCK] = {0};
        for (int y = 0; y < rows; y++) {
            const float *restrict r = row_sums + (size_t)y * c + j0;
            for (int j = 0; j < len; j++) acc[j] += r[j];
        }
        for (int j = 0; j < len; j++) gate[j0 + j] = (float)(acc[j] / npix);
    }
    se_gates(gate, c, w1, b1, rd, w2, b2, scratch, gate);
}
