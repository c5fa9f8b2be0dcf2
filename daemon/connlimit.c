#include "connlimit.h"

#include <ctype.h>
#include <dirent.h>
#include <event2/buffer.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

enum { PH_HEAD, PH_BODY, PH_CHUNKED, PH_DONE, PH_IDLE, PH_REJECTED };

struct conn_rec {
    conn_rec *prev, *next;
    connlimit *cl;
    struct bufferevent *bev; /* referenced */
    struct evbuffer_cb_entry *cbe;
    struct evhttp_connection *evcon; /* NULL until set up */
    int fd;
    int phase, busy, answered, over_budget;
    double t_accept, t_start, t_body;
    long long req_bytes, body_bytes, content_length, reserved;
    int got_request_line, chunked;
    char line[64];
    int line_len;
    conn_close_fn on_close;
    void *close_arg;
};

static double mono_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* ------------------------------------------------------------ counting */

static int local_port(int fd) {
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    socklen_t len = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &len)) return -1;
    if (ss.ss_family == AF_INET) return ntohs(((struct sockaddr_in *)&ss)->sin_port);
    if (ss.ss_family == AF_INET6) return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return -1;
}

static int is_listening(int fd) {
    int on = 0;
    socklen_t len = sizeof on;
    return getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &on, &len) == 0 && on;
}

int connlimit_count(const connlimit *cl) {
    DIR *d = opendir("/proc/self/fd");
    if (!d) return cl->counted + cl->accepted_since; /* no /proc: keep the estimate */
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        char *end;
        long fd = strtol(e->d_name, &end, 10);
        if (*end || end == e->d_name || fd == dirfd(d)) continue;
        int port = local_port((int)fd);
        if (port < 0) continue;
        for (int i = 0; i < cl->nlisteners; i++)
            if (cl->ports[i] == port) {
                n += !is_listening((int)fd);
                break;
            }
    }
    closedir(d);
    return n;
}

static void set_listening(connlimit *cl, int on) {
    for (int i = 0; i < cl->nlisteners; i++) {
        if (on)
            evconnlistener_enable(cl->listeners[i]);
        else
            evconnlistener_disable(cl->listeners[i]);
    }
}

static void recount(connlimit *cl) {
    cl->counted = connlimit_count(cl);
    cl->accepted_since = 0;
}

/* ------------------------------------------------------------ records */

static conn_rec *find(connlimit *cl, struct evhttp_connection *evcon) {
    struct bufferevent *bev = evcon ? evhttp_connection_get_bufferevent(evcon) : NULL;
    int fd = bev ? (int)bufferevent_getfd(bev) : -1;
    if (fd >= 0 && fd < cl->nfd && cl->byfd[fd] && cl->byfd[fd]->evcon == evcon) return cl->byfd[fd];
    for (conn_rec *r = cl->head; r; r = r->next) /* not indexed yet */
        if (r->evcon == evcon) return r;
    return NULL;
}

static void release_budget(conn_rec *r) {
    r->cl->budget_used -= r->reserved;
    r->reserved = 0;
}

static void start_request(conn_rec *r, double now) {
    release_budget(r);
    r->phase = PH_HEAD;
    r->t_start = now;
    r->req_bytes = r->body_bytes = 0;
    r->content_length = -1;
    r->got_request_line = r->chunked = 0;
    r->line_len = 0;
}

/* Unlink and free a record; the connection itself is libevent's. */
static void rec_free(conn_rec *r) {
    connlimit *cl = r->cl;
    release_budget(r);
    if (r->prev)
        r->prev->next = r->next;
    else
        cl->head = r->next;
    if (r->next) r->next->prev = r->prev;
    if (r->fd >= 0 && r->fd < cl->nfd && cl->byfd[r->fd] == r) cl->byfd[r->fd] = NULL;
    if (r->cbe) evbuffer_remove_cb_entry(bufferevent_get_input(r->bev), r->cbe);
    bufferevent_decref(r->bev);
    free(r);
}

/* evhttp frees the connection: tell its owner (a pending job), then forget it. */
static void closed_cb(struct evhttp_connection *evcon, void *arg) {
    conn_rec *r = arg;
    conn_close_fn fn = r->on_close;
    void *fa = r->close_arg;
    rec_free(r);
    if (fn) fn(fa);
}

/* Close a connection that is not the server's (no request handed over): evhttp frees
 * its request and calls closed_cb. */
static void drop(conn_rec *r, long long *counter) {
    (*counter)++;
    evhttp_connection_free(r->evcon);
}

/* --------------------------------------------------- request byte scanner */

static int header_is(const char *line, int len, const char *name, const char **value) {
    size_t n = strlen(name);
    if ((size_t)len <= n || strncasecmp(line, name, n) != 0 || line[n] != ':') return 0;
    const char *v = line + n + 1;
    while (*v == ' ' || *v == '\t') v++;
    *value = v;
    return 1;
}

/* Answer 503 before reading the body: the budget of bodies held at once is spent. The
 * reply goes straight to the socket (evhttp's output is empty while it reads a
 * request); reading stops, and the connection is closed after a second, time enough
 * for the client to read the reply. */
static void reject_budget(conn_rec *r) {
    connlimit *cl = r->cl;
    static const char body[] =
        "{\"error\":{\"code\":\"busy\",\"message\":\"too many request bodies are being "
        "received at once (body_budget_bytes); retry\"}}";
    char msg[512];
    int n =
        snprintf(msg, sizeof msg,
                 "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 1\r\n"
                 "X-Content-Type-Options: nosniff\r\nCache-Control: no-store\r\nConnection: close\r\n"
                 "Content-Length: %zu\r\n\r\n%s",
                 sizeof body - 1, body);
    cl->rejected_budget++;
    r->phase = PH_REJECTED;
    r->answered = 1;
    r->t_start = mono_ms();
    bufferevent_disable(r->bev, EV_READ);
    if (r->fd >= 0 && send(r->fd, msg, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT) > 0) shutdown(r->fd, SHUT_WR);
}

static void end_of_headers(conn_rec *r, double now) {
    connlimit *cl = r->cl;
    r->t_body = now;
    if (r->chunked)
        r->phase = PH_CHUNKED;
    else if (r->content_length > 0) {
        if (cl->body_budget > 0 && cl->budget_used + r->content_length > cl->body_budget) {
            reject_budget(r);
            return;
        }
        r->reserved = r->content_length;
        cl->budget_used += r->reserved;
        r->phase = PH_BODY;
    } else
        r->phase = PH_DONE;
}

static void end_of_line(conn_rec *r, double now) {
    int len = r->line_len;
    if (len > 0 && r->line[len - 1] == '\r') len--;
    r->line[len] = '\0';
    r->line_len = 0;
    const char *v;
    if (len == 0) {
        if (r->got_request_line) end_of_headers(r, now); /* blank lines before a request are skipped */
    } else if (!r->got_request_line)
        r->got_request_line = 1;
    else if (header_is(r->line, len, "Content-Length", &v)) {
        if (r->content_length < 0 && isdigit((unsigned char)*v)) r->content_length = strtoll(v, NULL, 10);
    } else if (header_is(r->line, len, "Transfer-Encoding", &v))
        r->chunked = 1;
}

static void scan(conn_rec *r, const unsigned char *p, size_t n, double now) {
    for (size_t i = 0; i < n; i++) {
        if (r->phase == PH_IDLE) start_request(r, now);
        if (r->phase == PH_BODY || r->phase == PH_CHUNKED) {
            size_t take = n - i;
            if (r->phase == PH_BODY && (long long)take > r->content_length - r->body_bytes)
                take = (size_t)(r->content_length - r->body_bytes);
            r->body_bytes += (long long)take;
            r->req_bytes += (long long)take;
            if (r->phase == PH_CHUNKED) {
                r->cl->budget_used += (long long)take; /* no length to reserve: count what comes */
                r->reserved += (long long)take;
            }
            i += take - 1;
            if (r->phase == PH_BODY && r->body_bytes >= r->content_length) r->phase = PH_DONE;
            continue;
        }
        if (r->phase != PH_HEAD) return; /* answered or complete: evhttp has the rest */
        r->req_bytes++;
        if (p[i] == '\n')
            end_of_line(r, now);
        else if (r->line_len < (int)sizeof r->line - 1)
            r->line[r->line_len++] = (char)p[i];
    }
}

/* Every byte read into the connection's input buffer, before evhttp parses it. */
static void input_cb(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg) {
    conn_rec *r = arg;
    if (info->n_added == 0 || r->busy) return;
    if (r->phase == PH_BODY && r->body_bytes + (long long)info->n_added < r->content_length) {
        r->body_bytes += (long long)info->n_added; /* the common case: more of the body, nothing to parse */
        r->req_bytes += (long long)info->n_added;
        return;
    }
    size_t len = evbuffer_get_length(buf);
    size_t from = len > info->n_added ? len - info->n_added : 0;
    double now = mono_ms();
    struct evbuffer_ptr pos;
    if (evbuffer_ptr_set(buf, &pos, from, EVBUFFER_PTR_SET) != 0) return;
    struct evbuffer_iovec v[8];
    int nv = evbuffer_peek(buf, (ev_ssize_t)(len - from), &pos, v, 8);
    for (int i = 0; i < nv && i < 8; i++) scan(r, v[i].iov_base, v[i].iov_len, now);
    /* A chunked body has no length to check up front: stop reading once the budget is
     * spent; the sweep closes it (not here, inside libevent's read callback). */
    if (r->phase == PH_CHUNKED && r->cl->body_budget > 0 && r->cl->budget_used > r->cl->body_budget) {
        bufferevent_disable(r->bev, EV_READ);
        r->over_budget = 1;
    }
}

/* ------------------------------------------------------------ timers */

static int grow_index(connlimit *cl, int fd) {
    if (fd < cl->nfd) return 0;
    int n = cl->nfd ? cl->nfd : 64;
    while (n <= fd) n *= 2;
    conn_rec **b = realloc(cl->byfd, (size_t)n * sizeof(conn_rec *));
    if (!b) return -1;
    memset(b + cl->nfd, 0, (size_t)(n - cl->nfd) * sizeof(conn_rec *));
    cl->byfd = b;
    cl->nfd = n;
    return 0;
}

/* The pass after accept: evhttp has made the connection around our bufferevent (its
 * callback argument); take it over. */
static void setup_cb(evutil_socket_t fd, short what, void *arg) {
    (void)fd, (void)what;
    connlimit *cl = arg;
    for (conn_rec *r = cl->head, *next; r; r = next) {
        next = r->next;
        if (r->evcon) continue;
        void *evcon = NULL;
        bufferevent_getcb(r->bev, NULL, NULL, NULL, &evcon);
        if (!evcon) { /* evhttp gave up on it already */
            rec_free(r);
            continue;
        }
        r->evcon = evcon;
        r->fd = (int)bufferevent_getfd(r->bev);
        if (r->fd >= 0 && grow_index(cl, r->fd) == 0) cl->byfd[r->fd] = r;
        evhttp_connection_set_closecb(r->evcon, closed_cb, r);
    }
}

static double rate_of(const conn_rec *r, double now) {
    double s = (now - r->t_start) / 1e3;
    return r->phase == PH_IDLE ? 0 : (double)r->req_bytes / (s > 1e-3 ? s : 1e-3);
}

/* The connection doing the least that is not the server's and not brand new. */
static conn_rec *victim(connlimit *cl, double now) {
    conn_rec *best = NULL;
    double best_rate = 0;
    for (conn_rec *r = cl->head; r; r = r->next) {
        if (!r->evcon || r->busy || r->phase == PH_DONE || now - r->t_accept < CONN_MIN_AGE_MS) continue;
        double rate = rate_of(r, now);
        if (!best || rate < best_rate || (rate == best_rate && r->t_start < best->t_start))
            best = r, best_rate = rate;
    }
    return best;
}

static int make_room(connlimit *cl) {
    conn_rec *v = victim(cl, mono_ms());
    if (!v) return 0;
    drop(v, &cl->dropped_cap);
    return 1;
}

static void sweep_cb(evutil_socket_t fd, short what, void *arg) {
    (void)fd, (void)what;
    connlimit *cl = arg;
    double now = mono_ms();
    for (conn_rec *r = cl->head, *next; r; r = next) {
        next = r->next;
        if (!r->evcon || r->busy) continue;
        if (r->over_budget)
            drop(r, &cl->rejected_budget);
        else if (r->phase == PH_HEAD && now - r->t_start > cl->header_timeout_ms)
            drop(r, &cl->dropped_header);
        else if ((r->phase == PH_BODY || r->phase == PH_CHUNKED) && cl->min_body_rate > 0) {
            double el = now - r->t_body;
            if (el > cl->header_timeout_ms && (double)r->body_bytes < (double)cl->min_body_rate * el / 1e3)
                drop(r, &cl->dropped_body);
        } else if (r->phase == PH_REJECTED && now - r->t_start > 1000) {
            long long ignored = 0;
            drop(r, &ignored);
        }
    }
}

static void recheck_cb(evutil_socket_t fd, short what, void *arg) {
    (void)fd, (void)what;
    connlimit *cl = arg;
    recount(cl);
    if (cl->counted >= cl->max && make_room(cl)) cl->counted--;
    if (cl->counted < cl->max) {
        cl->paused = 0;
        set_listening(cl, 1);
        event_del(cl->recheck);
    }
}

/* ------------------------------------------------------------ public */

struct bufferevent *connlimit_bevcb(struct event_base *base, void *arg) {
    connlimit *cl = arg;
    cl->accepted_since++;
    if (cl->max > 0 && !cl->paused && cl->nlisteners > 0 && cl->counted + cl->accepted_since >= cl->max) {
        recount(cl); /* the connection being set up is already counted: its fd is open */
        if (cl->counted >= cl->max && make_room(cl)) cl->counted--;
        if (cl->counted >= cl->max) {
            static const struct timeval every = {0, 100000};
            cl->paused = 1;
            cl->pauses++;
            set_listening(cl, 0);
            event_add(cl->recheck, &every);
        }
    }
    struct bufferevent *bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
    conn_rec *r = bev ? calloc(1, sizeof *r) : NULL;
    if (!r) return bev; /* untracked, still served */
    r->cl = cl;
    r->bev = bev;
    r->fd = -1;
    r->t_accept = mono_ms();
    start_request(r, r->t_accept); /* the first request's clock starts at the accept */
    r->cbe = evbuffer_add_cb(bufferevent_get_input(bev), input_cb, r);
    bufferevent_incref(bev);
    r->next = cl->head;
    if (cl->head) cl->head->prev = r;
    cl->head = r;
    event_active(cl->setup, EV_READ, 0);
    return bev;
}

void connlimit_busy(connlimit *cl, struct evhttp_connection *evcon) {
    conn_rec *r = find(cl, evcon);
    if (r) r->busy = 1;
}

void connlimit_idle(connlimit *cl, struct evhttp_connection *evcon) {
    conn_rec *r = find(cl, evcon);
    if (!r) return;
    r->busy = 0;
    release_budget(r);
    r->phase = PH_IDLE; /* keep-alive: the next request's clock starts at its first byte */
}

int connlimit_on_close(connlimit *cl, struct evhttp_connection *evcon, conn_close_fn fn, void *arg) {
    conn_rec *r = find(cl, evcon);
    if (!r) return -1;
    r->on_close = fn;
    r->close_arg = arg;
    return 0;
}

int connlimit_answered(connlimit *cl, struct evhttp_connection *evcon) {
    conn_rec *r = find(cl, evcon);
    return r && r->answered;
}

int connlimit_init(connlimit *cl, struct event_base *base, int max) {
    memset(cl, 0, sizeof *cl);
    cl->base = base;
    cl->max = max;
    cl->header_timeout_ms = 10000;
    cl->recheck = event_new(base, -1, EV_PERSIST, recheck_cb, cl);
    cl->setup = event_new(base, -1, 0, setup_cb, cl);
    cl->sweep = event_new(base, -1, EV_PERSIST, sweep_cb, cl);
    static const struct timeval every = {0, 250000};
    if (!cl->recheck || !cl->setup || !cl->sweep || event_add(cl->sweep, &every)) return -1;
    return 0;
}

void connlimit_add_listener(connlimit *cl, struct evconnlistener *l, int port) {
    if (!l || cl->nlisteners == CONNLIMIT_MAX_LISTENERS) return;
    cl->listeners[cl->nlisteners] = l;
    cl->ports[cl->nlisteners++] = port;
}

void connlimit_stop(connlimit *cl) {
    if (cl->recheck) event_del(cl->recheck);
    cl->nlisteners = 0;
    cl->paused = 0;
}

void connlimit_free(connlimit *cl) {
    for (conn_rec *r = cl->head, *next; r; r = next) {
        next = r->next;
        if (r->evcon) evhttp_connection_set_closecb(r->evcon, NULL, NULL);
        rec_free(r);
    }
    free(cl->byfd);
    cl->byfd = NULL;
    cl->nfd = 0;
    if (cl->recheck) event_free(cl->recheck);
    if (cl->setup) event_free(cl->setup);
    if (cl->sweep) event_free(cl->sweep);
    cl->recheck = cl->setup = cl->sweep = NULL;
}
