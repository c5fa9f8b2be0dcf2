/* A job's life on the loop thread: queued with a deadline and a watch on its client,
 * handed back by a worker through the done list, answered (or dropped when the client
 * left) and freed. job_done is the one function here a worker calls. */
#include "job.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>

#include "clock.h"
#include "http.h"
#include "reply_json.h"

int reject_with(reject *r, int status, const char *code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->message, sizeof r->message, fmt, ap);
    va_end(ap);
    return reject_as(r, status, code);
}

int reject_as(reject *r, int status, const char *code) {
    r->status = status;
    r->code = code;
    return status;
}

void job_fail(job *j, const reject *r) {
    sbuf b;
    sb_init(&b);
    json_error_body(&b, j->kind, r->status, r->code, r->message);
    j->status = b.oom ? 500 : r->status;
    j->content_type = "application/json";
    free(j->resp);
    j->resp = b.data;
    j->resp_len = b.len;
}

/* The loop's end of a job: reply (unless the client left), account, free. */
static void complete_job(server *s, job *j) {
    req_info ri = {j->endpoint, j->t_arrive_ms, j->model ? j->model->name : NULL, j->detections, 0};
    s->drain.outstanding--;
    if (j->status && j->t_start_ms > 0) {
        hist_observe(&s->met.queue_wait, (j->t_start_ms - j->t_arrive_ms) / 1e3);
        if (j->status == 200)
            hist_observe(&s->met.inference, (j->decode_ms + j->infer_ms + j->post_ms) / 1e3);
    }
    if (j->status == 504) s->met.deadline_expired++;
    if (j->watch_ev) event_del(j->watch_ev);
    if (j->req) {
        struct evhttp_connection *evcon = evhttp_request_get_connection(j->req);
        if (evcon && connlimit_on_close(&s->loop.conns, evcon, NULL, NULL) != 0)
            evhttp_connection_set_closecb(evcon, NULL, NULL);
        if (j->client_gone || !j->status) {
            if (evcon) connlimit_idle(&s->loop.conns, evcon);
            /* Nobody reads this reply: evhttp frees a request already detached from
             * its connection without writing, or writes into the dead socket, fails
             * and frees the connection with the request. */
            send_client_gone(s, j->req, j->endpoint, j->path, j->t_arrive_ms, ri.model);
        } else {
            if (j->x_detections)
                evhttp_add_header(evhttp_request_get_output_headers(j->req), "X-Detections", j->x_detections);
            if (j->status == 200) s->met.detections += (unsigned long long)j->detections;
            send_reply(s, j->req, &ri, j->status, j->content_type, j->resp, j->resp_len);
            hist_observe(&s->met.total, (now_ms() - j->t_arrive_ms) / 1e3);
        }
    } else {
        s->met.client_gone++;
        metrics_request(&s->met, j->endpoint, 499);
    }
    job_free(j);
    server_check_drain(s);
}

/* Take the whole done list (the workers append under done.mu). */
static job *take_done(server *s) {
    pthread_mutex_lock(&s->done.mu);
    job *j = s->done.head;
    s->done.head = s->done.tail = NULL;
    pthread_mutex_unlock(&s->done.mu);
    return j;
}

void job_done_cb(int fd, short what, void *arg) {
    server *s = arg;
    for (job *j = take_done(s), *next; j; j = next) {
        next = j->next;
        complete_job(s, j);
    }
}

void job_done(server *s, job *j) {
    pthread_mutex_lock(&s->done.mu);
    j->next = NULL;
    if (s->done.tail)
        s->done.tail->next = j;
    else
        s->done.head = j;
    s->done.tail = j;
    pthread_mutex_unlock(&s->done.mu);
    event_active(s->done.ev, EV_READ, 0);
}

static void deadline_cb(evutil_socket_t fd, short what, void *arg) {
    job *j = arg;
    server *s = j->srv;
    if (!queue_remove(&s->work.queue, j)) return; /* a worker has it: it will finish */
    reject r;
    reject_with(&r, 504, "deadline_exceeded", "the request waited in the queue past its deadline");
    job_fail(j, &r);
    j->t_start_ms = now_ms();
    complete_job(s, j);
}

/* The client is gone: a queued job is answered (499) now, a running one when it is back. */
static void client_gone(job *j) {
    atomic_store(&j->cancelled, 1);
    j->client_gone = 1;
    if (queue_remove(&j->srv->work.queue, j)) complete_job(j->srv, j);
}

static void watch_cb(evutil_socket_t fd, short what, void *arg) {
    job *j = arg;
    char c;
    ssize_t n = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n > 0) return; /* the client pipelined its next request: it is still there */
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
        event_add(j->watch_ev, NULL);
        return;
    }
    client_gone(j);
}

/* The client's connection closed while its job was pending (connlimit's hook). */
static void close_cb(void *arg) {
    job *j = arg;
    if (j->watch_ev) event_del(j->watch_ev); /* the fd is about to be closed */
    /* A request still attached to the connection is freed by libevent right after this
     * callback: forget it. A detached one (EOF while we held it) is ours to release. */
    if (j->req && evhttp_request_get_connection(j->req) != NULL) j->req = NULL;
    client_gone(j);
}

static void close_cb_untracked(struct evhttp_connection *evcon, void *arg) {
    close_cb(arg);
}

/* libevent 2.1 stops reading a connection once its request is complete, so it does not
 * notice a client that hangs up while its job waits. Watch the socket ourselves: EOF
 * or an error while the job is pending means nobody will read the reply. */
static void watch_client(server *s, job *j) {
    struct evhttp_connection *evcon = evhttp_request_get_connection(j->req);
    struct bufferevent *bev = evcon ? evhttp_connection_get_bufferevent(evcon) : NULL;
    evutil_socket_t fd = bev ? bufferevent_getfd(bev) : -1;
    if (fd < 0) return;
    j->watch_ev = event_new(s->loop.base, fd, EV_READ, watch_cb, j);
    if (j->watch_ev) event_add(j->watch_ev, NULL);
}

int job_enqueue(server *s, job *j, reject *r) {
    if (!(j->deadline_ev = evtimer_new(s->loop.base, deadline_cb, j)))
        return reject_with(r, 503, "out_of_memory", "out of memory");
    if (queue_push(&s->work.queue, j) != 0) {
        s->met.rejected_busy++;
        return reject_with(r, 503, "busy", "all %d workers are busy and the queue (%d) is full; retry",
                           s->work.nworkers, s->work.queue_cap);
    }
    s->drain.outstanding++;
    struct timeval tv = {s->cfg.deadline_ms / 1000, (s->cfg.deadline_ms % 1000) * 1000};
    evtimer_add(j->deadline_ev, &tv);
    struct evhttp_connection *evcon = evhttp_request_get_connection(j->req);
    if (evcon && connlimit_on_close(&s->loop.conns, evcon, close_cb, j) != 0)
        evhttp_connection_set_closecb(evcon, close_cb_untracked, j);
    watch_client(s, j);
    return 0;
}

/* Cut a job's ties to libevent before evhttp_free: that frees the connections and would
 * call a close callback on a job freed here. A request libevent detached from its dead
 * connection (EOF while we held it) is ours to free. */
static void orphan_job(server *s, job *j) {
    if (j->watch_ev) event_del(j->watch_ev);
    if (j->deadline_ev) event_del(j->deadline_ev);
    if (!j->req) return;
    struct evhttp_connection *evcon = evhttp_request_get_connection(j->req);
    if (evcon) {
        if (connlimit_on_close(&s->loop.conns, evcon, NULL, NULL) != 0)
            evhttp_connection_set_closecb(evcon, NULL, NULL);
    } else
        evhttp_request_free(j->req);
    j->req = NULL;
}

void job_free_unfinished(server *s) {
    for (job *j = take_done(s), *next; j; j = next) {
        next = j->next;
        orphan_job(s, j);
        job_free(j);
        s->drain.outstanding--;
    }
}

void job_free(job *j) {
    if (!j) return;
    if (j->deadline_ev) event_free(j->deadline_ev);
    if (j->watch_ev) event_free(j->watch_ev);
    if (j->body) evbuffer_free(j->body);
    model_set_unref(j->set);
    free(j->class_mask);
    free(j->resp);
    free(j->x_detections);
    free(j);
}
