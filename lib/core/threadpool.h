/*
 * Internal: a tiny fork-join pool owned by one context. The calling thread takes part,
 * so a pool of 1 thread runs everything inline with no synchronisation.
 */
#ifndef EFFDET_THREADPOOL_H
#define EFFDET_THREADPOOL_H

typedef struct threadpool threadpool;

/* Body of a parallel loop: process items [begin, end). */
typedef void (*parallel_fn)(void *arg, int begin, int end);

/* nthreads >= 1 (total, including the caller). NULL on failure. */
threadpool *threadpool_create(int nthreads);
void threadpool_free(threadpool *tp);
int threadpool_size(const threadpool *tp); /* 1 for NULL */

/* Split [0, n) into contiguous chunks of at least `grain` items, one per thread, run
 * fn on each and return when all are done. tp may be NULL (runs fn(arg, 0, n)). */
void threadpool_run(threadpool *tp, int n, int grain, parallel_fn fn, void *arg);

#endif
