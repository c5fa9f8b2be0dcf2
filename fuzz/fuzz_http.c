/* libFuzzer target: effdetd's HTTP request handling, whole: evhttp's parser, the
 * connection tracker (header/body scanner, budget), routing, framing checks, auth,
 * parameters, multipart, JPEG probe, the queue and a worker (the tiny test model).
 * One real server on 127.0.0.1, started once; each input is sent on a fresh loopback
 * connection, the write side shut, and the loop run until the server closes it. */
#include <errno.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "server.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static server srv;

static double mono(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void pump(void) {
    struct timeval tv = {0, 1000};
    event_base_loopexit(srv.loop.base, &tv);
    event_base_dispatch(srv.loop.base);
}

static int start(void) {
    /* clang-format off */
    static char *ov[] = {"model", "tests/fixtures/weights.safetensors", "listen", "127.0.0.1:0",
                         "workers", "1", "warmup", "no", "access_log", "no", "log_level", "error",
                         "timeout_s", "2", "header_timeout_s", "1", "max_body_bytes", "256k",
                         "body_budget_bytes", "1m", "api_key", "k", "max_connections", "64"};
    /* clang-format on */
    char err[512];
    srv.overrides = ov; /* the model load (a reload) builds the configuration again */
    srv.noverrides = (int)(sizeof ov / sizeof *ov / 2);
    if (config_build(&srv.cfg, NULL, (const char *const *)ov, (int)(sizeof ov / sizeof *ov / 2), err,
                     sizeof err) ||
        server_start(&srv, err, sizeof err)) {
        fprintf(stderr, "fuzz_http: %s (run from the repository root)\n", err);
        abort();
    }
    double t0 = mono();
    while (!srv.models.ready && mono() - t0 < 30) pump();
    if (!srv.models.ready) abort();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static int started;
    if (!started) {
        started = 1;
        signal(SIGPIPE, SIG_IGN);
        start();
    }
    int c = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)srv.loop.port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (c < 0) return 0;
    if (connect(c, (struct sockaddr *)&a, sizeof a) != 0 && errno != EINPROGRESS) {
        close(c);
        return 0;
    }
    size_t sent = 0;
    int shut = 0;
    char buf[65536];
    double t0 = mono();
    /* Up to 3 s: write what the socket takes, read replies, until the server closes. */
    while (mono() - t0 < 3) {
        if (sent < size) {
            ssize_t n = send(c, data + sent, size - sent, MSG_NOSIGNAL);
            if (n > 0) sent += (size_t)n;
        } else if (!shut) {
            shutdown(c, SHUT_WR);
            shut = 1;
        }
        pump();
        ssize_t n = recv(c, buf, sizeof buf, 0);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) break;
    }
    close(c);
    while (srv.drain.outstanding > 0 && mono() - t0 < 6) pump(); /* its job, if any, finished */
    return 0;
}
