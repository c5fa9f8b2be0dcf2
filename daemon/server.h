/* effdetd's runtime: one libevent loop thread owning every socket and evhttp call, a
 * bounded job queue, N worker threads. The server's state is grouped by the file that
 * owns it; other files read it and call the owner's functions to change it. */
#ifndef EFFDETD_SERVER_H
#define EFFDETD_SERVER_H

#include <pthread.h>
#include <stdatomic.h>

#include "config.h"
#include "connlimit.h"
#include "effdet.h"
#include "job.h"
#include "log.h"
#include "metrics.h"
#include "models.h"
#include "queue.h"
#include "worker.h"

struct event_base;
struct event;
struct evhttp;
struct evhttp_bound_socket;

struct server {
    effdetd_config cfg;      /* loop thread's copy; workers read only what jobs carry */
    const char *config_path; /* NULL: no file */
    char **overrides;        /* name, value pairs from the command line, reapplied on reload */
    int noverrides;
    logger log;
    metrics met; /* loop thread only */

    struct { /* server.c: the event loop, listeners, signals */
        struct event_base *base;
        struct evhttp *http;
        struct evhttp_bound_socket *bound[8];
        int nbound;
        connlimit conns; /* max_connections, kept at the listeners */
        int port;
        char instance[CFG_STR_MAX + 8]; /* cfg.instance, or hostname:port */
        struct event *sig_ev[4], *watchdog_ev;
        int exit_code;
    } loop;

    struct { /* worker.c: the queue and the threads, fixed at start */
        job_queue queue;
        worker *workers;
        int nworkers, queue_cap, threads;
        atomic_int busy;
        pthread_mutex_t inbox_mu; /* guards every worker's inbox */
    } work;

    struct { /* reload.c swaps it, everyone reads it through server_models() */
        pthread_mutex_t mu;
        model_set *set; /* current; NULL until the first load finishes */
        int ready;      /* loop: the first load finished */
    } models;

    struct { /* job.c: jobs the workers finished, for the loop */
        pthread_mutex_t mu;
        job *head, *tail;
        struct event *ev;
    } done;

    struct { /* reload.c: a thread builds the new set, the loop swaps it in */
        pthread_t thread;
        int running, pending, initial;
        struct event *ev;
        model_set *set;
        effdetd_config cfg;
        int ok;
        char err[512];
    } reload;

    struct { /* server.c: SIGTERM's drain */
        int active;
        int outstanding; /* jobs created and not yet finished (loop thread) */
        struct event *timeout_ev, *exit_ev;
    } drain;
};

/* Create the loop, bind (or adopt systemd's sockets), start workers and the first model
 * load. -1 with a message on failure. */
int server_start(server *s, char *err, size_t errlen);
/* Run until SIGTERM/SIGINT and the drain; returns the exit code. */
int server_run(server *s);
void server_free(server *s);

/* Loop: a reference to the current model set (NULL while loading); unref it. */
model_set *server_models(server *s);
/* Loop: push the runtime options of s->cfg into libevent, connlimit and the instance name. */
void server_apply_config(server *s);
/* Loop: stop once draining and nothing is left to finish. */
void server_check_drain(server *s);

#endif
