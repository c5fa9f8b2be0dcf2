/* Bounded multi-producer multi-consumer queue of pointers (jobs). The event loop pushes
 * and never blocks: a full queue is the caller's cue to answer 503 at once. */
#ifndef EFFDETD_QUEUE_H
#define EFFDETD_QUEUE_H

#include <pthread.h>
#include <stddef.h>

typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t nonempty;
    void **items;
    int cap, head, count;
    int closed;
    unsigned kicks; /* queue_kick() count: wakes idle consumers without an item */
} job_queue;

int queue_init(job_queue *q, int capacity);
void queue_destroy(job_queue *q);
/* 0 on success; -1 when full or closed (never blocks). */
int queue_push(job_queue *q, void *item);
/* Blocks until an item is available (returns it) or the queue is closed and empty
 * (returns NULL). Closing still lets workers drain what was queued. */
void *queue_pop(job_queue *q);
/* Like queue_pop, but also returns when queue_kick was called since *seen (the kick
 * count it last saw): 1 = an item in *item, 0 = kicked (*seen updated), -1 = closed and
 * empty. */
int queue_pop_or_kick(job_queue *q, void **item, unsigned *seen);
/* Wake every consumer waiting in queue_pop_or_kick (e.g. to free what a reload retired). */
void queue_kick(job_queue *q);
/* Remove a queued item (a client that went away). 1 if it was queued, 0 otherwise. */
int queue_remove(job_queue *q, void *item);
/* Call fn on every queued item, under the queue's lock (fn must not touch the queue). */
void queue_visit(job_queue *q, void (*fn)(void *item));
void queue_close(job_queue *q);
int queue_depth(job_queue *q);

#endif
