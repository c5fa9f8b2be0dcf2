/* effdetd's runtime: one libevent loop thread owning every socket and evhttp call, a
 * bounded job queue, N worker threads. Jobs cross threads only through the queue (loop ->
 * worker) and the done list + event_active (worker -> loop). */
#ifndef EFFDETD_SERVER_H
#define EFFDETD_SERVER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "connlimit.h"
#include "config.h"
#include "effdet.h"
#include "log.h"
#include "metrics.h"
#include "models.h"
#include "params.h"
#include "queue.h"

struct event_base;
struct event;
struct evhttp;
struct evhttp_request;
struct evhttp_bound_socket;
struct evbuffer;

typedef struct server server;

typedef enum { JOB_DETECT, JOB_COMPAT } job_kind;

/* One detection request. Owned by the loop thread except while a worker runs it. */
typedef struct job {
    server *srv;
    struct evhttp_request *req; /* loop thread only; NULL once libevent has freed it */
    endpoint_id endpoint;
    job_kind kind;
    char path[128];            /* for the access log */
    struct event *deadline_ev; /* loop: answers 504 if still queued at the deadline */
    struct event *watch_ev;    /* loop: notices the client hanging up while queued */
    atomic_int cancelled;      /* client gone: the worker skips or discards it */
    int client_gone;           /* loop: closecb fired */

    /* input, immutable once queued */
    struct evbuffer *body; /* owns the bytes `image` points into */
    const uint8_t *image;
    size_t image_len;
    model_set *set;     /* reference held by the job */
    model_entry *model; /* in set */
    detect_params dp;
    double min_confidence; /* JOB_COMPAT */
    int compat_max;
    int render_quality;
    long long max_pixels;
    int allow_dct;
    uint8_t *class_mask; /* NULL = all classes */
    double t_arrive_ms, deadline_ms;

    /* output, written by the worker */
    int status;
    const char *content_type;
    char *resp;
    size_t resp_len;
    char *x_detections; /* render=jpeg: header value */
    int detections;
    double t_start_ms, t_end_ms, decode_ms, infer_ms, post_ms;
    struct job *next; /* done list */
} job;

typedef struct {
    model_entry *model; /* referenced */
    effdet_context *ctx;
} ctx_entry;

typedef struct worker {
    server *srv;
    int index;
    pthread_t thread;
    ctx_entry *ctx; /* this worker's contexts, one per model it serves */
    int nctx, ctx_cap;
    ctx_entry *inbox; /* warmed-up contexts the loader prepared (guarded by srv->mu) */
    int ninbox;
} worker;

struct server {
    effdetd_config cfg;      /* loop thread's copy; workers read only what jobs carry */
    const char *config_path; /* NULL: no file */
    char **overrides;        /* name, value pairs from the command line, reapplied on reload */
    int noverrides;
    logger log;

    struct event_base *base;
    struct evhttp *http;
    struct evhttp_bound_socket *bound[8];
    int nbound;
    connlimit conns; /* max_connections, kept at the listeners */
    int port;
    char instance[CFG_STR_MAX + 8]; /* cfg.instance, or hostname:port */

    job_queue queue;
    worker *workers;
    int nworkers, queue_cap, threads; /* fixed at start */
    atomic_int busy;

    pthread_mutex_t mu; /* guards set, done list */
    model_set *set;     /* current; NULL until the first load finishes */
    job *done_head, *done_tail;
    struct event *done_ev;
    atomic_ullong next_model_id;

    /* reload: a thread builds the new set, the loop swaps it in */
    pthread_t reload_thread;
    int reloading, reload_pending;
    struct event *reload_ev;
    model_set *reload_set;
    effdetd_config reload_cfg;
    int reload_ok;
    char reload_err[512];
    int initial_load;

    int ready, draining;
    int outstanding; /* jobs created and not yet finished (loop thread) */
    struct event *sig_ev[4], *watchdog_ev, *drain_ev, *exit_ev;
    metrics met;
    int exit_code;
};

double now_ms(void);

/* Create the loop, bind (or adopt systemd's sockets), start workers and the first model
 * load. -1 with a message on failure. */
int server_start(server *s, char *err, size_t errlen);
/* Run until SIGTERM/SIGINT and the drain; returns the exit code. */
int server_run(server *s);
void server_free(server *s);

/* Worker side (worker.c). */
int workers_start(server *s, char *err, size_t errlen);
void workers_join(server *s);
/* Loop side: pass a finished job back (called by workers). */
void job_done(server *s, job *j);
/* Loader side: create and warm up, in parallel, one context per worker for each model of
 * `set` that `old` lacks, and leave them in the workers' inboxes. */
void workers_prepare(server *s, model_set *set, model_set *old, int warmup);
void job_free(job *j);
/* JSON error bodies shared by the loop and the workers. */
void json_error_body(sbuf *b, job_kind kind, int status, const char *code, const char *message);

#endif
