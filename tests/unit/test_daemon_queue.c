/* Bounded job queue: capacity, FIFO order, removal, close, and many producers and
 * consumers at once (every item delivered exactly once). */
#include <check.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdlib.h>

#include "../daemon/queue.h"
#include "testutil.h"

static int item[64];

START_TEST(bounded_fifo) {
    job_queue q;
    ck_assert_int_eq(queue_init(&q, 3), 0);
    for (int i = 0; i < 3; i++) ck_assert_int_eq(queue_push(&q, &item[i]), 0);
    ck_assert_int_eq(queue_push(&q, &item[3]), -1); /* full: refused at once */
    ck_assert_int_eq(queue_depth(&q), 3);
    ck_assert_ptr_eq(queue_pop(&q), &item[0]);
    ck_assert_int_eq(queue_push(&q, &item[3]), 0); /* wraps around */
    ck_assert_ptr_eq(queue_pop(&q), &item[1]);
    ck_assert_ptr_eq(queue_pop(&q), &item[2]);
    ck_assert_ptr_eq(queue_pop(&q), &item[3]);
    ck_assert_int_eq(queue_depth(&q), 0);
    queue_destroy(&q);
}
END_TEST

START_TEST(remove_keeps_order) {
    job_queue q;
    ck_assert_int_eq(queue_init(&q, 4), 0);
    ck_assert_int_eq(queue_push(&q, &item[9]), 0);
    ck_assert_ptr_eq(queue_pop(&q), &item[9]); /* head no longer at slot 0 */
    for (int i = 0; i < 4; i++) ck_assert_int_eq(queue_push(&q, &item[i]), 0);
    ck_assert_int_eq(queue_remove(&q, &item[1]), 1);
    ck_assert_int_eq(queue_remove(&q, &item[1]), 0);
    ck_assert_int_eq(queue_remove(&q, &item[7]), 0);
    ck_assert_int_eq(queue_depth(&q), 3);
    ck_assert_ptr_eq(queue_pop(&q), &item[0]);
    ck_assert_ptr_eq(queue_pop(&q), &item[2]);
    ck_assert_ptr_eq(queue_pop(&q), &item[3]);
    queue_destroy(&q);
}
END_TEST

START_TEST(close_drains_then_ends) {
    job_queue q;
    ck_assert_int_eq(queue_init(&q, 2), 0);
    ck_assert_int_eq(queue_push(&q, &item[0]), 0);
    queue_close(&q);
    ck_assert_int_eq(queue_push(&q, &item[1]), -1);
    ck_assert_ptr_eq(queue_pop(&q), &item[0]);
    ck_assert_ptr_null(queue_pop(&q));
    queue_destroy(&q);
}
END_TEST

/* A kick wakes a waiting consumer without an item (a reload's retired contexts are
 * freed by idle workers at once); items still come first. */
static job_queue kick_q;
static void *kick_waiter(void *arg) {
    void *it = NULL;
    unsigned seen = 0;
    intptr_t r = queue_pop_or_kick(&kick_q, &it, &seen);
    return (void *)r;
}

START_TEST(kick_wakes_idle_consumer) {
    ck_assert_int_eq(queue_init(&kick_q, 4), 0);
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, kick_waiter, NULL), 0);
    queue_kick(&kick_q);
    void *r;
    pthread_join(t, &r);
    ck_assert_int_eq((intptr_t)r, 0);
    unsigned seen = 0;
    void *it = NULL;
    queue_kick(&kick_q);
    ck_assert_int_eq(queue_push(&kick_q, &item[1]), 0);
    ck_assert_int_eq(queue_pop_or_kick(&kick_q, &it, &seen), 1);
    ck_assert_ptr_eq(it, &item[1]);
    ck_assert_int_eq(queue_pop_or_kick(&kick_q, &it, &seen), 0);
    ck_assert_uint_eq(seen, 2);
    queue_close(&kick_q);
    ck_assert_int_eq(queue_pop_or_kick(&kick_q, &it, &seen), -1);
    queue_destroy(&kick_q);
}
END_TEST

enum { PRODUCERS = 4, CONSUMERS = 3, PER_PRODUCER = 5000 };
static job_queue shared_q;
static int seen[PRODUCERS * PER_PRODUCER];
static pthread_mutex_t seen_mu = PTHREAD_MUTEX_INITIALIZER;

static void *producer(void *arg) {
    intptr_t base = (intptr_t)arg * PER_PRODUCER;
    for (intptr_t i = 0; i < PER_PRODUCER; i++)
        while (queue_push(&shared_q, (void *)(base + i + 1)) != 0) sched_yield(); /* full: retry */
    return NULL;
}

static void *consumer(void *arg) {
    void *p;
    while ((p = queue_pop(&shared_q)) != NULL) {
        pthread_mutex_lock(&seen_mu);
        seen[(intptr_t)p - 1]++;
        pthread_mutex_unlock(&seen_mu);
    }
    return NULL;
}

START_TEST(concurrent_exactly_once) {
    ck_assert_int_eq(queue_init(&shared_q, 8), 0);
    pthread_t p[PRODUCERS], c[CONSUMERS];
    for (intptr_t i = 0; i < CONSUMERS; i++) pthread_create(&c[i], NULL, consumer, NULL);
    for (intptr_t i = 0; i < PRODUCERS; i++) pthread_create(&p[i], NULL, producer, (void *)i);
    for (int i = 0; i < PRODUCERS; i++) pthread_join(p[i], NULL);
    queue_close(&shared_q);
    for (int i = 0; i < CONSUMERS; i++) pthread_join(c[i], NULL);
    for (int i = 0; i < PRODUCERS * PER_PRODUCER; i++) ck_assert_int_eq(seen[i], 1);
    queue_destroy(&shared_q);
}
END_TEST

int main(void) {
    Suite *s = suite_create("daemon_queue");
    TCase *tc = tcase_create("queue");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, bounded_fifo);
    tcase_add_test(tc, remove_keeps_order);
    tcase_add_test(tc, close_drains_then_ends);
    tcase_add_test(tc, kick_wakes_idle_consumer);
    tcase_add_test(tc, concurrent_exactly_once);
    suite_add_tcase(s, tc);
    return tu_run_suite(s);
}
