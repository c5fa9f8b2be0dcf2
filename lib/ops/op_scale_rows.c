/*
 * dst[r][:] = src[r][:] * s[r]: squeeze-and-excitation's gate folded into the projection
 * weights ((x * gate) . W = x . (gate * W)), cheaper than scaling x when the weights
 * are the smaller of the two.
 */
#include "ops/ops.h"

typedef struct {
    const float *src, *s;
    int cols;
    float *dst;
} scale_rows_job;

static void scale_rows_range(void *p, int begin, int end) {
    const scale_rows_job *job = p;
    for (int r = begin; r < end; r++) {
        const float *restrict src = job->src + (size_t)r * job->cols;
        float *restrict dst = job->dst + (size_t)r * job->cols;
        const float g = job->s[r];
        for (int j = 0; j < job->cols; j++) dst[j] = src[j] * g;
    }
}

void op_scale_rows(threadpool *tp, const float *src, const float *s, int rows, int cols, float *dst) {
    scale_rows_job job = {src, s, cols, dst};
    /* ~64K floats per chunk: below that a fork/join costs more than the multiplies. */
    int grain = 65536 / (cols > 0 ? cols : 1) + 1;
    threadpool_run(tp, rows, grain, scale_rows_range, &job);
}
