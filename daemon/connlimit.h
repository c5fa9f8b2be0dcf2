/*
 * A cap on simultaneous client connections. libevent 2.1's evhttp has no
 * evhttp_set_max_connections and no hook when a connection closes, so the cap is kept
 * at the listening sockets: evhttp's bufferevent callback sees every accept; when the
 * count reaches the cap the listeners are paused, and new clients wait in the kernel's
 * listen backlog (not refused, not dropped) until a connection closes. Without a cap, a
 * flood of connections would run the process out of descriptors, and libevent then
 * spins on accept() failing with EMFILE.
 *
 * The count comes from the kernel, not from bookkeeping: the process's sockets whose
 * local port is one of ours and that are not listening. It is only taken when an
 * estimate (the last count plus accepts since) reaches the cap, and every 100 ms while
 * paused. Loop thread only.
 */
#ifndef EFFDETD_CONNLIMIT_H
#define EFFDETD_CONNLIMIT_H

#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>

#define CONNLIMIT_MAX_LISTENERS 8

typedef struct {
    struct event_base *base;
    int max; /* 0 = no cap */
    struct evconnlistener *listeners[CONNLIMIT_MAX_LISTENERS];
    int ports[CONNLIMIT_MAX_LISTENERS];
    int nlisteners;
    int counted, accepted_since;
    int paused;
    long long pauses; /* times the cap was reached */
    struct event *recheck;
} connlimit;

int connlimit_init(connlimit *cl, struct event_base *base, int max);
/* A listening socket evhttp accepts on, and its local port. */
void connlimit_add_listener(connlimit *cl, struct evconnlistener *l, int port);
/* For evhttp_set_bevcb(http, connlimit_bevcb, cl): counts the accept, then creates the
 * connection's bufferevent exactly as evhttp would. */
struct bufferevent *connlimit_bevcb(struct event_base *base, void *arg);
/* Open client connections on our ports, counted now. */
int connlimit_count(const connlimit *cl);
/* Forget the listeners (they are being removed: shutdown). */
void connlimit_stop(connlimit *cl);
void connlimit_free(connlimit *cl);

#endif
