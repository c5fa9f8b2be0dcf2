/*
 * BiFPN node input fusion (docs/engine.md, "BiFPN"). "fastattn": w_i = relu(edge_weight_i),
 * out = sum_i (x_i * w_i) / (sum_j w_j + 1e-4), each term multiplied then divided as
 * effdet does (dividing once at the end, or multiplying by a reciprocal, rounds
 * differently). "sum" (D6/D7): plain sum. The activation is applied while the span is
 * still in L1.
 */
#include "ops/mathfun.h"
#include "ops/ops.h"

#define FUSE_SPAN 4096 /* floats per pass over the inputs: 16 KB stays in L1 */

typedef struct {
    const tensor *const *inputs;
    int n;
    const float *weights; /* NULL: sum fusion */
    float denom;
    act_kind act;
    float *out;
} fuse_job;

static float relu_weight(const float *weights, int i) {
    return weights[i] > 0.0f ? weights[i] : 0.0f;
}

static void fuse_span(const fuse_job *job, size_t begin, size_t len) {
    float *restrict o = job->out + begin;
    const float *restrict x0 = job->inputs[0]->data + begin;
    if (job->weights) {
        const float w0 = relu_weight(job->weights, 0), d = job->denom;
        for (size_t i = 0; i < len; i++) o[i] = x0[i] * w0 / d;
        for (int k = 1; k < job->n; k++) {
            const float *restrict xk = job->inputs[k]->data + begin;
            const float wk = relu_weight(job->weights, k);
            for (size_t i = 0; i < len; i++) o[i] += xk[i] * wk / d;
        }
    } else {
        for (size_t i = 0; i < len; i++) o[i] = x0[i];
        for (int k = 1; k < job->n; k++) {
            const float *restrict xk = job->inputs[k]->data + begin;
            for (size_t i = 0; i < len; i++) o[i] += xk[i];
        }
    }
    activate_span(o, len, job->act);
}

static void fuse_chunk(void *p, int begin, int end) {
    const fuse_job *job = p;
    for (size_t i = (size_t)begin; i < (size_t)end; i += FUSE_SPAN) {
        size_t len = (size_t)end - i < FUSE_SPAN ? (size_t)end - i : FUSE_SPAN;
        fuse_span(job, i, len);
    }
}

void op_fuse(threadpool *tp, const tensor *const *inputs, int n, const float *weights, act_kind act,
             tensor *out) {
    if (n < 1) return;
    fuse_job job = {inputs, n, weights, 0.0f, act, out->data};
    if (weights) {
        float sum = 0.0f;
        for (int i = 0; i < n; i++) sum += relu_weight(weights, i);
        job.denom = sum + 0.0001f;
    }
    threadpool_run(tp, (int)tensor_numel(out), 16384, fuse_chunk, &job);
}
