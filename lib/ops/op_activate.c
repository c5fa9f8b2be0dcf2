/* Element-wise kernels: activation in place and the MBConv residual add. */
#include "ops/mathfun.h"
#include "ops/ops.h"

/* Enough work per chunk (~50 us) that the fork/join cost stays small. */
#define ELEMENTWISE_GRAIN 16384

typedef struct {
    float *x;
    const float *y;
    act_kind act;
} elementwise_job;

static void activate_chunk(void *p, int begin, int end) {
    const elementwise_job *job = p;
    activate_span(job->x + begin, (size_t)(end - begin), job->act);
}

static void add_chunk(void *p, int begin, int end) {
    const elementwise_job *job = p;
    float *restrict x = job->x;
    const float *restrict y = job->y;
    for (int i = begin; i < end; i++) x[i] += y[i];
}

/* threadpool_run counts in int; split n into int-sized passes (never hit by D0-D7). */
static void run_elementwise(threadpool *tp, size_t n, parallel_fn fn, elementwise_job *job) {
    const size_t max_pass = (size_t)1 << 30;
    float *x = job->x;
    const float *y = job->y;
    for (size_t done = 0; done < n; done += max_pass) {
        size_t len = n - done < max_pass ? n - done : max_pass;
        job->x = x + done;
        job->y = y ? y + done : NULL;
        threadpool_run(tp, (int)len, ELEMENTWISE_GRAIN, fn, job);
    }
}

void op_activate(threadpool *tp, float *x, size_t n, act_kind act) {
    if (act == ACT_NONE) return;
    elementwise_job job = {x, NULL, act};
    run_elementwise(tp, n, activate_chunk, &job);
}

void op_add(threadpool *tp, float *x, const float *y, size_t n) {
    elementwise_job job = {x, y, ACT_NONE};
    run_elementwise(tp, n, add_chunk, &job);
}
