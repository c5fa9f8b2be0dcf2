/* One detection request's life: created by intake.c on the loop thread, queued, run by a
 * worker (worker.c), handed back through the done list, answered and freed here.
 * Jobs cross threads only through the queue (loop -> worker) and the done list +
 * event_active (worker -> loop). */
#ifndef EFFDETD_JOB_H
#define EFFDETD_JOB_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "metrics.h"
#include "models.h"
#include "params.h"

struct event;
struct evbuffer;
struct evhttp_request;
typedef struct server server;

typedef enum { JOB_DETECT, JOB_COMPAT } job_kind;

/* Why a request is refused: HTTP status, the JSON error code and a message naming the
 * culprit. The one error style of request handling (loop and workers). */
typedef struct {
    int status;
    const char *code;
    char message[600];
} reject;

/* Fill r and return its status, so a check can `return reject_with(r, 400, ...)`. */
int reject_with(reject *r, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* The same when a parser has already written r->message. */
int reject_as(reject *r, int status, const char *code);

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

/* Loop: queue j and arm its deadline and client watch. 0, or the reject to answer
 * (queue full: 503 busy) with j still the caller's. */
int job_enqueue(server *s, job *j, reject *r);
/* Loop: done_ev's callback, answers every job the workers handed back. */
void job_done_cb(int fd, short what, void *arg);
/* Loop, at exit: detach every job left on the done list from libevent and free it. */
void job_free_unfinished(server *s);
/* Worker: hand a finished job back to the loop. */
void job_done(server *s, job *j);
/* Either side: the job's reply is this error (JSON body of j->kind's shape). */
void job_fail(job *j, const reject *r);
void job_free(job *j);

#endif
