/* Worker threads (worker.c): each owns one engine context per model it serves. */
#ifndef EFFDETD_WORKER_H
#define EFFDETD_WORKER_H

#include <pthread.h>
#include <stddef.h>

#include "models.h"

typedef struct server server;

typedef struct {
    model_entry *model; /* referenced */
    effdet_context *ctx;
} ctx_entry;

typedef struct worker {
    server *srv;
    pthread_t thread;
    ctx_entry *ctx; /* this worker's contexts, one per model it serves */
    int nctx, ctx_cap;
    ctx_entry *inbox; /* warmed-up contexts the loader prepared (guarded by srv->work.inbox_mu) */
    int ninbox;
} worker;

int workers_start(server *s, char *err, size_t errlen);
/* Mark every job still queued cancelled (the workers skip it), then close the queue and
 * join the workers. */
void workers_join(server *s);
/* Loader side: create and warm up, in parallel, one context per worker for each model of
 * `set` that `old` lacks, and leave them in the workers' inboxes. */
void workers_prepare(server *s, model_set *set, model_set *old, int warmup);

#endif
