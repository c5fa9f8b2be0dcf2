/*
 * Client connections: the cap on how many are open at once, and the deadlines that
 * keep slow clients from holding them (issue #10: 530 sockets sending one header byte a
 * second kept everyone else out for as long as they liked).
 *
 * libevent 2.1's evhttp has no evhttp_set_max_connections, no hook for a new
 * connection and no deadline for a whole request (its timeout is per read, so each
 * byte resets it). What it does give: evhttp_set_bevcb, called for every accepted
 * socket to make its bufferevent. We make it, register a callback on its input
 * evbuffer (it sees every byte read before evhttp parses it) and, once evhttp has
 * wrapped it in a connection (the next loop pass), set that connection's close
 * callback: from then on we know each connection from accept to close. One conn_rec per
 * connection; it holds a reference on the bufferevent so it can never point to freed
 * memory, dropped when libevent closes the connection.
 *
 * From the bytes: a request's line + headers must arrive within header_timeout_ms of
 * its first byte (of the accept, for a connection's first request), and its body at
 * min_body_rate bytes/s on average once header_timeout_ms has passed since the headers
 * ended. Bodies hold a global budget (body_budget bytes, from Content-Length when the
 * headers end): a request that does not fit is answered 503 + Retry-After before its
 * body is read, and closed. A request handed to the server (connlimit_busy) is exempt
 * until its reply (connlimit_idle): the job deadline covers it.
 *
 * At the cap, the connection doing the least (idle, or the slowest unfinished request
 * older than CONN_MIN_AGE_MS) is closed to make room; only when every connection is busy
 * or young are the listeners paused, and new clients wait in the kernel's backlog. The
 * count comes from the kernel (our sockets that are not listening), re-taken when an
 * estimate reaches the cap and every 100 ms while paused. Loop thread only.
 */
#ifndef EFFDETD_CONNLIMIT_H
#define EFFDETD_CONNLIMIT_H

#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/listener.h>

#define CONNLIMIT_MAX_LISTENERS 8
#define CONN_MIN_AGE_MS 500

typedef void (*conn_close_fn)(void *arg);

typedef struct conn_rec conn_rec;

typedef struct {
    struct event_base *base;
    int max; /* 0 = no cap */
    struct evconnlistener *listeners[CONNLIMIT_MAX_LISTENERS];
    int ports[CONNLIMIT_MAX_LISTENERS];
    int nlisteners;
    int counted, accepted_since;
    int paused;
    struct event *recheck, *setup, *sweep;

    /* limits (the server updates them on reload) */
    int header_timeout_ms;
    long long min_body_rate; /* bytes/s; 0 = none */
    long long body_budget;   /* bytes; 0 = none */

    conn_rec *head; /* every tracked connection */
    conn_rec **byfd;
    int nfd;
    long long budget_used;

    /* counters for /metrics */
    long long pauses, dropped_header, dropped_body, dropped_cap, rejected_budget;
} connlimit;

int connlimit_init(connlimit *cl, struct event_base *base, int max);
/* A listening socket evhttp accepts on, and its local port. */
void connlimit_add_listener(connlimit *cl, struct evconnlistener *l, int port);
/* For evhttp_set_bevcb(http, connlimit_bevcb, cl): counts and tracks the accept, then
 * creates the connection's bufferevent exactly as evhttp would. */
struct bufferevent *connlimit_bevcb(struct event_base *base, void *arg);
/* Open client connections on our ports, counted now. */
int connlimit_count(const connlimit *cl);

/* The server took the connection's request (route) / sent its reply. */
void connlimit_busy(connlimit *cl, struct evhttp_connection *evcon);
void connlimit_idle(connlimit *cl, struct evhttp_connection *evcon);
/* Call fn(arg) when the connection closes (one hook per connection; fn NULL clears).
 * -1 when the connection is not tracked (out of memory at its accept). */
int connlimit_on_close(connlimit *cl, struct evhttp_connection *evcon, conn_close_fn fn, void *arg);
/* 1 when the tracker already answered this connection's request (503, budget). */
int connlimit_answered(connlimit *cl, struct evhttp_connection *evcon);

/* Forget the listeners (they are being removed: shutdown). */
void connlimit_stop(connlimit *cl);
/* Before evhttp_free: detaches every close callback and releases the records. */
void connlimit_free(connlimit *cl);

#endif
