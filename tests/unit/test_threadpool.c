/*
 * The fork-join pool: every index of [0, n) is processed exactly once, by contiguous
 * chunks of at least `grain` items (unless n itself is smaller), for many (n, grain,
 * threads) combinations and many back-to-back runs, which is where a lost wake-up or a
 * worker running a stale job would show. Run under ASan/TSan-like conditions by
 * `make SANITIZE=address,undefined check`.
 */
#include <check.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/threadpool.h"
#include "testutil.h"

typedef struct {
    atomic_int *hits; /* per index: how many times it was processed */
    atomic_int calls;
    atomic_int min_chunk;
    int n;
} coverage;

static void count_indices(void *p, int begin, int end) {
    coverage *cov = p;
    ck_assert_int_ge(begin, 0);
    ck_assert_int_le(end, cov->n);
    ck_assert_int_lt(begin, end);
    for (int i = begin; i < end; i++) atomic_fetch_add(&cov->hits[i], 1);
    atomic_fetch_add(&cov->calls, 1);
    int len = end - begin, cur = atomic_load(&cov->min_chunk);
    while (len < cur && !atomic_compare_exchange_weak(&cov->min_chunk, &cur, len)) {
    }
}

/* Runs one loop and checks the coverage, the chunk count and the chunk sizes. */
static void check_one_run(threadpool *tp, int n, int grain, atomic_int *hits) {
    coverage cov = {hits, 0, n + 1, n};
    for (int i = 0; i < n; i++) atomic_store(&hits[i], 0);
    threadpool_run(tp, n, grain, count_indices, &cov);
    for (int i = 0; i < n; i++)
        ck_assert_msg(atomic_load(&hits[i]) == 1, "n=%d grain=%d threads=%d: index %d processed %d times", n,
                      grain, threadpool_size(tp), i, atomic_load(&hits[i]));
    int calls = atomic_load(&cov.calls);
    ck_assert_int_le(calls, threadpool_size(tp));
    if (n > 0) ck_assert_int_ge(calls, 1);
    if (calls > 1) ck_assert_int_ge(atomic_load(&cov.min_chunk), grain);
    /* Enough work for every thread: all of them get a chunk. */
    if (n >= grain * threadpool_size(tp) && grain >= 1) ck_assert_int_eq(calls, threadpool_size(tp));
}

START_TEST(test_every_index_once) {
    const int sizes[] = {0, 1, 2, 3, 5, 7, 16, 17, 100, 1000, 4097};
    const int grains[] = {1, 2, 3, 8, 64, 5000};
    atomic_int *hits = calloc(4097, sizeof *hits);
    ck_assert_ptr_nonnull(hits);
    for (int threads = 1; threads <= 4; threads++) {
        threadpool *tp = threadpool_create(threads);
        ck_assert_ptr_nonnull(tp);
        ck_assert_int_eq(threadpool_size(tp), threads);
        for (int rep = 0; rep < 5; rep++)
            for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++)
                for (size_t gi = 0; gi < sizeof grains / sizeof grains[0]; gi++)
                    check_one_run(tp, sizes[si], grains[gi], hits);
        threadpool_free(tp);
    }
    free(hits);
}
END_TEST

START_TEST(test_null_pool_runs_inline) {
    atomic_int hits[10];
    ck_assert_int_eq(threadpool_size(NULL), 1);
    check_one_run(NULL, 10, 1, hits);
}
END_TEST

typedef struct {
    long long *partial; /* one slot per chunk start; summed afterwards */
    const int *values;
} sum_job;

static void sum_range(void *p, int begin, int end) {
    sum_job *job = p;
    long long s = 0;
    for (int i = begin; i < end; i++) s += job->values[i];
    job->partial[begin] = s;
}

/* Thousands of tiny back-to-back jobs (the forward pass's pattern): each result must be
 * complete when threadpool_run returns, and the pool must never hang. */
START_TEST(test_many_short_runs) {
    enum { N = 257 };
    int values[N];
    long long partial[N];
    long long want = 0;
    for (int i = 0; i < N; i++) {
        values[i] = i * 7 - 300;
        want += values[i];
    }
    for (int threads = 2; threads <= 3; threads++) {
        threadpool *tp = threadpool_create(threads);
        ck_assert_ptr_nonnull(tp);
        sum_job job = {partial, values};
        for (int rep = 0; rep < 2000; rep++) {
            memset(partial, 0, sizeof partial);
            threadpool_run(tp, N, 1 + rep % 50, sum_range, &job);
            long long got = 0;
            for (int i = 0; i < N; i++) got += partial[i];
            ck_assert_int_eq(got, want);
        }
        threadpool_free(tp);
    }
}
END_TEST

/* Idle long enough for the workers to stop spinning and sleep, then run again. */
START_TEST(test_wakes_sleeping_workers) {
    atomic_int hits[64];
    threadpool *tp = threadpool_create(3);
    ck_assert_ptr_nonnull(tp);
    for (int rep = 0; rep < 5; rep++) {
        check_one_run(tp, 64, 1, hits);
        struct timespec ts = {0, 20 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    threadpool_free(tp);
}
END_TEST

START_TEST(test_create_rejects_zero_threads) {
    ck_assert_ptr_null(threadpool_create(0));
    threadpool_free(NULL);
}
END_TEST

static Suite *threadpool_suite(void) {
    Suite *s = suite_create("threadpool");
    TCase *tc = tcase_create("fork_join");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_every_index_once);
    tcase_add_test(tc, test_null_pool_runs_inline);
    tcase_add_test(tc, test_many_short_runs);
    tcase_add_test(tc, test_wakes_sleeping_workers);
    tcase_add_test(tc, test_create_rejects_zero_threads);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) {
    return tu_run_suite(threadpool_suite());
}
