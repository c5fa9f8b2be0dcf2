#include "connlimit.h"

#include <dirent.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

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
        if (on) evconnlistener_enable(cl->listeners[i]);
        else evconnlistener_disable(cl->listeners[i]);
    }
}

static void recount(connlimit *cl) {
    cl->counted = connlimit_count(cl);
    cl->accepted_since = 0;
}

static void recheck_cb(evutil_socket_t fd, short what, void *arg) {
    (void)fd, (void)what;
    connlimit *cl = arg;
    recount(cl);
    if (cl->counted < cl->max) {
        cl->paused = 0;
        set_listening(cl, 1);
        event_del(cl->recheck);
    }
}

struct bufferevent *connlimit_bevcb(struct event_base *base, void *arg) {
    connlimit *cl = arg;
    cl->accepted_since++;
    if (cl->max > 0 && !cl->paused && cl->nlisteners > 0 && cl->counted + cl->accepted_since >= cl->max) {
        recount(cl); /* the connection being set up is already counted: its fd is open */
        if (cl->counted >= cl->max) {
            static const struct timeval every = {0, 100000};
            cl->paused = 1;
            cl->pauses++;
            set_listening(cl, 0);
            event_add(cl->recheck, &every);
        }
    }
    return bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
}

int connlimit_init(connlimit *cl, struct event_base *base, int max) {
    memset(cl, 0, sizeof *cl);
    cl->base = base;
    cl->max = max;
    cl->recheck = event_new(base, -1, EV_PERSIST, recheck_cb, cl);
    return cl->recheck ? 0 : -1;
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
    if (cl->recheck) event_free(cl->recheck);
    cl->recheck = NULL;
}
