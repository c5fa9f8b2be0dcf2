/* Bounded job queue: a ring buffer under one mutex. The queue is small (tens of jobs)
 * and each job costs milliseconds of inference, so a lock is not the bottleneck. */
#include "queue.h"

#include <stdlib.h>

int queue_init(job_queue *q, int capacity) {
    if (capacity < 1) return -1;
    q->items = calloc((size_t)capacity, sizeof *q->items);
    if (!q->items) return -1;
    q->cap = capacity;
    q->head = q->count = q->closed = 0;
    q->kicks = 0;
    pthread_mutex_init(&q->mu, NULL);
    pthread_cond_init(&q->nonempty, NULL);
    return 0;
}

void queue_destroy(job_queue *q) {
    if (!q->items) return;
    pthread_mutex_destroy(&q->mu);
    pthread_cond_destroy(&q->nonempty);
    free(q->items);
    q->items = NULL;
}

int queue_push(job_queue *q, void *item) {
    pthread_mutex_lock(&q->mu);
    int ok = !q->closed && q->count < q->cap;
    if (ok) {
        q->items[(q->head + q->count) % q->cap] = item;
        q->count++;
        pthread_cond_signal(&q->nonempty);
    }
    pthread_mutex_unlock(&q->mu);
    return ok ? 0 : -1;
}

int queue_pop_or_kick(job_queue *q, void **item, unsigned *seen) {
    pthread_mutex_lock(&q->mu);
    while (q->count == 0 && !q->closed && q->kicks == *seen) pthread_cond_wait(&q->nonempty, &q->mu);
    int r;
    if (q->count > 0) {
        *item = q->items[q->head];
        q->head = (q->head + 1) % q->cap;
        q->count--;
        r = 1;
    } else if (q->closed)
        r = -1;
    else {
        *seen = q->kicks;
        r = 0;
    }
    pthread_mutex_unlock(&q->mu);
    return r;
}

void *queue_pop(job_queue *q) {
    pthread_mutex_lock(&q->mu);
    while (q->count == 0 && !q->closed) pthread_cond_wait(&q->nonempty, &q->mu);
    void *item = NULL;
    if (q->count > 0) {
        item = q->items[q->head];
        q->head = (q->head + 1) % q->cap;
        q->count--;
    }
    pthread_mutex_unlock(&q->mu);
    return item;
}

void queue_kick(job_queue *q) {
    pthread_mutex_lock(&q->mu);
    q->kicks++;
    pthread_cond_broadcast(&q->nonempty);
    pthread_mutex_unlock(&q->mu);
}

int queue_remove(job_queue *q, void *item) {
    pthread_mutex_lock(&q->mu);
    int found = 0;
    for (int i = 0; i < q->count; i++) {
        int at = (q->head + i) % q->cap;
        if (found)
            q->items[(at - 1 + q->cap) % q->cap] = q->items[at];
        else if (q->items[at] == item)
            found = 1;
    }
    if (found) q->count--;
    pthread_mutex_unlock(&q->mu);
    return found;
}

void queue_visit(job_queue *q, void (*fn)(void *item)) {
    if (!q->items) return; /* never initialised (start-up failed first) */
    pthread_mutex_lock(&q->mu);
    for (int i = 0; i < q->count; i++) fn(q->items[(q->head + i) % q->cap]);
    pthread_mutex_unlock(&q->mu);
}

void queue_close(job_queue *q) {
    pthread_mutex_lock(&q->mu);
    q->closed = 1;
    pthread_cond_broadcast(&q->nonempty);
    pthread_mutex_unlock(&q->mu);
}

int queue_depth(job_queue *q) {
    pthread_mutex_lock(&q->mu);
    int n = q->count;
    pthread_mutex_unlock(&q->mu);
    return n;
}
