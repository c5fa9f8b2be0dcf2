/* The event loop: HTTP intake, routing, validation, queueing, replies, signals, reload,
 * sd_notify and the watchdog. Everything here runs on the loop thread, except
 * reload_main (its own thread, touching only the reload_* fields until it signals). */
#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/thread.h>
#include <math.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "multipart.h"
#include "samples.h"
#include "sbuf.h"
#include "sdnotify.h"
#include "server.h"
#include "web.h"

#define RETRY_AFTER_S "1"

/* ------------------------------------------------------------------ replies */

static const char *reason_phrase(int status) {
    switch (status) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 413: return "Payload Too Large";
    case 415: return "Unsupported Media Type";
    case 501: return "Not Implemented";
    case 422: return "Unprocessable Entity";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return "Status";
    }
}

/* Per-request bookkeeping for the access log and metrics. */
typedef struct {
    endpoint_id ep;
    double t0;
    const char *model;
    int detections;
    int close; /* close the connection after this reply */
} req_info;

/* Control bytes, spaces, quotes, backslashes and non-ASCII of a client's URI as \xNN:
 * one request is one log line whatever it sends, and a terminal shows it as is. */
static void log_escape(const char *in, char *out, size_t cap) {
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    for (const unsigned char *p = (const unsigned char *)in; *p && o + 5 < cap; p++) {
        if (*p <= 0x20 || *p >= 0x7f || *p == '"' || *p == '\\') {
            out[o++] = '\\', out[o++] = 'x', out[o++] = hex[*p >> 4], out[o++] = hex[*p & 15];
        } else
            out[o++] = (char)*p;
    }
    out[o] = '\0';
}

static void access_log(server *s, const char *method, const char *path, int status, size_t bytes, double ms,
                       const char *model, int detections, const char *rid) {
    if (!s->cfg.access_log) return;
    char safe[4 * 128 + 8];
    log_escape(path, safe, sizeof safe);
    log_info(&s->log, "%s %s %d %zu %.1fms model=%s detections=%d rid=%s", method, safe, status, bytes, ms,
             model && *model ? model : "-", detections, rid && *rid ? rid : "-");
}

/* X-Request-Id (set by nginx's $request_id, or by the client) into out; "" when absent or
 * not 1..128 characters of [A-Za-z0-9._:/+=@-]: it goes into the log and a reply header,
 * so nothing that could forge a log line or a header passes. */
static void request_id(struct evhttp_request *req, char *out, size_t cap) {
    const char *v = evhttp_find_header(evhttp_request_get_input_headers(req), "X-Request-Id");
    size_t n = v ? strlen(v) : 0;
    out[0] = '\0';
    if (n == 0 || n > 128 || n >= cap) return;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)v[i];
        if (!((c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
              strchr("._:/+=@-", c)))
            return;
    }
    memcpy(out, v, n + 1);
}

static const char *method_name(struct evhttp_request *req) {
    switch (evhttp_request_get_command(req)) {
    case EVHTTP_REQ_GET: return "GET";
    case EVHTTP_REQ_POST: return "POST";
    case EVHTTP_REQ_HEAD: return "HEAD";
    case EVHTTP_REQ_PUT: return "PUT";
    case EVHTTP_REQ_DELETE: return "DELETE";
    case EVHTTP_REQ_OPTIONS: return "OPTIONS";
    case EVHTTP_REQ_PATCH: return "PATCH";
    case EVHTTP_REQ_TRACE: return "TRACE";
    case EVHTTP_REQ_CONNECT: return "CONNECT";
    default: return "OTHER";
    }
}

static void request_path(struct evhttp_request *req, char *out, size_t cap) {
    const char *uri = evhttp_request_get_uri(req);
    size_t n = uri ? strcspn(uri, "?") : 0;
    if (n >= cap) n = cap - 1;
    memcpy(out, uri ? uri : "", n);
    out[n] = '\0';
}

/* The page may run its own inline script and style and talk to this origin only; API
 * replies may run nothing. Neither may be framed (clickjacking) or MIME-sniffed. */
#define CSP_PAGE                                                                                             \
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src 'self' data: "       \
    "blob:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
#define CSP_API "default-src 'none'; frame-ancestors 'none'"

static void security_headers(struct evkeyvalq *h, const char *type) {
    int page = type && strncmp(type, "text/html", 9) == 0;
    evhttp_add_header(h, "X-Content-Type-Options", "nosniff");
    evhttp_add_header(h, "X-Frame-Options", "DENY");
    evhttp_add_header(h, "Content-Security-Policy", page ? CSP_PAGE : CSP_API);
    evhttp_add_header(h, "Cache-Control", "no-store");
}

/* Once a reply that must end its connection is written. libevent 2.1 ignores
 * "Connection: close" after some requests (CONNECT): shut the socket down, and its
 * read callback sees EOF and frees the connection. */
static void close_after_reply(struct evhttp_request *req, void *arg) {
    struct evhttp_connection *evcon = evhttp_request_get_connection(req);
    struct bufferevent *bev = evcon ? evhttp_connection_get_bufferevent(evcon) : NULL;
    evutil_socket_t fd = bev ? bufferevent_getfd(bev) : -1;
    if (fd >= 0) shutdown(fd, SHUT_RDWR);
}

/* Send a reply and account for it. `body` may be NULL. A HEAD request gets the headers
 * of the GET, Content-Length included, and no body: libevent 2.1 would write the body
 * and leave the length out, and a keep-alive client would misread the next reply. */
static void send_reply(server *s, struct evhttp_request *req, const req_info *ri, int status,
                       const char *type, const char *body, size_t len) {
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    if (type) evhttp_add_header(h, "Content-Type", type);
    security_headers(h, type);
    if (status == 503) evhttp_add_header(h, "Retry-After", RETRY_AFTER_S);
    if (s->draining || ri->close) {
        evhttp_add_header(h, "Connection", "close");
        /* libevent looks at the request's own Connection header to close after a
         * CONNECT, not at the reply's. */
        evhttp_add_header(evhttp_request_get_input_headers(req), "Connection", "close");
    }
    if (ri->close) evhttp_request_set_on_complete_cb(req, close_after_reply, NULL);
    /* Always our own length: libevent leaves it out for HEAD and CONNECT. */
    int head = evhttp_request_get_command(req) == EVHTTP_REQ_HEAD;
    char n[32];
    snprintf(n, sizeof n, "%zu", body ? len : 0);
    evhttp_remove_header(h, "Content-Length");
    evhttp_add_header(h, "Content-Length", n);
    struct evhttp_connection *evcon = evhttp_request_get_connection(req);
    if (evcon) connlimit_idle(&s->conns, evcon);
    char rid[129];
    request_id(req, rid, sizeof rid);
    if (rid[0]) evhttp_add_header(h, "X-Request-Id", rid);
    struct evbuffer *out = evbuffer_new();
    if (out && body && !head) evbuffer_add(out, body, len);
    char path[128];
    request_path(req, path, sizeof path);
    const char *method = method_name(req);
    evhttp_send_reply(req, status, reason_phrase(status), out);
    if (out) evbuffer_free(out);
    metrics_request(&s->met, ri->ep, status);
    access_log(s, method, path, status, len, now_ms() - ri->t0, ri->model, ri->detections, rid);
}

static void send_sbuf(server *s, struct evhttp_request *req, const req_info *ri, int status, const char *type,
                      sbuf *b) {
    if (b->oom)
        send_reply(s, req, ri, 503, "application/json", "{\"error\":{\"code\":\"out_of_memory\"}}", 34);
    else
        send_reply(s, req, ri, status, type, b->data, b->len);
    sb_free(b);
}

static void send_error(server *s, struct evhttp_request *req, const req_info *ri, job_kind kind, int status,
                       const char *code, const char *message) {
    sbuf b;
    sb_init(&b);
    json_error_body(&b, kind, status, code, message);
    send_sbuf(s, req, ri, status, "application/json", &b);
}

/* ------------------------------------------------------------------ helpers */

static int is_get(struct evhttp_request *req) {
    enum evhttp_cmd_type c = evhttp_request_get_command(req);
    return c == EVHTTP_REQ_GET || c == EVHTTP_REQ_HEAD;
}

static int method_ok(server *s, struct evhttp_request *req, const req_info *ri, job_kind kind,
                     int want_post) {
    int ok = want_post ? evhttp_request_get_command(req) == EVHTTP_REQ_POST : is_get(req);
    if (ok) return 1;
    evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", want_post ? "POST" : "GET, HEAD");
    send_error(s, req, ri, kind, 405, "method_not_allowed", want_post ? "use POST" : "use GET");
    return 0;
}

/* Constant-time comparison: the key must not leak through response timing. */
static int key_equal(const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b);
    unsigned char diff = (unsigned char)(la != lb);
    for (size_t i = 0; i < la; i++) diff |= (unsigned char)(a[i] ^ b[i % (lb ? lb : 1)]);
    return diff == 0;
}

/* api_key configured: Authorization: Bearer KEY, or the api_key parameter. */
static int authorized(server *s, struct evhttp_request *req, const char *param_key) {
    if (!s->cfg.api_key[0]) return 1;
    const char *auth = evhttp_find_header(evhttp_request_get_input_headers(req), "Authorization");
    if (auth && strncasecmp(auth, "Bearer ", 7) == 0 && key_equal(auth + 7, s->cfg.api_key)) return 1;
    return param_key && param_key[0] && key_equal(param_key, s->cfg.api_key);
}

static model_set *current_set(server *s) {
    pthread_mutex_lock(&s->mu);
    model_set *set = s->set ? model_set_ref(s->set) : NULL;
    pthread_mutex_unlock(&s->mu);
    return set;
}

/* --------------------------------------------------------- detection intake */

static int content_type_is(const char *ct, const char *type) {
    size_t n = strlen(type);
    return strncasecmp(ct, type, n) == 0 && (ct[n] == '\0' || ct[n] == ';' || ct[n] == ' ');
}

typedef struct {
    param_list params;
    const uint8_t *image;
    size_t image_len;
} intake;

/* Pull the image and form fields out of the body: raw image/jpeg or octet-stream, or
 * multipart/form-data with one `image` part. Query parameters come first. Returns 0, or
 * an HTTP status with code/message filled. */
static int read_body(server *s, struct evhttp_request *req, job *j, intake *in, const char **code, char *msg,
                     size_t msglen) {
    params_init(&in->params);
    const char *q = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req));
    if (q && params_parse_urlencoded(&in->params, q, strlen(q), msg, msglen))
        return *code = "invalid_parameter", 400;
    j->body = evbuffer_new();
    if (!j->body) return *code = "out_of_memory", snprintf(msg, msglen, "out of memory"), 503;
    /* Move (not copy) the body out of the request: the request may be freed by libevent
     * when the client goes away, while a worker still reads the image. */
    evbuffer_add_buffer(j->body, evhttp_request_get_input_buffer(req));
    size_t len = evbuffer_get_length(j->body);
    if (len == 0)
        return *code = "no_image", snprintf(msg, msglen, "no image: the request body is empty"), 400;
    const uint8_t *body = evbuffer_pullup(j->body, -1);
    if (!body) return *code = "out_of_memory", snprintf(msg, msglen, "out of memory"), 503;
    const char *ct = evhttp_find_header(evhttp_request_get_input_headers(req), "Content-Type");
    if (!ct || content_type_is(ct, "image/jpeg") || content_type_is(ct, "image/jpg") ||
        content_type_is(ct, "image/pjpeg") || content_type_is(ct, "application/octet-stream")) {
        in->image = body;
        in->image_len = len;
        return 0;
    }
    if (!content_type_is(ct, "multipart/form-data")) {
        snprintf(msg, msglen,
                 "Content-Type %.80s is not supported: send image/jpeg, application/octet-stream or "
                 "multipart/form-data with an `image` field",
                 ct);
        return *code = "unsupported_media_type", 415;
    }
    char boundary[MP_MAX_BOUNDARY + 1];
    if (multipart_boundary(ct, boundary, sizeof boundary, msg, msglen)) return *code = "bad_multipart", 400;
    int max_parts = s->cfg.max_parts, n = 0;
    mp_part *parts = calloc((size_t)max_parts, sizeof *parts);
    if (!parts) return *code = "out_of_memory", snprintf(msg, msglen, "out of memory"), 503;
    int status = 0;
    if (multipart_parse(body, len, boundary, parts, max_parts, &n, msg, msglen)) {
        status = 400, *code = "bad_multipart";
        goto done;
    }
    for (int i = 0; i < n; i++) {
        if (strcmp(parts[i].name, "image") == 0) {
            if (in->image) {
                snprintf(msg, msglen, "multipart: more than one `image` field");
                status = 400, *code = "bad_multipart";
                goto done;
            }
            in->image = parts[i].data;
            in->image_len = parts[i].len;
        } else if (!parts[i].has_filename) {
            /* A form field: bounded like a query parameter. */
            if (parts[i].len > 4096 || params_add(&in->params, parts[i].name, strlen(parts[i].name),
                                                  (const char *)parts[i].data, parts[i].len)) {
                snprintf(msg, msglen, "multipart: form field '%.64s' too long, binary or too many fields",
                         parts[i].name);
                status = 400, *code = "invalid_parameter";
                goto done;
            }
        }
    }
    if (!in->image || in->image_len == 0) {
        snprintf(msg, msglen, "no image: multipart/form-data needs a non-empty `image` field");
        status = 400, *code = "no_image";
    }
done:
    free(parts);
    return status;
}

static const char *label_cb(const void *arg, int cls) {
    return effdet_model_label(arg, cls);
}

static void deadline_cb(evutil_socket_t fd, short what, void *arg);
static void close_cb(void *arg);
static void close_cb_untracked(struct evhttp_connection *evcon, void *arg);
static void watch_cb(evutil_socket_t fd, short what, void *arg);

/* libevent 2.1 stops reading a connection once its request is complete, so it does not
 * notice a client that hangs up while its job waits. Watch the socket ourselves: EOF
 * or an error while the job is pending means nobody will read the reply. */
static void watch_client(server *s, job *j, struct evhttp_request *req) {
    struct evhttp_connection *evcon = evhttp_request_get_connection(req);
    struct bufferevent *bev = evcon ? evhttp_connection_get_bufferevent(evcon) : NULL;
    evutil_socket_t fd = bev ? bufferevent_getfd(bev) : -1;
    if (fd < 0) return;
    j->watch_ev = event_new(s->base, fd, EV_READ, watch_cb, j);
    if (j->watch_ev) event_add(j->watch_ev, NULL);
}

/* POST /detect, /v1/vision/detection, /v1/vision/custom/<model>. */
static void handle_detection(server *s, struct evhttp_request *req, req_info *ri, job_kind kind,
                             const char *model_name) {
    char msg[600] = "";
    const char *code = "bad_request";
    int status;
    if (!method_ok(s, req, ri, kind, 1)) return;
    if (s->draining) {
        send_error(s, req, ri, kind, 503, "shutting_down", "the server is shutting down");
        return;
    }
    job *j = calloc(1, sizeof *j);
    if (!j) {
        send_error(s, req, ri, kind, 503, "out_of_memory", "out of memory");
        return;
    }
    j->srv = s;
    j->kind = kind;
    j->endpoint = ri->ep;
    j->t_arrive_ms = ri->t0;
    atomic_init(&j->cancelled, 0);
    request_path(req, j->path, sizeof j->path);
    intake in = {0};
    status = read_body(s, req, j, &in, &code, msg, sizeof msg);
    /* The API key first: a client without it learns nothing about its request. The key
     * may be a query parameter or a form field, so the body is parsed before. */
    if (!authorized(s, req, params_get(&in.params, "api_key", NULL))) {
        status = 401, code = "unauthorized";
        snprintf(msg, sizeof msg, "missing or wrong API key");
        goto fail;
    }
    if (status) goto fail;

    char api_key[256] = "";
    if (kind == JOB_COMPAT) {
        if (compat_params_parse(&in.params, s->cfg.compat_min_confidence, &j->min_confidence, api_key,
                                sizeof api_key, msg, sizeof msg)) {
            status = 400, code = "invalid_parameter";
            goto fail;
        }
    } else {
        detect_params d = {0};
        d.threshold = s->cfg.threshold;
        d.max_detections = s->cfg.max_detections;
        if (detect_params_parse(&in.params, &d, &j->dp, msg, sizeof msg)) {
            status = 400, code = "invalid_parameter";
            goto fail;
        }
        snprintf(api_key, sizeof api_key, "%s", j->dp.api_key);
        model_name = j->dp.model;
        /* Content negotiation: a client that asks for a JPEG gets the annotated image. */
        const char *accept = evhttp_find_header(evhttp_request_get_input_headers(req), "Accept");
        if (!params_get(&in.params, "render", NULL) && accept && content_type_is(accept, "image/jpeg"))
            j->dp.render = RENDER_JPEG;
    }
    if (!(j->set = current_set(s))) {
        status = 503, code = "not_ready";
        snprintf(msg, sizeof msg, "models are still loading");
        goto fail;
    }
    if (!(j->model = model_set_find(j->set, model_name))) {
        status = 404, code = "model_not_found";
        snprintf(msg, sizeof msg, "model '%.128s' is not loaded (GET /v1/models lists them)", model_name);
        goto fail;
    }
    ri->model = j->model->name;
    int w = 0, h = 0;
    effdet_error e = {{0}};
    effdet_status st = effdet_image_probe_jpeg(in.image, in.image_len, &w, &h, &e);
    if (st != EFFDET_OK) {
        status = 400, code = "invalid_image";
        snprintf(msg, sizeof msg, "invalid image: %s", e.msg[0] ? e.msg : effdet_status_name(st));
        goto fail;
    }
    if ((long long)w * h > s->cfg.max_pixels) {
        status = 413, code = "image_too_large";
        snprintf(msg, sizeof msg, "image is %dx%d = %lld pixels; the limit is %lld (max_pixels)", w, h,
                 (long long)w * h, s->cfg.max_pixels);
        goto fail;
    }
    if (kind == JOB_DETECT && j->dp.classes[0]) {
        int nc = j->model->info->num_classes;
        if (!(j->class_mask = malloc((size_t)nc))) {
            status = 503, code = "out_of_memory";
            snprintf(msg, sizeof msg, "out of memory");
            goto fail;
        }
        if (classes_to_mask(j->dp.classes, nc, label_cb, j->model->model, j->class_mask, msg, sizeof msg)) {
            status = 400, code = "invalid_parameter";
            goto fail;
        }
    }
    j->image = in.image;
    j->image_len = in.image_len;
    j->compat_max = s->cfg.compat_max_predictions;
    j->render_quality = s->cfg.render_quality;
    j->max_pixels = s->cfg.max_pixels;
    j->allow_dct = s->cfg.allow_dct_scaling;
    j->deadline_ms = j->t_arrive_ms + s->cfg.deadline_ms;
    j->req = req;
    j->deadline_ev = evtimer_new(s->base, deadline_cb, j);
    if (!j->deadline_ev) {
        status = 503, code = "out_of_memory";
        snprintf(msg, sizeof msg, "out of memory");
        goto fail;
    }
    if (queue_push(&s->queue, j) != 0) {
        s->met.rejected_busy++;
        status = 503, code = "busy";
        snprintf(msg, sizeof msg, "all %d workers are busy and the queue (%d) is full; retry", s->nworkers,
                 s->queue_cap);
        goto fail;
    }
    s->outstanding++;
    struct timeval tv = {s->cfg.deadline_ms / 1000, (s->cfg.deadline_ms % 1000) * 1000};
    evtimer_add(j->deadline_ev, &tv);
    struct evhttp_connection *evcon = evhttp_request_get_connection(req);
    if (evcon && connlimit_on_close(&s->conns, evcon, close_cb, j) != 0)
        evhttp_connection_set_closecb(evcon, close_cb_untracked, j);
    watch_client(s, j, req);
    return;
fail:
    job_free(j);
    send_error(s, req, ri, kind, status, code, msg);
}

/* The loop's end of a job: reply (unless the client left), account, free. */
static void check_drain(server *s);

static void complete_job(server *s, job *j) {
    req_info ri = {j->endpoint, j->t_arrive_ms, j->model ? j->model->name : NULL, j->detections, 0};
    s->outstanding--;
    if (j->status && j->t_start_ms > 0) {
        hist_observe(&s->met.queue_wait, (j->t_start_ms - j->t_arrive_ms) / 1e3);
        if (j->status == 200)
            hist_observe(&s->met.inference, (j->decode_ms + j->infer_ms + j->post_ms) / 1e3);
    }
    if (j->status == 504) s->met.deadline_expired++;
    if (j->watch_ev) event_del(j->watch_ev);
    if (j->req) {
        struct evhttp_connection *evcon = evhttp_request_get_connection(j->req);
        if (evcon && connlimit_on_close(&s->conns, evcon, NULL, NULL) != 0)
            evhttp_connection_set_closecb(evcon, NULL, NULL);
        if (j->client_gone || !j->status) {
            if (evcon) connlimit_idle(&s->conns, evcon);
            /* Nobody reads this reply: evhttp frees a request already detached from
             * its connection without writing, or writes into the dead socket, fails
             * and frees the connection with the request. */
            char rid[129];
            request_id(j->req, rid, sizeof rid);
            evhttp_send_reply(j->req, 499, "Client Closed Request", NULL);
            s->met.client_gone++;
            metrics_request(&s->met, j->endpoint, 499);
            access_log(s, "POST", j->path, 499, 0, now_ms() - j->t_arrive_ms, ri.model, 0, rid);
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
    check_drain(s);
}

static void done_cb(evutil_socket_t fd, short what, void *arg) {
    server *s = arg;
    pthread_mutex_lock(&s->mu);
    job *j = s->done_head;
    s->done_head = s->done_tail = NULL;
    pthread_mutex_unlock(&s->mu);
    while (j) {
        job *next = j->next;
        complete_job(s, j);
        j = next;
    }
}

static void deadline_cb(evutil_socket_t fd, short what, void *arg) {
    job *j = arg;
    server *s = j->srv;
    if (!queue_remove(&s->queue, j)) return; /* a worker has it: it will finish */
    j->status = 504;
    j->t_start_ms = now_ms();
    sbuf b;
    sb_init(&b);
    json_error_body(&b, j->kind, 504, "deadline_exceeded",
                    "the request waited in the queue past its deadline");
    j->resp = b.data;
    j->resp_len = b.len;
    j->content_type = "application/json";
    complete_job(s, j);
}

static void watch_cb(evutil_socket_t fd, short what, void *arg) {
    job *j = arg;
    server *s = j->srv;
    char c;
    ssize_t n = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n > 0) return; /* the client pipelined its next request: it is still there */
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
        event_add(j->watch_ev, NULL);
        return;
    }
    atomic_store(&j->cancelled, 1);
    j->client_gone = 1;
    if (queue_remove(&s->queue, j)) complete_job(s, j);
}

/* The client's connection closed while its job was pending (connlimit's hook). */
static void close_cb(void *arg) {
    job *j = arg;
    server *s = j->srv;
    atomic_store(&j->cancelled, 1);
    j->client_gone = 1;
    if (j->watch_ev) event_del(j->watch_ev); /* the fd is about to be closed */
    /* A request still attached to the connection is freed by libevent right after this
     * callback: forget it. A detached one (EOF while we held it) is ours to release. */
    if (j->req && evhttp_request_get_connection(j->req) != NULL) j->req = NULL;
    if (queue_remove(&s->queue, j)) complete_job(s, j);
}

static void close_cb_untracked(struct evhttp_connection *evcon, void *arg) {
    close_cb(arg);
}

/* ------------------------------------------------------------- other routes */

/* The api_key query parameter of a GET (docs/api.md: every route that needs the key
 * takes it as Authorization: Bearer or ?api_key=). */
static int authorized_get(server *s, struct evhttp_request *req) {
    if (!s->cfg.api_key[0]) return 1;
    const char *q = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req));
    param_list p;
    params_init(&p);
    char err[128];
    const char *key = NULL;
    if (q && params_parse_urlencoded(&p, q, strlen(q), err, sizeof err) == 0)
        key = params_get(&p, "api_key", NULL);
    return authorized(s, req, key);
}

static void handle_models(server *s, struct evhttp_request *req, req_info *ri) {
    if (!method_ok(s, req, ri, JOB_DETECT, 0)) return;
    if (!authorized_get(s, req)) {
        send_error(s, req, ri, JOB_DETECT, 401, "unauthorized", "missing or wrong API key");
        return;
    }
    model_set *set = current_set(s);
    sbuf b;
    sb_init(&b);
    sb_puts(&b, "{\"instance\":");
    sb_json_str(&b, s->instance);
    sb_puts(&b, ",\"default\":");
    if (set)
        sb_json_str(&b, set->models[set->default_index]->name);
    else
        sb_puts(&b, "null");
    sb_puts(&b, ",\"models\":[");
    for (int i = 0; set && i < set->count; i++) {
        const model_entry *m = set->models[i];
        const effdet_info *inf = m->info;
        sb_puts(&b, i ? ",{\"name\":" : "{\"name\":");
        sb_json_str(&b, m->name);
        sb_puts(&b, ",\"architecture\":");
        sb_json_str(&b, inf->name);
        sb_puts(&b, ",\"backbone\":");
        sb_json_str(&b, inf->backbone);
        sb_printf(&b,
                  ",\"input\":{\"width\":%d,\"height\":%d},\"num_classes\":%d,\"params\":%lld,\"classes\":[",
                  inf->input_w, inf->input_h, inf->num_classes, inf->params);
        for (int c = 0; c < inf->num_classes; c++) {
            char lb[32];
            const char *l = effdet_model_label(m->model, c);
            if (!l) snprintf(lb, sizeof lb, "class_%d", c + 1), l = lb;
            if (c) sb_puts(&b, ",");
            sb_json_str(&b, l);
        }
        sb_printf(&b, "],\"default\":%s}", i == set->default_index ? "true" : "false");
    }
    sb_puts(&b, "]}");
    model_set_unref(set);
    send_sbuf(s, req, ri, 200, "application/json", &b);
}

/* DeepStack/CodeProject.AI: Blue Iris asks for the custom models it can use. */
static void handle_custom_list(server *s, struct evhttp_request *req, req_info *ri) {
    if (evhttp_request_get_command(req) != EVHTTP_REQ_POST && !is_get(req)) {
        method_ok(s, req, ri, JOB_COMPAT, 1);
        return;
    }
    if (!authorized_get(s, req)) {
        send_error(s, req, ri, JOB_COMPAT, 401, "unauthorized", "missing or wrong API key");
        return;
    }
    model_set *set = current_set(s);
    sbuf b;
    sb_init(&b);
    sb_puts(&b, "{\"success\":true,\"models\":[");
    for (int i = 0; set && i < set->count; i++) {
        if (i) sb_puts(&b, ",");
        sb_json_str(&b, set->models[i]->name);
    }
    sb_printf(&b, "],\"count\":%d,\"moduleId\":\"effdetd\",\"command\":\"list\",\"code\":200}",
              set ? set->count : 0);
    model_set_unref(set);
    send_sbuf(s, req, ri, 200, "application/json", &b);
}

static void handle_update(server *s, struct evhttp_request *req, req_info *ri) {
    if (!method_ok(s, req, ri, JOB_COMPAT, 0)) return;
    static const char body[] = "{\"success\":true,\"message\":\"effdetd " EFFDET_VERSION " is current\","
                               "\"version\":\"" EFFDET_VERSION "\",\"current\":\"" EFFDET_VERSION "\","
                               "\"latest\":\"" EFFDET_VERSION "\",\"updateAvailable\":false}";
    send_reply(s, req, ri, 200, "application/json", body, sizeof body - 1);
}

static void handle_healthz(server *s, struct evhttp_request *req, req_info *ri) {
    if (!method_ok(s, req, ri, JOB_DETECT, 0)) return;
    static const char body[] = "{\"status\":\"ok\"}";
    send_reply(s, req, ri, 200, "application/json", body, sizeof body - 1);
}

static void handle_readyz(server *s, struct evhttp_request *req, req_info *ri) {
    if (!method_ok(s, req, ri, JOB_DETECT, 0)) return;
    if (!s->ready || s->draining) {
        send_error(s, req, ri, JOB_DETECT, 503, s->draining ? "shutting_down" : "not_ready",
                   s->draining ? "the server is shutting down" : "models are still loading");
        return;
    }
    model_set *set = current_set(s);
    sbuf b;
    sb_init(&b);
    sb_printf(&b, "{\"status\":\"ready\",\"models\":%d}", set ? set->count : 0);
    model_set_unref(set);
    send_sbuf(s, req, ri, 200, "application/json", &b);
}

static void handle_metrics(server *s, struct evhttp_request *req, req_info *ri) {
    if (!method_ok(s, req, ri, JOB_DETECT, 0)) return;
    sbuf b;
    sb_init(&b);
    metrics_write(&s->met, &b);
    sb_printf(&b,
              "# HELP effdetd_queue_depth Jobs waiting for a worker.\n# TYPE effdetd_queue_depth gauge\n"
              "effdetd_queue_depth %d\n"
              "# HELP effdetd_queue_capacity Queue size.\n# TYPE effdetd_queue_capacity gauge\n"
              "effdetd_queue_capacity %d\n"
              "# HELP effdetd_workers Worker threads.\n# TYPE effdetd_workers gauge\neffdetd_workers %d\n"
              "# HELP effdetd_workers_busy Workers running a job.\n# TYPE effdetd_workers_busy gauge\n"
              "effdetd_workers_busy %d\n"
              "# HELP effdetd_ready 1 once models are loaded and warmed up.\n# TYPE effdetd_ready gauge\n"
              "effdetd_ready %d\n"
              "# HELP effdetd_build_info Version.\n# TYPE effdetd_build_info gauge\n"
              "effdetd_build_info{version=\"%s\"} 1\n",
              queue_depth(&s->queue), s->queue_cap, s->nworkers, atomic_load(&s->busy),
              s->ready && !s->draining, EFFDET_VERSION);
    const connlimit *cl = &s->conns;
    sb_printf(
        &b,
        "# HELP effdetd_connections_dropped_total Connections closed by effdetd: request line + headers "
        "too slow (header_timeout_s), body too slow (min_body_rate), or to make room at max_connections."
        "\n# TYPE effdetd_connections_dropped_total counter\n"
        "effdetd_connections_dropped_total{reason=\"header_timeout\"} %lld\n"
        "effdetd_connections_dropped_total{reason=\"body_rate\"} %lld\n"
        "effdetd_connections_dropped_total{reason=\"cap\"} %lld\n"
        "# HELP effdetd_connection_cap_pauses_total Times every connection was busy at max_connections "
        "and new clients waited in the backlog.\n# TYPE effdetd_connection_cap_pauses_total counter\n"
        "effdetd_connection_cap_pauses_total %lld\n"
        "# HELP effdetd_body_budget_rejected_total Requests answered 503 because body_budget_bytes was "
        "spent.\n# TYPE effdetd_body_budget_rejected_total counter\neffdetd_body_budget_rejected_total %lld\n"
        "# HELP effdetd_body_bytes_held Request-body bytes reserved now (of body_budget_bytes).\n"
        "# TYPE effdetd_body_bytes_held gauge\neffdetd_body_bytes_held %lld\n",
        cl->dropped_header, cl->dropped_body, cl->dropped_cap, cl->pauses, cl->rejected_budget,
        cl->budget_used);
    model_set *set = current_set(s);
    sb_puts(&b, "# HELP effdetd_model_info Loaded models.\n# TYPE effdetd_model_info gauge\n");
    for (int i = 0; set && i < set->count; i++) {
        const effdet_info *inf = set->models[i]->info;
        sb_puts(&b, "effdetd_model_info{name=");
        sb_json_str(&b, set->models[i]->name); /* JSON escaping is valid label escaping */
        sb_puts(&b, ",architecture=");
        sb_json_str(&b, inf->name);
        sb_printf(&b, ",input=\"%dx%d\",classes=\"%d\",params=\"%lld\",default=\"%s\"} 1\n", inf->input_w,
                  inf->input_h, inf->num_classes, inf->params, i == set->default_index ? "true" : "false");
    }
    model_set_unref(set);
    sbuf labelled;
    sb_init(&labelled);
    metrics_add_label(b.data, b.oom ? 0 : b.len, "instance", s->instance, &labelled);
    labelled.oom |= b.oom;
    sb_free(&b);
    send_sbuf(s, req, ri, 200, "text/plain; version=0.0.4; charset=utf-8", &labelled);
}

static void handle_index(server *s, struct evhttp_request *req, req_info *ri) {
    if (!method_ok(s, req, ri, JOB_DETECT, 0)) return;
    size_t len = 0;
    const unsigned char *page = web_index_html(&len);
    send_reply(s, req, ri, 200, "text/html; charset=utf-8", (const char *)page, len);
}

/* GET /samples (their names) and /samples/NAME (a JPEG): the demo model's sample images. */
static void handle_samples(server *s, struct evhttp_request *req, req_info *ri, const char *name) {
    if (!method_ok(s, req, ri, JOB_DETECT, 0)) return;
    web_sample w;
    sbuf b;
    if (strlen(name) == 0) {
        sb_init(&b);
        web_samples_json(&b);
        send_sbuf(s, req, ri, 200, "application/json", &b);
    } else if (web_sample_find(name, &w) == 0) {
        send_reply(s, req, ri, 200, "image/jpeg", (const char *)w.data, w.len);
    } else {
        send_error(s, req, ri, JOB_DETECT, 404, "not_found", "no such sample image (GET /samples lists them)");
    }
}

static int is_digits(const char *v) {
    if (!*v) return 0;
    for (; *v; v++)
        if (*v < '0' || *v > '9') return 0;
    return 1;
}

/* Message framing libevent 2.1 accepts but must not: it reads the body by the first
 * Content-Length and parses what follows as the next request, so a proxy that uses
 * another length (or Transfer-Encoding) would let a client smuggle a request through.
 * Refused: several Content-Length values that differ, one that is not 1*DIGIT ("+3"),
 * Content-Length with Transfer-Encoding, and any Transfer-Encoding but "chunked". */
static const char *framing_error(struct evhttp_request *req) {
    const char *cl = NULL;
    int te = 0;
    const struct evkeyval *kv;
    for (kv = evhttp_request_get_input_headers(req)->tqh_first; kv; kv = kv->next.tqe_next) {
        if (strcasecmp(kv->key, "Content-Length") == 0) {
            if (!is_digits(kv->value)) return "Content-Length is not a decimal number";
            if (cl && strcmp(cl, kv->value) != 0) return "conflicting Content-Length headers";
            cl = kv->value;
        } else if (strcasecmp(kv->key, "Transfer-Encoding") == 0) {
            if (te++ || strcasecmp(kv->value, "chunked") != 0) return "unsupported Transfer-Encoding";
        }
    }
    if (cl && te) return "Content-Length together with Transfer-Encoding";
    return NULL;
}

static void route(struct evhttp_request *req, void *arg) {
    server *s = arg;
    req_info ri = {EP_OTHER, now_ms(), NULL, 0, 0};
    char path[1024];
    request_path(req, path, sizeof path);
    enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
    struct evhttp_connection *evcon = evhttp_request_get_connection(req);
    if (evcon && connlimit_answered(&s->conns, evcon))
        return; /* answered 503 (body budget) already; freed with its connection */
    if (evcon) connlimit_busy(&s->conns, evcon);
    const char *bad = framing_error(req);
    if (bad) {
        ri.close = 1; /* what follows on this connection cannot be trusted */
        send_error(s, req, &ri, JOB_DETECT, 400, "bad_request", bad);
        return;
    }
    if (cmd == EVHTTP_REQ_CONNECT || cmd == EVHTTP_REQ_TRACE) {
        ri.close = 1;
        send_error(s, req, &ri, JOB_DETECT, 501, "not_implemented", "CONNECT and TRACE are not supported");
        return;
    }
    static const char custom[] = "/v1/vision/custom/";
    if (strcmp(path, "/detect") == 0)
        ri.ep = EP_DETECT, handle_detection(s, req, &ri, JOB_DETECT, NULL);
    else if (strcmp(path, "/v1/vision/detection") == 0)
        ri.ep = EP_VISION_DETECTION, handle_detection(s, req, &ri, JOB_COMPAT, NULL);
    else if (strcmp(path, "/v1/vision/custom/list") == 0)
        ri.ep = EP_CUSTOM_LIST, handle_custom_list(s, req, &ri);
    else if (strncmp(path, custom, sizeof custom - 1) == 0 && strlen(path) > sizeof custom - 1) {
        ri.ep = EP_VISION_CUSTOM;
        char *name = evhttp_uridecode(path + sizeof custom - 1, 0, NULL);
        if (!name || strchr(name, '/'))
            send_error(s, req, &ri, JOB_COMPAT, 404, "model_not_found", "bad model name");
        else
            handle_detection(s, req, &ri, JOB_COMPAT, name);
        free(name);
    } else if (strcmp(path, "/v1/status/updateavailable") == 0)
        ri.ep = EP_UPDATE_AVAILABLE, handle_update(s, req, &ri);
    else if (strcmp(path, "/healthz") == 0)
        ri.ep = EP_HEALTHZ, handle_healthz(s, req, &ri);
    else if (strcmp(path, "/readyz") == 0)
        ri.ep = EP_READYZ, handle_readyz(s, req, &ri);
    else if (strcmp(path, "/metrics") == 0)
        ri.ep = EP_METRICS, handle_metrics(s, req, &ri);
    else if (strcmp(path, "/v1/models") == 0)
        ri.ep = EP_MODELS, handle_models(s, req, &ri);
    else if (strcmp(path, "/") == 0 || strcmp(path, "/index.html") == 0)
        ri.ep = EP_INDEX, handle_index(s, req, &ri);
    else if (strcmp(path, "/samples") == 0)
        ri.ep = EP_INDEX, handle_samples(s, req, &ri, "");
    else if (strncmp(path, "/samples/", 9) == 0)
        ri.ep = EP_INDEX, handle_samples(s, req, &ri, path + 9);
    else {
        job_kind kind = strncmp(path, "/v1/", 4) == 0 ? JOB_COMPAT : JOB_DETECT;
        send_error(s, req, &ri, kind, 404, "not_found", "no such endpoint");
    }
}

/* ------------------------------------------------------------------ reload */

static void notify_status(server *s) {
    model_set *set = current_set(s);
    char st[512];
    snprintf(st, sizeof st, "STATUS=serving %d model(s) on port %d, %d workers, queue %d",
             set ? set->count : 0, s->port, s->nworkers, s->queue_cap);
    model_set_unref(set);
    sd_notify_send(st);
}

/* Builds the new configuration and model set off the loop thread: loading and warming
 * up a model takes long enough to stall the watchdog and every request. */
static void *reload_main(void *arg) {
    server *s = arg;
    char err[512] = "";
    s->reload_set = NULL;
    s->reload_ok = 0;
    if (config_build(&s->reload_cfg, s->config_path, (const char *const *)s->overrides, s->noverrides, err,
                     sizeof err) == 0 &&
        config_validate(&s->reload_cfg, err, sizeof err) == 0) {
        model_set *old = current_set(s);
        if (model_set_build(&s->reload_cfg, old, &s->log, &s->next_model_id, &s->reload_set, err,
                            sizeof err) == 0) {
            workers_prepare(s, s->reload_set, old, s->reload_cfg.warmup);
            s->reload_ok = 1;
        }
        model_set_unref(old);
    }
    snprintf(s->reload_err, sizeof s->reload_err, "%s", err);
    event_active(s->reload_ev, EV_READ, 0);
    return NULL;
}

static void start_reload(server *s) {
    if (s->reloading) {
        s->reload_pending = 1;
        return;
    }
    s->reloading = 1;
    if (pthread_create(&s->reload_thread, NULL, reload_main, s) != 0) {
        s->reloading = 0;
        log_error(&s->log, "reload: cannot start the loader thread");
        if (s->initial_load) {
            s->exit_code = 1;
            event_base_loopbreak(s->base);
        }
    }
}

/* The replica's name for metrics and /v1/models: the `instance` option or hostname:port. */
static void set_instance(server *s) {
    char host[256] = "localhost";
    if (s->cfg.instance[0]) {
        snprintf(s->instance, sizeof s->instance, "%s", s->cfg.instance);
        return;
    }
    if (gethostname(host, sizeof host) != 0) snprintf(host, sizeof host, "localhost");
    host[sizeof host - 1] = '\0';
    for (char *p = host; *p; p++) /* label-safe, like the option */
        if (*p <= ' ' || *p > '~' || *p == '"' || *p == '\\') *p = '_';
    snprintf(s->instance, sizeof s->instance, "%s:%d", host, s->port);
}

static void conns_apply_config(server *s) {
    s->conns.max = s->cfg.max_connections;
    s->conns.header_timeout_ms = s->cfg.header_timeout_s * 1000;
    s->conns.min_body_rate = s->cfg.min_body_rate;
    s->conns.body_budget = s->cfg.body_budget_bytes;
}

/* Options that need a restart: the listening sockets, threads and queue exist already. */
static void apply_reloaded_config(server *s, const effdetd_config *c) {
    if (strcmp(c->listen, s->cfg.listen) != 0 || c->workers != s->cfg.workers ||
        c->threads_per_worker != s->cfg.threads_per_worker || c->queue_size != s->cfg.queue_size ||
        strcmp(c->port_file, s->cfg.port_file) != 0)
        log_warn(&s->log, "reload: listen, port_file, workers, threads_per_worker and queue_size changes "
                          "take effect at the next restart");
    effdetd_config keep = s->cfg;
    s->cfg = *c;
    memcpy(s->cfg.listen, keep.listen, sizeof keep.listen);
    memcpy(s->cfg.port_file, keep.port_file, sizeof keep.port_file);
    s->cfg.workers = keep.workers;
    s->cfg.threads_per_worker = keep.threads_per_worker;
    s->cfg.queue_size = keep.queue_size;
    log_set_level(&s->log, s->cfg.log_level);
    evhttp_set_max_body_size(s->http, s->cfg.max_body_bytes);
    evhttp_set_max_headers_size(s->http, s->cfg.max_header_bytes);
    evhttp_set_timeout(s->http, s->cfg.timeout_s);
    conns_apply_config(s);
    set_instance(s);
}

static void reload_done_cb(evutil_socket_t fd, short what, void *arg) {
    server *s = arg;
    pthread_join(s->reload_thread, NULL);
    s->reloading = 0;
    int first = s->initial_load;
    s->initial_load = 0;
    if (s->reload_ok) {
        apply_reloaded_config(s, &s->reload_cfg);
        pthread_mutex_lock(&s->mu);
        model_set *old = s->set;
        s->set = s->reload_set;
        pthread_mutex_unlock(&s->mu);
        for (int i = 0; old && i < old->count; i++) {
            int kept = 0;
            for (int k = 0; k < s->set->count; k++) kept |= s->set->models[k] == old->models[i];
            if (!kept) atomic_store(&old->models[i]->retired, 1);
        }
        s->reload_set = NULL;
        model_set_unref(old);  /* jobs still running hold their own reference */
        queue_kick(&s->queue); /* idle workers free the retired models' contexts now */
        /* A reload that kept an old model because the new file is broken is a failed
         * reload: operators alert on effdetd_reloads_total{result="failed"}. */
        int failures = s->set->failures;
        if (!first && failures) {
            s->met.reloads_failed++;
            log_error(&s->log, "reload failed for %d model(s): serving the previous version of each",
                      failures);
        } else if (!first)
            s->met.reloads_ok++;
        s->ready = 1;
        log_info(&s->log, "%s: %d model(s), default %s", first ? "ready" : "reloaded", s->set->count,
                 s->set->models[s->set->default_index]->name);
    } else if (first) {
        log_error(&s->log, "cannot start: %s", s->reload_err);
        s->exit_code = 1;
        event_base_loopbreak(s->base);
        return;
    } else {
        s->met.reloads_failed++;
        log_error(&s->log, "reload failed, still serving the previous configuration and models: %s",
                  s->reload_err);
    }
    if (!s->draining) {
        sd_notify_send("READY=1");
        notify_status(s);
    }
    if (s->reload_pending && !s->draining) {
        s->reload_pending = 0;
        char msg[64];
        snprintf(msg, sizeof msg, "RELOADING=1\nMONOTONIC_USEC=%llu",
                 (unsigned long long)sd_monotonic_usec());
        sd_notify_send(msg);
        start_reload(s);
    }
    check_drain(s);
}

/* ------------------------------------------------------- signals and drain */

static void exit_cb(evutil_socket_t fd, short what, void *arg) {
    server *s = arg;
    event_base_loopbreak(s->base);
}

static void check_drain(server *s) {
    if (!s->draining || s->outstanding > 0 || s->reloading || evtimer_pending(s->exit_ev, NULL)) return;
    /* Give the last replies a moment to leave the socket buffers before the loop stops. */
    struct timeval linger = {0, 200000};
    evtimer_add(s->exit_ev, &linger);
}

static void drain_timeout_cb(evutil_socket_t fd, short what, void *arg) {
    server *s = arg;
    log_warn(&s->log, "drain timeout: exiting with %d job(s) unfinished", s->outstanding);
    event_base_loopbreak(s->base);
}

static void begin_drain(server *s, int signo) {
    if (s->draining) return;
    s->draining = 1;
    log_info(&s->log, "%s: stopping: new requests get 503, finishing %d job(s)", strsignal(signo),
             s->outstanding);
    sd_notify_send("STOPPING=1\nSTATUS=draining");
    /* The listeners stay open until exit: a balancer's health check and a request that is
     * already in the accept backlog get a clean 503 + Connection: close (and go to another
     * replica) instead of a reset, and /readyz keeps answering 503. */
    struct timeval tv = {s->cfg.drain_timeout_ms / 1000, (s->cfg.drain_timeout_ms % 1000) * 1000};
    evtimer_add(s->drain_ev, &tv);
    check_drain(s);
}

static void signal_cb(evutil_socket_t signo, short what, void *arg) {
    server *s = arg;
    if (signo == SIGHUP) {
        if (s->draining) return;
        log_info(&s->log, "SIGHUP: reloading configuration and models");
        char msg[64];
        snprintf(msg, sizeof msg, "RELOADING=1\nMONOTONIC_USEC=%llu",
                 (unsigned long long)sd_monotonic_usec());
        sd_notify_send(msg);
        start_reload(s);
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
        snprintf(err, errlen, "port_file %s: %s", path, strerror(errno));
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
    for (int i = 0; i < n && s->nbound < 8; i++) {
        int fd = 3 + i;
        evutil_make_socket_nonblocking(fd);
        evutil_make_socket_closeonexec(fd);
        struct evhttp_bound_socket *b = evhttp_accept_socket_with_handle(s->http, fd);
        if (!b) {
            snprintf(err, errlen, "LISTEN_FDS: cannot accept on fd %d", fd);
            return -1;
        }
        s->bound[s->nbound++] = b;
    }
    return n;
}

int server_start(server *s, char *err, size_t errlen) {
    if (evthread_use_pthreads() != 0) {
        snprintf(err, errlen, "libevent: no pthreads support");
        return -1;
    }
    pthread_mutex_init(&s->mu, NULL);
    atomic_init(&s->busy, 0);
    atomic_init(&s->next_model_id, 0);
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    s->nworkers = s->cfg.workers > 0 ? s->cfg.workers : (cores > 0 ? (int)cores : 1);
    s->threads = s->cfg.threads_per_worker;
    s->queue_cap = s->cfg.queue_size > 0 ? s->cfg.queue_size : (2 * s->nworkers > 8 ? 2 * s->nworkers : 8);
    if (queue_init(&s->queue, s->queue_cap)) {
        snprintf(err, errlen, "out of memory (queue)");
        return -1;
    }
    if (!(s->base = event_base_new()) || !(s->http = evhttp_new(s->base))) {
        snprintf(err, errlen, "libevent: cannot create the event base");
        return -1;
    }
    evhttp_set_allowed_methods(s->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD | EVHTTP_REQ_PUT |
                                            EVHTTP_REQ_DELETE | EVHTTP_REQ_OPTIONS | EVHTTP_REQ_PATCH |
                                            EVHTTP_REQ_TRACE | EVHTTP_REQ_CONNECT);
    evhttp_set_max_body_size(s->http, s->cfg.max_body_bytes);
    evhttp_set_max_headers_size(s->http, s->cfg.max_header_bytes);
    evhttp_set_timeout(s->http, s->cfg.timeout_s);
    evhttp_set_gencb(s->http, route, s);
    if (connlimit_init(&s->conns, s->base, s->cfg.max_connections)) {
        snprintf(err, errlen, "libevent: out of memory");
        return -1;
    }
    conns_apply_config(s);
    evhttp_set_bevcb(s->http, connlimit_bevcb, &s->conns);

    int adopted = adopt_systemd_sockets(s, err, errlen);
    if (adopted < 0) return -1;
    if (adopted == 0) {
        char host[256];
        int port;
        if (config_split_listen(s->cfg.listen, host, sizeof host, &port)) {
            snprintf(err, errlen, "listen: '%s' is not ADDR:PORT", s->cfg.listen);
            return -1;
        }
        struct evhttp_bound_socket *b = evhttp_bind_socket_with_handle(s->http, host, (ev_uint16_t)port);
        if (!b) {
            snprintf(err, errlen, "cannot listen on %s: %s", s->cfg.listen, strerror(errno));
            return -1;
        }
        s->bound[s->nbound++] = b;
    }
    s->port = bound_port(s->bound[0]);
    set_instance(s);
    for (int i = 0; i < s->nbound; i++)
        connlimit_add_listener(&s->conns, evhttp_bound_socket_get_listener(s->bound[i]),
                               bound_port(s->bound[i]));
    if (s->cfg.port_file[0] && write_port_file(s->cfg.port_file, s->port, err, errlen)) return -1;

    s->done_ev = event_new(s->base, -1, 0, done_cb, s);
    s->reload_ev = event_new(s->base, -1, 0, reload_done_cb, s);
    s->drain_ev = evtimer_new(s->base, drain_timeout_cb, s);
    s->exit_ev = evtimer_new(s->base, exit_cb, s);
    static const int sigs[4] = {SIGTERM, SIGINT, SIGHUP, 0};
    for (int i = 0; sigs[i]; i++) {
        s->sig_ev[i] = evsignal_new(s->base, sigs[i], signal_cb, s);
        if (!s->sig_ev[i] || event_add(s->sig_ev[i], NULL)) {
            snprintf(err, errlen, "libevent: cannot install signal handlers");
            return -1;
        }
    }
    if (!s->done_ev || !s->reload_ev || !s->drain_ev || !s->exit_ev) {
        snprintf(err, errlen, "libevent: out of memory");
        return -1;
    }
    uint64_t wd = sd_watchdog_usec();
    if (wd) {
        s->watchdog_ev = event_new(s->base, -1, EV_PERSIST, watchdog_cb, s);
        struct timeval tv = {(time_t)(wd / 2 / 1000000), (suseconds_t)(wd / 2 % 1000000)};
        if (!s->watchdog_ev || event_add(s->watchdog_ev, &tv)) {
            snprintf(err, errlen, "libevent: cannot start the watchdog timer");
            return -1;
        }
    }
    if (workers_start(s, err, errlen)) return -1;
    log_info(&s->log, "listening on port %d (%s), %d workers x %d threads, queue %d", s->port,
             adopted ? "systemd socket" : s->cfg.listen, s->nworkers, s->cfg.threads_per_worker,
             s->queue_cap);
    s->initial_load = 1;
    sd_notify_send("STATUS=loading models");
    start_reload(s);
    return 0;
}

int server_run(server *s) {
    event_base_dispatch(s->base);
    return s->exit_code;
}

static void orphan_job(server *s, job *j) {
    if (j->watch_ev) event_del(j->watch_ev);
    if (j->deadline_ev) event_del(j->deadline_ev);
    if (!j->req) return;
    struct evhttp_connection *evcon = evhttp_request_get_connection(j->req);
    if (evcon) {
        if (connlimit_on_close(&s->conns, evcon, NULL, NULL) != 0)
            evhttp_connection_set_closecb(evcon, NULL, NULL);
    } else
        evhttp_request_free(j->req);
    j->req = NULL;
}

void server_free(server *s) {
    if (s->reloading) {
        pthread_join(s->reload_thread, NULL);
        s->reloading = 0;
        model_set_unref(s->reload_set);
        s->reload_set = NULL;
    }
    /* Jobs still queued after a drain timeout are never run: mark them so the workers
     * skip them, then wait for running ones. */
    if (s->queue.items) {
        pthread_mutex_lock(&s->queue.mu);
        for (int i = 0; i < s->queue.count; i++) {
            job *q = s->queue.items[(s->queue.head + i) % s->queue.cap];
            atomic_store(&q->cancelled, 1);
        }
        pthread_mutex_unlock(&s->queue.mu);
    }
    workers_join(s);
    pthread_mutex_lock(&s->mu);
    job *j = s->done_head;
    s->done_head = s->done_tail = NULL;
    pthread_mutex_unlock(&s->mu);
    /* Every unfinished job is on the done list now (the workers drained the queue). Cut
     * its ties to libevent before evhttp_free: that frees the connections and would call
     * a close callback on a job freed here. A request libevent detached from its dead
     * connection (EOF while we held it) is ours to free. */
    while (j) {
        job *next = j->next;
        orphan_job(s, j);
        job_free(j);
        s->outstanding--;
        j = next;
    }
    for (int i = 0; i < 4; i++)
        if (s->sig_ev[i]) event_free(s->sig_ev[i]);
    if (s->watchdog_ev) event_free(s->watchdog_ev);
    if (s->done_ev) event_free(s->done_ev);
    if (s->reload_ev) event_free(s->reload_ev);
    if (s->drain_ev) event_free(s->drain_ev);
    if (s->exit_ev) event_free(s->exit_ev);
    connlimit_free(&s->conns);
    if (s->http) evhttp_free(s->http);
    if (s->base) event_base_free(s->base);
    queue_destroy(&s->queue);
    model_set_unref(s->set);
    s->set = NULL;
    pthread_mutex_destroy(&s->mu);
}
