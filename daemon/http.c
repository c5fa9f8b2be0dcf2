/* Replies and request facts on the loop thread: status lines, security headers, HEAD,
 * Connection: close, X-Request-Id, the access log and the per-endpoint metrics. */
#include "http.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "clock.h"
#include "reply_json.h"

#define RETRY_AFTER_S "1"

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

void request_path(struct evhttp_request *req, char *out, size_t cap) {
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

/* A HEAD request gets the headers
 * of the GET, Content-Length included, and no body: libevent 2.1 would write the body
 * and leave the length out, and a keep-alive client would misread the next reply. */
void send_reply(server *s, struct evhttp_request *req, const req_info *ri, int status, const char *type,
                const char *body, size_t len) {
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    if (type) evhttp_add_header(h, "Content-Type", type);
    security_headers(h, type);
    if (status == 503) evhttp_add_header(h, "Retry-After", RETRY_AFTER_S);
    if (s->drain.active || ri->close) {
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
    if (evcon) connlimit_idle(&s->loop.conns, evcon);
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

void send_sbuf(server *s, struct evhttp_request *req, const req_info *ri, int status, const char *type,
               sbuf *b) {
    if (b->oom)
        send_reply(s, req, ri, 503, "application/json", "{\"error\":{\"code\":\"out_of_memory\"}}", 34);
    else
        send_reply(s, req, ri, status, type, b->data, b->len);
    sb_free(b);
}

void send_error(server *s, struct evhttp_request *req, const req_info *ri, job_kind kind, int status,
                const char *code, const char *message) {
    sbuf b;
    sb_init(&b);
    json_error_body(&b, kind, status, code, message);
    send_sbuf(s, req, ri, status, "application/json", &b);
}

void send_reject(server *s, struct evhttp_request *req, const req_info *ri, job_kind kind, const reject *r) {
    send_error(s, req, ri, kind, r->status, r->code, r->message);
}

void send_client_gone(server *s, struct evhttp_request *req, endpoint_id ep, const char *path, double t0,
                      const char *model) {
    char rid[129];
    request_id(req, rid, sizeof rid);
    evhttp_send_reply(req, 499, "Client Closed Request", NULL);
    s->met.client_gone++;
    metrics_request(&s->met, ep, 499);
    access_log(s, "POST", path, 499, 0, now_ms() - t0, model, 0, rid);
}

/* ------------------------------------------------------------------ requests */

int content_type_is(const char *ct, const char *type) {
    size_t n = strlen(type);
    return strncasecmp(ct, type, n) == 0 && (ct[n] == '\0' || ct[n] == ';' || ct[n] == ' ');
}

int is_get(struct evhttp_request *req) {
    enum evhttp_cmd_type c = evhttp_request_get_command(req);
    return c == EVHTTP_REQ_GET || c == EVHTTP_REQ_HEAD;
}

void method_not_allowed(server *s, struct evhttp_request *req, const req_info *ri, job_kind kind,
                        int want_post) {
    evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", want_post ? "POST" : "GET, HEAD");
    send_error(s, req, ri, kind, 405, "method_not_allowed", want_post ? "use POST" : "use GET");
}

/* Constant-time comparison: the key must not leak through response timing. */
static int key_equal(const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b);
    unsigned char diff = (unsigned char)(la != lb);
    for (size_t i = 0; i < la; i++) diff |= (unsigned char)(a[i] ^ b[i % (lb ? lb : 1)]);
    return diff == 0;
}

/* api_key configured: Authorization: Bearer KEY, or the api_key parameter. */
int authorized(server *s, struct evhttp_request *req, const char *param_key) {
    if (!s->cfg.api_key[0]) return 1;
    const char *auth = evhttp_find_header(evhttp_request_get_input_headers(req), "Authorization");
    if (auth && strncasecmp(auth, "Bearer ", 7) == 0 && key_equal(auth + 7, s->cfg.api_key)) return 1;
    return param_key && param_key[0] && key_equal(param_key, s->cfg.api_key);
}

/* The api_key query parameter of a GET (docs/api.md: every route that needs the key
 * takes it as Authorization: Bearer or ?api_key=). */
int authorized_get(server *s, struct evhttp_request *req) {
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
const char *framing_error(struct evhttp_request *req) {
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
