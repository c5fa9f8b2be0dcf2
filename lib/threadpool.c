/*
 * A fork-join pool for the forward pass: several hundred parallel loops of 50 us - 2 ms
 * each per image, so a round trip through the kernel (condvar wake-up, ~10-50 us) on
 * every call would cost as much as the work. Workers therefore spin on a generation
 * counter for a short while after each job and only then sleep on a condvar; the caller
 * takes the first chunk itself and spins (then sleeps) until the others are done.
 */
#include "threadpool.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define cpu_relax() _mm_pause()
#else
#define cpu_relax() ((void)0)
#endif

/* Spin iterations before sleeping (PAUSE is ~20 ns on Zen 3/4, so ~50 us): about the gap between
 * two consecutive kernels of a forward pass, short enough not to steal a shared core
 * for long when the pool is idle between images. */
#define SPIN_ITERS 2500

struct threadpool {
    int nthreads; /* total, including the caller */
    pthread_t *workers;
    pthread_mutex_t mu;
    pthread_cond_t work_cv; /* workers sleep here waiting for a new generation */
    pthread_cond_t done_cv; /* the caller sleeps here waiting for pending == 0 */
    /* (job number << 32) | number of chunks: posted once per job. Workers whose index
     * is >= the chunk count skip the job without touching its fields or `pending`,
     * so a run that needs fewer threads never waits for idle ones to be scheduled. */
    atomic_ullong job_word;
    atomic_int pending; /* participating workers that have not finished the current job */
    atomic_int stop;

    /* The current job, written by the caller before bumping `generation`. */
    parallel_fn fn;
    void *arg;
    int n, nchunks;
};

static int word_chunks(unsigned long long word) {
    return (int)(word & 0xffffffffu);
}

typedef struct {
    threadpool *tp;
    int index; /* 1 .. nthreads-1; the caller is chunk 0 */
} worker_arg;

static void run_chunk(const threadpool *tp, int chunk) {
    if (chunk >= tp->nchunks) return;
    /* Contiguous, balanced split: chunk sizes differ by at most one item. */
    long long n = tp->n;
    int begin = (int)(n * chunk / tp->nchunks);
    int end = (int)(n * (chunk + 1) / tp->nchunks);
    if (begin < end) tp->fn(tp->arg, begin, end);
}

static unsigned long long wait_for_new_job(threadpool *tp, unsigned long long seen) {
    for (int i = 0; i < SPIN_ITERS; i++) {
        unsigned long long w = atomic_load_explicit(&tp->job_word, memory_order_acquire);
        if (w != seen || atomic_load_explicit(&tp->stop, memory_order_relaxed)) return w;
        cpu_relax();
    }
    pthread_mutex_lock(&tp->mu);
    unsigned long long w;
    while ((w = atomic_load_explicit(&tp->job_word, memory_order_acquire)) == seen &&
           !atomic_load_explicit(&tp->stop, memory_order_relaxed))
        pthread_cond_wait(&tp->work_cv, &tp->mu);
    pthread_mutex_unlock(&tp->mu);
    return w;
}

static void *worker_main(void *p) {
    worker_arg *wa = p;
    threadpool *tp = wa->tp;
    int index = wa->index;
    free(wa);
    /* Not a fresh load: the first job may be posted before this thread gets here. */
    unsigned long long seen = 0;
    for (;;) {
        seen = wait_for_new_job(tp, seen);
        if (atomic_load_explicit(&tp->stop, memory_order_acquire)) break;
        /* Not needed for this job: its fields may already belong to the next one. */
        if (index >= word_chunks(seen)) continue;
        run_chunk(tp, index);
        /* The last worker to finish wakes the caller if it went to sleep. Taking the
         * mutex orders this signal after the caller's check of `pending` under it. */
        if (atomic_fetch_sub_explicit(&tp->pending, 1, memory_order_acq_rel) == 1) {
            pthread_mutex_lock(&tp->mu);
            pthread_cond_signal(&tp->done_cv);
            pthread_mutex_unlock(&tp->mu);
        }
    }
    return NULL;
}

static void stop_workers(threadpool *tp, int started) {
    pthread_mutex_lock(&tp->mu);
    atomic_store_explicit(&tp->stop, 1, memory_order_release);
    pthread_cond_broadcast(&tp->work_cv);
    pthread_mutex_unlock(&tp->mu);
    for (int i = 0; i < started; i++) pthread_join(tp->workers[i], NULL);
}

threadpool *threadpool_create(int nthreads) {
    if (nthreads < 1) return NULL;
    threadpool *tp = calloc(1, sizeof *tp);
    if (!tp) return NULL;
    tp->nthreads = nthreads;
    atomic_init(&tp->job_word, 0);
    atomic_init(&tp->pending, 0);
    atomic_init(&tp->stop, 0);
    pthread_mutex_init(&tp->mu, NULL);
    pthread_cond_init(&tp->work_cv, NULL);
    pthread_cond_init(&tp->done_cv, NULL);
    int started = 0;
    if (nthreads > 1) {
        tp->workers = calloc((size_t)nthreads - 1, sizeof *tp->workers);
        if (!tp->workers) goto fail;
        for (; started < nthreads - 1; started++) {
            worker_arg *wa = malloc(sizeof *wa);
            if (!wa) goto fail;
            wa->tp = tp;
            wa->index = started + 1;
            if (pthread_create(&tp->workers[started], NULL, worker_main, wa) != 0) {
                free(wa);
                goto fail;
            }
        }
    }
    return tp;
fail:
    stop_workers(tp, started);
    tp->nthreads = 1; /* nothing left to join */
    threadpool_free(tp);
    return NULL;
}

void threadpool_free(threadpool *tp) {
    if (!tp) return;
    if (tp->nthreads > 1) stop_workers(tp, tp->nthreads - 1);
    pthread_cond_destroy(&tp->done_cv);
    pthread_cond_destroy(&tp->work_cv);
    pthread_mutex_destroy(&tp->mu);
    free(tp->workers);
    free(tp);
}

int threadpool_size(const threadpool *tp) {
    return tp ? tp->nthreads : 1;
}

static void wait_for_workers(threadpool *tp) {
    for (int i = 0; i < SPIN_ITERS; i++) {
        if (atomic_load_explicit(&tp->pending, memory_order_acquire) == 0) return;
        cpu_relax();
    }
    pthread_mutex_lock(&tp->mu);
    while (atomic_load_explicit(&tp->pending, memory_order_acquire) != 0)
        pthread_cond_wait(&tp->done_cv, &tp->mu);
    pthread_mutex_unlock(&tp->mu);
}

void threadpool_run(threadpool *tp, int n, int grain, parallel_fn fn, void *arg) {
    if (n <= 0) return;
    if (grain < 1) grain = 1;
    int nchunks = n / grain;
    if (tp && nchunks > tp->nthreads) nchunks = tp->nthreads;
    if (!tp || nchunks <= 1) {
        fn(arg, 0, n);
        return;
    }
    tp->fn = fn;
    tp->arg = arg;
    tp->n = n;
    tp->nchunks = nchunks;
    atomic_store_explicit(&tp->pending, nchunks - 1, memory_order_relaxed);
    unsigned long long job_number = (atomic_load_explicit(&tp->job_word, memory_order_relaxed) >> 32) + 1;
    atomic_store_explicit(&tp->job_word, job_number << 32 | (unsigned)nchunks, memory_order_release);
    /* Wake sleepers; cheap when none sleep (glibc skips the futex call). Holding the
     * mutex pairs with the worker's check-then-wait under it: no lost wake-up. */
    pthread_mutex_lock(&tp->mu);
    pthread_cond_broadcast(&tp->work_cv);
    pthread_mutex_unlock(&tp->mu);
    run_chunk(tp, 0);
    wait_for_workers(tp);
}
