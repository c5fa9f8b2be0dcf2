/*
 * A fork-join pool for the forward pass: several hundred parallel loops of 20 us - 2 ms
 * each per image, so a round trip through the kernel (condvar wake-up, ~10-50 us) on
 * every call would cost as much as the work. Workers therefore spin on a job word for a
 * short while after each job, then yield the core for a while, and only then sleep on a
 * condvar (wait_briefly).
 *
 * Chunk i belongs to thread i (the caller is thread 0) but is not reserved for it:
 * every participant first claims its own chunk, then any chunk still unclaimed, and the
 * caller waits only for chunks a worker has actually started. On a shared 2-core
 * machine a worker is often not running when a job is posted (asleep, or preempted by
 * another process); with fixed assignment the caller sat idle until the scheduler ran
 * it (measured: a 19 us upsample took 160 us with 2 threads), now it runs that chunk
 * itself. Own chunks first because consecutive kernels split the rows alike: thread i
 * then reads the rows it wrote a moment ago from its own L2. When chunks went to
 * whoever came first, the caller got chunk 0 about half the time and the kernels of a
 * 2-thread D0 pass ran ~35% slower per thread than at 1 thread (AMD EPYC Zen 5 VM).
 */
#include "core/threadpool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

#include "core/fpenv.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define cpu_relax() _mm_pause()
#else
#define cpu_relax() ((void)0)
#endif

/*
 * How long a waiting thread stays awake. First PAUSE iterations (~20 ns each on Zen 3-5,
 * so ~50 us): the usual gap between two kernels. Then sched_yield until YIELD_NS: a core
 * another thread wants is handed over at every yield, yet a new job is still seen
 * within microseconds. Only then the condvar. Sleeping after the 50 us alone was too
 * early: one thread of a 2-thread D0 pass waits longer than that whenever its chunk ends
 * first, which put a worker to sleep ~80 times per pass (~160 futex calls, strace), and
 * each wake-up cost ~40 us (a halted vCPU) before the worker started its chunk (AMD EPYC
 * Zen 5 VM). Past YIELD_NS the pool is idle between images, and sleeping costs nothing.
 */
#define SPIN_ITERS 2500
#define YIELD_NS 2000000L

typedef struct {
    int spins;
    struct timespec yield_start;
} waiting;

static long ns_since(const struct timespec *t) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (now.tv_sec - t->tv_sec) * 1000000000L + (now.tv_nsec - t->tv_nsec);
}

/* One more round of waiting without sleeping (a PAUSE, later a yield); 0 once it is
 * time to sleep instead. */
static int wait_briefly(waiting *w) {
    if (w->spins < SPIN_ITERS) {
        if (++w->spins == SPIN_ITERS) clock_gettime(CLOCK_MONOTONIC, &w->yield_start);
        cpu_relax();
        return 1;
    }
    if (ns_since(&w->yield_start) >= YIELD_NS) return 0;
    sched_yield();
    return 1;
}

typedef struct {
    threadpool *tp;
    int self; /* 1 .. nthreads - 1: the chunk this worker claims first */
    pthread_t thread;
} worker;

struct threadpool {
    int nthreads; /* total, including the caller */
    worker *workers;
    pthread_mutex_t mu;
    pthread_cond_t work_cv; /* workers sleep here waiting for a new job */
    pthread_cond_t done_cv; /* the caller sleeps here waiting for done == nchunks */
    /* (job number << 32) | number of chunks: posted once per job, after its fields. */
    atomic_ullong job_word;
    /* Per chunk, a job number (nthreads of them): before job J is posted its chunks
     * hold J - 1, and claiming one for J is a compare-and-swap from J - 1 to J. A late
     * worker still holding an older job expects an older number and never matches. */
    atomic_uint *claimed;
    atomic_int done; /* chunks of the current job finished */
    atomic_int stop;

    /* The current job, written by the caller before posting job_word. A chunk claimed
     * for job J keeps J unfinished, so these stay valid while it runs. */
    parallel_fn fn;
    void *arg;
    int n, nchunks;
};

static unsigned job_of(unsigned long long word) {
    return (unsigned)(word >> 32);
}

static int low_half(unsigned long long word) {
    return (int)(word & 0xffffffffu);
}

static void run_chunk(const threadpool *tp, int chunk) {
    /* Contiguous, balanced split: chunk sizes differ by at most one item. */
    long long n = tp->n;
    int begin = (int)(n * chunk / tp->nchunks);
    int end = (int)(n * (chunk + 1) / tp->nchunks);
    if (begin < end) tp->fn(tp->arg, begin, end);
}

/* Chunk k for job `job`, unless some thread already claimed it. */
static int claim(threadpool *tp, unsigned job, int k) {
    unsigned free_mark = job - 1;
    return atomic_compare_exchange_strong_explicit(&tp->claimed[k], &free_mark, job, memory_order_acq_rel,
                                                   memory_order_relaxed);
}

/* Claim and run chunks of job `job` (nchunks of them): thread `self`'s own first, then
 * the others in turn. Returns 1 if this thread finished the job's last chunk. */
static int run_claimed_chunks(threadpool *tp, unsigned job, int nchunks, int self) {
    int finished_last = 0;
    for (int i = 0; i < nchunks; i++) {
        int k = (self + i) % nchunks;
        if (!claim(tp, job, k)) continue;
        run_chunk(tp, k);
        finished_last = atomic_fetch_add_explicit(&tp->done, 1, memory_order_acq_rel) + 1 == nchunks;
    }
    return finished_last;
}

static unsigned long long wait_for_new_job(threadpool *tp, unsigned long long seen) {
    waiting wt = {0};
    do {
        unsigned long long w = atomic_load_explicit(&tp->job_word, memory_order_acquire);
        if (w != seen || atomic_load_explicit(&tp->stop, memory_order_relaxed)) return w;
    } while (wait_briefly(&wt));
    pthread_mutex_lock(&tp->mu);
    unsigned long long w;
    while ((w = atomic_load_explicit(&tp->job_word, memory_order_acquire)) == seen &&
           !atomic_load_explicit(&tp->stop, memory_order_relaxed))
        pthread_cond_wait(&tp->work_cv, &tp->mu);
    pthread_mutex_unlock(&tp->mu);
    return w;
}

static void *worker_main(void *p) {
    const worker *me = p;
    threadpool *tp = me->tp;
    /* This thread only ever runs kernels: flush subnormals for its whole life (fpenv.h). */
    (void)fpenv_enter();
    /* Not a fresh load: the first job may be posted before this thread gets here. */
    unsigned long long seen = 0;
    for (;;) {
        seen = wait_for_new_job(tp, seen);
        if (atomic_load_explicit(&tp->stop, memory_order_acquire)) break;
        /* The last chunk's finisher wakes the caller if it went to sleep. Taking the
         * mutex orders this signal after the caller's check of `done` under it. */
        if (run_claimed_chunks(tp, job_of(seen), low_half(seen), me->self)) {
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
    for (int i = 0; i < started; i++) pthread_join(tp->workers[i].thread, NULL);
}

threadpool *threadpool_create(int nthreads) {
    if (nthreads < 1) return NULL;
    threadpool *tp = calloc(1, sizeof *tp);
    if (!tp) return NULL;
    tp->nthreads = nthreads;
    atomic_init(&tp->job_word, 0);
    atomic_init(&tp->done, 0);
    atomic_init(&tp->stop, 0);
    pthread_mutex_init(&tp->mu, NULL);
    pthread_cond_init(&tp->work_cv, NULL);
    pthread_cond_init(&tp->done_cv, NULL);
    int started = 0;
    tp->claimed = calloc((size_t)nthreads, sizeof *tp->claimed);
    if (!tp->claimed) goto fail;
    for (int k = 0; k < nthreads; k++) atomic_init(&tp->claimed[k], 0);
    if (nthreads > 1) {
        tp->workers = calloc((size_t)nthreads - 1, sizeof *tp->workers);
        if (!tp->workers) goto fail;
        for (; started < nthreads - 1; started++) {
            worker *w = &tp->workers[started];
            w->tp = tp;
            w->self = started + 1;
            if (pthread_create(&w->thread, NULL, worker_main, w) != 0) goto fail;
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
    free(tp->claimed);
    free(tp);
}

int threadpool_size(const threadpool *tp) {
    return tp ? tp->nthreads : 1;
}

static void wait_for_workers(threadpool *tp, int nchunks) {
    waiting wt = {0};
    do {
        if (atomic_load_explicit(&tp->done, memory_order_acquire) == nchunks) return;
    } while (wait_briefly(&wt));
    pthread_mutex_lock(&tp->mu);
    while (atomic_load_explicit(&tp->done, memory_order_acquire) != nchunks)
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
    unsigned job = job_of(atomic_load_explicit(&tp->job_word, memory_order_relaxed)) + 1;
    atomic_store_explicit(&tp->done, 0, memory_order_relaxed);
    /* Mark this job's chunks free. A late worker still holding an older job J expects
     * J - 1 in them, and every chunk of J was claimed (J is finished), so no slot it
     * could try holds J - 1 any more. */
    for (int k = 0; k < nchunks; k++) atomic_store_explicit(&tp->claimed[k], job - 1, memory_order_relaxed);
    atomic_store_explicit(&tp->job_word, (unsigned long long)job << 32 | (unsigned)nchunks,
                          memory_order_release);
    /* Wake sleepers; cheap when none sleep (glibc skips the futex call). Holding the
     * mutex pairs with the worker's check-then-wait under it: no lost wake-up. */
    pthread_mutex_lock(&tp->mu);
    pthread_cond_broadcast(&tp->work_cv);
    pthread_mutex_unlock(&tp->mu);
    run_claimed_chunks(tp, job, nchunks, 0);
    wait_for_workers(tp, nchunks);
}
