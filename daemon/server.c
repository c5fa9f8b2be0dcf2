/* The event loop's life: start (libevent, listeners or systemd's sockets, signals, the
 * watchdog, the workers, the first model load), run, SIGTERM's drain, free. Loop thread
 * only. The rest of the loop's work: routes.c and http.c (requests and replies),
 * intake.c (detection requests), job.c (a job's life), reload.c (SIGHUP). */
#include "server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/thread.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "errf.h"
#include "http.h"
#include "reload.h"
#include "sdnotify.h"

model_set *server_models(server *s) {
    pthread_mutex_lock(&s->models.mu);
    model_set *set = s->models.set ? model_set_ref(s->models.set) : NULL;
    pthread_mutex_unlock(&s->models.mu);
    return set;
}

/* The replica's name for metrics and /v1/models: the `instance` option or hostname:port. */
static void set_instance(server *s) {
    char host[256] = "localhost";
    if (s->cfg.instance[0]) {
        snprintf(s->loop.instance, sizeof s->loop.instance, "%s", s->cfg.instance);
        return;
    }
    if (gethostname(host, sizeof host) != 0) snprintf(host, sizeof host, "localhost");
    host[sizeof host - 1] = '\0';
    for (char *p = host; *p; p++) /* label-safe, like the option */
        if (*p <= ' ' || *p > '~' || *p == '"' || *p == '\\') *p = '_';
    snprintf(s->loop.instance, sizeof s->loop.instance, "%s:%d", host, s->loop.port);
}

void server_apply_config(server *s) {
    evhttp_set_max_body_size(s->loop.http, s->cfg.max_body_bytes);
    evhttp_set_max_headers_size(s->loop.http, s->cfg.max_header_bytes);
    evhttp_set_timeout(s->loop.http, s->cfg.timeout_s);
    s->loop.conns.max = s->cfg.max_connections;
    s->loop.conns.header_timeout_ms = s->cfg.header_timeout_s * 1000;
    s->loop.conns.min_body_rate = s->cfg.min_body_rate;
    s->loop.conns.body_budget = s->cfg.body_budget_bytes;
    set_instance(s);
}

/* ------------------------------------------------------- signals and drain */

static void exit_cb(evutil_socket_t fd, short what, void *arg) {
    server *s = arg;
    event_base_loopbreak(s->loop.base);
}

void server_check_drain(server *s) {
    if (!s->drain.active || s->drain.outstanding > 0 || s->reload.running ||
        evtimer_pending(s->drain.exit_ev, NULL))
        return;
    /* Give the last replies a moment to leave the socket buffers before the loop stops. */
    struct timeval linger = {0, 200000};
    evtimer_add(s->drain.exit_ev, &linger);
}

static void drain_timeout_cb(evutil_socket_t fd, short what, void *arg) {
    server *s = arg;
    log_warn(&s->log, "drain timeout: exiting with %d job(s) unfinished", s->drain.outstanding);
    event_base_loopbreak(s->loop.base);
}

static void begin_drain(server *s, int signo) {
    if (s->drain.active) return;
    s->drain.active = 1;
    log_info(&s->log, "%s: stopping: new requests get 503, finishing %d job(s)", strsignal(signo),
             s->drain.outstanding);
    sd_notify_send("STOPPING=1\nSTATUS=draining");
    /* The listeners stay open until exit: a balancer's health check and a request that is
     * already in the accept backlog get a clean 503 + Connection: close (and go to another
     * replica) instead of a reset, and /readyz keeps answering 503. */
    struct timeval tv = {s->cfg.drain_timeout_ms / 1000, (s->cfg.drain_timeout_ms % 1000) * 1000};
    evtimer_add(s->drain.timeout_ev, &tv);
    server_check_drain(s);
}

static void signal_cb(evutil_socket_t signo, short what, void *arg) {
    server *s = arg;
    if (signo == SIGHUP) {
        if (s->drain.active) return;
        log_info(&s->log, "SIGHUP: reloading configuration and models");
        char msg[64];
        snprintf(msg, sizeof msg, "RELOADING=1\nMONOTONIC_USEC=%llu",
                 (unsigned long long)sd_monotonic_usec());
        sd_notify_send(msg);
        reload_start(s);
    } else {
        begin_drain(s, (int)signo);
    }
}

static void watchdog_cb(evutil_socket_t fd, short what, void *arg) {
    sd_notify_send("WATCHDOG=1");
}

/* ------------------------------------------------------------------ startup */

static int write_port_file(const char *path, int port, char *err, size_t errlen) {
    char tmp[CFG_STR_MAX + 16];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f || fprintf(f, "%d\n", port) < 0 || fclose(f) != 0 || rename(tmp, path) != 0) {
        errf(err, errlen, "port_file %s: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

static int bound_port(struct evhttp_bound_socket *b) {
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    socklen_t len = sizeof ss;
    if (getsockname(evhttp_bound_socket_get_fd(b), (struct sockaddr *)&ss, &len) != 0) return -1;
    if (ss.ss_family == AF_INET) return ntohs(((struct sockaddr_in *)&ss)->sin_port);
    if (ss.ss_family == AF_INET6) return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return 0;
}

/* systemd socket activation: LISTEN_PID names us, LISTEN_FDS sockets start at fd 3. */
static int adopt_systemd_sockets(server *s, char *err, size_t errlen) {
    const char *pid = getenv("LISTEN_PID"), *fds = getenv("LISTEN_FDS");
    if (!pid || !fds || strtol(pid, NULL, 10) != (long)getpid()) return 0;
    int n = (int)strtol(fds, NULL, 10);
    unsetenv("LISTEN_PID");
    unsetenv("LISTEN_FDS");
    unsetenv("LISTEN_FDNAMES");
    for (int i = 0; i < n && s->loop.nbound < 8; i++) {
        int fd = 3 + i;
        evutil_make_socket_nonblocking(fd);
        evutil_make_socket_closeonexec(fd);
        struct evhttp_bound_socket *b = evhttp_accept_socket_with_handle(s->loop.http, fd);
        if (!b) {
            errf(err, errlen, "LISTEN_FDS: cannot accept on fd %d", fd);
            return -1;
        }
        s->loop.bound[s->loop.nbound++] = b;
    }
    return n;
}

/* The listeners: systemd's sockets, else the `listen` address. */
static int listen_sockets(server *s, char *err, size_t errlen) {
    int adopted = adopt_systemd_sockets(s, err, errlen);
    if (adopted < 0) return -1;
    if (adopted == 0) {
        char host[256];
        int port;
        if (config_split_listen(s->cfg.listen, host, sizeof host, &port))
            return errf(err, errlen, "listen: '%s' is not ADDR:PORT", s->cfg.listen);
        struct evhttp_bound_socket *b = evhttp_bind_socket_with_handle(s->loop.http, host, (ev_uint16_t)port);
        if (!b) return errf(err, errlen, "cannot listen on %s: %s", s->cfg.listen, strerror(errno));
        s->loop.bound[s->loop.nbound++] = b;
    }
    s->loop.port = bound_port(s->loop.bound[0]);
    for (int i = 0; i < s->loop.nbound; i++)
        connlimit_add_listener(&s->loop.conns, evhttp_bound_socket_get_listener(s->loop.bound[i]),
                               bound_port(s->loop.bound[i]));
    if (s->cfg.port_file[0] && write_port_file(s->cfg.port_file, s->loop.port, err, errlen)) return -1;
    return adopted;
}

/* The loop's own events: the done list, the loader, drain and exit timers, signals, the
 * systemd watchdog. */
static int loop_events(server *s, char *err, size_t errlen) {
    struct event_base *base = s->loop.base;
    s->done.ev = event_new(base, -1, 0, job_done_cb, s);
    s->reload.ev = event_new(base, -1, 0, reload_done_cb, s);
    s->drain.timeout_ev = evtimer_new(base, drain_timeout_cb, s);
    s->drain.exit_ev = evtimer_new(base, exit_cb, s);
    static const int sigs[4] = {SIGTERM, SIGINT, SIGHUP, 0};
    for (int i = 0; sigs[i]; i++) {
        s->loop.sig_ev[i] = evsignal_new(base, sigs[i], signal_cb, s);
        if (!s->loop.sig_ev[i] || event_add(s->loop.sig_ev[i], NULL))
            return errf(err, errlen, "libevent: cannot install signal handlers");
    }
    if (!s->done.ev || !s->reload.ev || !s->drain.timeout_ev || !s->drain.exit_ev)
        return errf(err, errlen, "libevent: out of memory");
    uint64_t wd = sd_watchdog_usec();
    if (wd) {
        s->loop.watchdog_ev = event_new(base, -1, EV_PERSIST, watchdog_cb, s);
        struct timeval tv = {(time_t)(wd / 2 / 1000000), (suseconds_t)(wd / 2 % 1000000)};
        if (!s->loop.watchdog_ev || event_add(s->loop.watchdog_ev, &tv))
            return errf(err, errlen, "libevent: cannot start the watchdog timer");
    }
    return 0;
}

int server_start(server *s, char *err, size_t errlen) {
    if (evthread_use_pthreads() != 0) return errf(err, errlen, "libevent: no pthreads support");
    pthread_mutex_init(&s->models.mu, NULL);
    pthread_mutex_init(&s->done.mu, NULL);
    pthread_mutex_init(&s->work.inbox_mu, NULL);
    atomic_init(&s->work.busy, 0);
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    int nw = s->work.nworkers = s->cfg.workers > 0 ? s->cfg.workers : (cores > 0 ? (int)cores : 1);
    s->work.threads = s->cfg.threads_per_worker;
    s->work.queue_cap = s->cfg.queue_size > 0 ? s->cfg.queue_size : (2 * nw > 8 ? 2 * nw : 8);
    if (queue_init(&s->work.queue, s->work.queue_cap)) return errf(err, errlen, "out of memory (queue)");
    if (!(s->loop.base = event_base_new()) || !(s->loop.http = evhttp_new(s->loop.base)))
        return errf(err, errlen, "libevent: cannot create the event base");
    evhttp_set_allowed_methods(s->loop.http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
                                                 EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE | EVHTTP_REQ_OPTIONS |
                                                 EVHTTP_REQ_PATCH | EVHTTP_REQ_TRACE | EVHTTP_REQ_CONNECT);
    evhttp_set_gencb(s->loop.http, route, s);
    if (connlimit_init(&s->loop.conns, s->loop.base, s->cfg.max_connections))
        return errf(err, errlen, "libevent: out of memory");
    evhttp_set_bevcb(s->loop.http, connlimit_bevcb, &s->loop.conns);
    int adopted = listen_sockets(s, err, errlen);
    if (adopted < 0) return -1;
    server_apply_config(s); /* the limits, and the instance name (it may name the port) */
    if (loop_events(s, err, errlen) || workers_start(s, err, errlen)) return -1;
    log_info(&s->log, "listening on port %d (%s), %d workers x %d threads, queue %d", s->loop.port,
             adopted ? "systemd socket" : s->cfg.listen, nw, s->cfg.threads_per_worker, s->work.queue_cap);
    s->reload.initial = 1;
    sd_notify_send("STATUS=loading models");
    reload_start(s);
    return 0;
}

int server_run(server *s) {
    event_base_dispatch(s->loop.base);
    return s->loop.exit_code;
}

void server_free(server *s) {
    reload_join(s);
    workers_join(s);
    /* Every unfinished job is on the done list now (the workers drained the queue). */
    job_free_unfinished(s);
    for (int i = 0; i < 4; i++)
        if (s->loop.sig_ev[i]) event_free(s->loop.sig_ev[i]);
    if (s->loop.watchdog_ev) event_free(s->loop.watchdog_ev);
    if (s->done.ev) event_free(s->done.ev);
    if (s->reload.ev) event_free(s->reload.ev);
    if (s->drain.timeout_ev) event_free(s->drain.timeout_ev);
    if (s->drain.exit_ev) event_free(s->drain.exit_ev);
    connlimit_free(&s->loop.conns);
    if (s->loop.http) evhttp_free(s->loop.http);
    if (s->loop.base) event_base_free(s->loop.base);
    queue_destroy(&s->work.queue);
    model_set_unref(s->models.set);
    s->models.set = NULL;
    pthread_mutex_destroy(&s->models.mu);
    pthread_mutex_destroy(&s->done.mu);
    pthread_mutex_destroy(&s->work.inbox_mu);
}
