/* HTTP on the loop thread: request facts (path, method, id, auth) and replies, each
 * accounted in the metrics and the access log. routes.c maps paths to handlers. */
#ifndef EFFDETD_HTTP_H
#define EFFDETD_HTTP_H

#include <stddef.h>

#include "sbuf.h"
#include "server.h"

struct evhttp_request;

/* Per-request bookkeeping for the access log and metrics. */
typedef struct {
    endpoint_id ep;
    double t0;
    const char *model;
    int detections;
    int close; /* close the connection after this reply */
} req_info;

/* Send a reply and account for it. `body` may be NULL. */
void send_reply(server *s, struct evhttp_request *req, const req_info *ri, int status, const char *type,
                const char *body, size_t len);
/* Send b (503 out_of_memory when it ran out) and free it. */
void send_sbuf(server *s, struct evhttp_request *req, const req_info *ri, int status, const char *type,
               sbuf *b);
/* Send r as a JSON error of kind's shape. */
void send_reject(server *s, struct evhttp_request *req, const req_info *ri, job_kind kind, const reject *r);
void send_error(server *s, struct evhttp_request *req, const req_info *ri, job_kind kind, int status,
                const char *code, const char *message);
/* The 499 nobody reads, for a job whose client left: frees the request with its
 * connection (evhttp writes into the dead socket, fails and frees both). */
void send_client_gone(server *s, struct evhttp_request *req, endpoint_id ep, const char *path, double t0,
                      const char *model);

/* 405 with the Allow header: POST, or GET and HEAD. */
void method_not_allowed(server *s, struct evhttp_request *req, const req_info *ri, job_kind kind,
                        int want_post);
int is_get(struct evhttp_request *req);
/* api_key configured: Authorization: Bearer KEY, or param_key (a query or form field). */
int authorized(server *s, struct evhttp_request *req, const char *param_key);
/* The same for a GET: the key may be the api_key query parameter. */
int authorized_get(server *s, struct evhttp_request *req);
/* The request's path without the query, truncated to cap. */
void request_path(struct evhttp_request *req, char *out, size_t cap);
/* Content-Type (or Accept) names `type`, parameters aside. */
int content_type_is(const char *ct, const char *type);
/* Message framing libevent accepts but must not (request smuggling): NULL or why. */
const char *framing_error(struct evhttp_request *req);

/* routes.c: evhttp's callback for every request. */
void route(struct evhttp_request *req, void *arg);
/* intake.c: POST /detect, /v1/vision/detection, /v1/vision/custom/<model>. */
void handle_detection(server *s, struct evhttp_request *req, req_info *ri, job_kind kind,
                      const char *model_name);

#endif
