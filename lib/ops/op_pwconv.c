/*
 * Pointwise (1x1) convolution = one GEMM over the h*w pixel rows. OpenBLAS runs single
 * threaded; we split the rows across our pool and each thread calls sgemm on its own
 * row blocks, then adds the bias and applies the activation to the block it just wrote,
 * while that block is still in L2 (a separate pass over a 6 MB tensor would go to DRAM).
 */
#include <cblas.h>

#include "ops/mathfun.h"
#include "ops/ops.h"
#include "ops/pwconv_table.h"

/* Output floats per row block: ~128 KB, well inside L2, and enough rows (>= 64) that
 * OpenBLAS's per-call packing of the weights stays a small fraction of the work. */
#define PW_BLOCK_FLOATS 32768
#define PW_MIN_BLOCK_ROWS 64

typedef struct {
    const float *in;
    const float *w;
    const float *bias;
    float *out;
    int cin, cout;
    act_kind act;
} pwconv_job;

static void bias_act_rows(float *restrict out, int rows, int cout, const float *restrict bias, act_kind act) {
    if (bias)
        for (int r = 0; r < rows; r++) {
            float *restrict o = out + (size_t)r * cout;
            for (int j = 0; j < cout; j++) o[j] += bias[j];
        }
    activate_span(out, (size_t)rows * cout, act);
}

static void pwconv_rows(void *p, int begin, int end) {
    const pwconv_job *job = p;
    int block = PW_BLOCK_FLOATS / job->cout;
    if (block < PW_MIN_BLOCK_ROWS) block = PW_MIN_BLOCK_ROWS;
    for (int r0 = begin; r0 < end; r0 += block) {
        int rows = end - r0 < block ? end - r0 : block;
        float *out = job->out + (size_t)r0 * job->cout;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, job->cout, job->cin, 1.0f,
                    job->in + (size_t)r0 * job->cin, job->cin, job->w, job->cout, 0.0f, out, job->cout);
        bias_act_rows(out, rows, job->cout, job->bias, job->act);
    }
}

void op_pwconv_blas(threadpool *tp, const tensor *in, const float *w, const float *bias, act_kind act,
                    tensor *out) {
    pwconv_job job = {in->data, w, bias, out->data, in->c, out->c, act};
    threadpool_run(tp, in->h * in->w, PW_MIN_BLOCK_ROWS, pwconv_rows, &job);
}

void op_pwconv(threadpool *tp, const tensor *in, const float *w, const float *bias, act_kind act,
               tensor *out) {
    if (pwconv_direct_wins(in->c, out->c))
        op_pwconv_direct(tp, in, w, bias, act, out);
    else
        op_pwconv_blas(tp, in, w, bias, act, out);
}
