/* The route table and the small handlers (everything but detection, which is
 * intake.c's). Loop thread only. */
#include <event2/http.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "http.h"
#include "reply_json.h"
#include "samples.h"
#include "web.h"

enum { M_GET = 1, M_POST = 2 }; /* M_GET allows HEAD too */
enum { EXACT, PREFIX, PREFIX_NONEMPTY };

/* rest: what follows a PREFIX route's path ("" for EXACT ones). */
typedef void (*route_fn)(server *s, struct evhttp_request *req, req_info *ri, const char *rest);

typedef struct {
    const char *path;
    int match;
    endpoint_id ep;
    job_kind kind; /* the shape of its error bodies */
    int methods;
    route_fn fn;
} route_entry;

static void route_detect(server *s, struct evhttp_request *req, req_info *ri, const char *rest) {
    handle_detection(s, req, ri, JOB_DETECT, NULL);
}

static void route_vision_detection(server *s, struct evhttp_request *req, req_info *ri, const char *rest) {
    handle_detection(s, req, ri, JOB_COMPAT, NULL);
}

static void route_vision_custom(server *s, struct evhttp_request *req, req_info *ri, const char *rest) {
    char *name = evhttp_uridecode(rest, 0, NULL);
    if (!name || strchr(name, '/'))
        send_error(s, req, ri, JOB_COMPAT, 404, "model_not_found", "bad model name");
    else
        handle_detection(s, req, ri, JOB_COMPAT, name);
    free(name);
}

/* The model lists, after the API key: GET /v1/models, or (kind JOB_COMPAT) DeepStack's
 * /v1/vision/custom/list, where Blue Iris asks for the custom models it can use. */
static void send_model_list(server *s, struct evhttp_request *req, req_info *ri, job_kind kind) {
    if (!authorized_get(s, req)) {
        send_error(s, req, ri, kind, 401, "unauthorized", "missing or wrong API key");
        return;
    }
    model_set *set = server_models(s);
    sbuf b;
    sb_init(&b);
    if (kind == JOB_COMPAT)
        write_custom_list_json(&b, set);
    else
        write_models_json(&b, s->loop.instance, set);
    model_set_unref(set);
    send_sbuf(s, req, ri, 200, "application/json", &b);
}

static void route_custom_list(server *s, struct evhttp_request *req, req_info *ri, const char *rest) {
    send_model_list(s, req, ri, JOB_COMPAT);
}

static void route_models(server *s, struct evhttp_request *req, req_info *ri, const char *rest) {
    send_model_list(s, req, ri, JOB_DETECT);
}

static void route_update(server *s, struct evhttp_request *req, req_info *ri, const char *rest) {
    static const char body[] = "{\"success\":true,\"message\":\"effdetd " EFFDET_VERSION " is current\","
                               "\"version\":\"" EFFDET_VERSION "\",\"current\":\"" EFFDET_VERSION "\","
                               "\"latest\":\"" EFFDET_VERSION "\",\"updateAvailable\":false}";
    send_reply(s, req, ri, 200, "application/json", body, sizeof body - 1);
}

static void route_healthz(server *s, struct evhttp_request *req, req_info *ri, const char *rest) {
    static const char body[] = "{\"status\":\"ok\"}";
    send_reply(s, req, ri, 200, "application/json", body, sizeof body - 1);
}

static void route_readyz(server *s, struct evhttp_request *req, req_info *ri, const char *rest) {
    if (!s->models.ready || s->drain.active) {
        send_error(s, req, ri, JOB_DETECT, 503, s->drain.active ? "shutting_down" : "not_ready",
                   s->drain.active ? "the server is shutting down" : "models are still loading");
        return;
    }
    model_set *set = server_models(s);
    sbuf b;
    sb_init(&b);
    sb_printf(&b, "{\"status\":\"ready\",\"models\":%d}", set ? set->count : 0);
    model_set_unref(set);
    send_sbuf(s, req, ri, 200, "application/json", &b);
}

static void route_metrics(server *s, struct evhttp_request *req, req_info *ri, const char *rest) {
    const connlimit *cl = &s->loop.conns;
    metrics_gauges g = {queue_depth(&s->work.queue),
                        s->work.queue_cap,
                        s->work.nworkers,
                        atomic_load(&s->work.busy),
                        s->models.ready && !s->drain.active,
                        cl->dropped_header,
                        cl->dropped_body,
                        cl->dropped_cap,
                        cl->pauses,
                        cl->rejected_budget,
                        cl->budget_used};
    sbuf b;
    sb_init(&b);
    metrics_write(&s->met, &b);
    metrics_write_gauges(&g, &b);
    model_set *set = server_models(s);
    metrics_write_models(set, &b);
    model_set_unref(set);
    sbuf labelled;
    sb_init(&labelled);
    metrics_add_label(b.data, b.oom ? 0 : b.len, "instance", s->loop.instance, &labelled);
    labelled.oom |= b.oom;
    sb_free(&b);
    send_sbuf(s, req, ri, 200, "text/plain; version=0.0.4; charset=utf-8", &labelled);
}

static void route_index(server *s, struct evhttp_request *req, req_info *ri, const char *rest) {
    size_t len = 0;
    const unsigned char *page = web_index_html(&len);
    send_reply(s, req, ri, 200, "text/html; charset=utf-8", (const char *)page, len);
}

/* GET /samples (their names) and /samples/NAME (a JPEG): the demo model's sample images. */
static void route_samples(server *s, struct evhttp_request *req, req_info *ri, const char *name) {
    web_sample w;
    sbuf b;
    if (strlen(name) == 0) {
        sb_init(&b);
        web_samples_json(&b);
        send_sbuf(s, req, ri, 200, "application/json", &b);
    } else if (web_sample_find(name, &w) == 0) {
        send_reply(s, req, ri, 200, "image/jpeg", (const char *)w.data, w.len);
    } else {
        send_error(s, req, ri, JOB_DETECT, 404, "not_found",
                   "no such sample image (GET /samples lists them)");
    }
}

/* First match wins: /v1/vision/custom/list before the /v1/vision/custom/ prefix. */
static const route_entry routes[] = {
    {"/detect", EXACT, EP_DETECT, JOB_DETECT, M_POST, route_detect},
    {"/v1/vision/detection", EXACT, EP_VISION_DETECTION, JOB_COMPAT, M_POST, route_vision_detection},
    {"/v1/vision/custom/list", EXACT, EP_CUSTOM_LIST, JOB_COMPAT, M_POST | M_GET, route_custom_list},
    {"/v1/vision/custom/", PREFIX_NONEMPTY, EP_VISION_CUSTOM, JOB_COMPAT, M_POST, route_vision_custom},
    {"/v1/status/updateavailable", EXACT, EP_UPDATE_AVAILABLE, JOB_COMPAT, M_GET, route_update},
    {"/healthz", EXACT, EP_HEALTHZ, JOB_DETECT, M_GET, route_healthz},
    {"/readyz", EXACT, EP_READYZ, JOB_DETECT, M_GET, route_readyz},
    {"/metrics", EXACT, EP_METRICS, JOB_DETECT, M_GET, route_metrics},
    {"/v1/models", EXACT, EP_MODELS, JOB_DETECT, M_GET, route_models},
    {"/", EXACT, EP_INDEX, JOB_DETECT, M_GET, route_index},
    {"/index.html", EXACT, EP_INDEX, JOB_DETECT, M_GET, route_index},
    {"/samples", EXACT, EP_INDEX, JOB_DETECT, M_GET, route_samples},
    {"/samples/", PREFIX, EP_INDEX, JOB_DETECT, M_GET, route_samples},
};

static const route_entry *find_route(const char *path, const char **rest) {
    for (size_t i = 0; i < sizeof routes / sizeof *routes; i++) {
        const route_entry *r = &routes[i];
        size_t n = strlen(r->path);
        if (r->match == EXACT ? strcmp(path, r->path) == 0
                              : strncmp(path, r->path, n) == 0 && (r->match == PREFIX || path[n])) {
            *rest = r->match == EXACT ? "" : path + n;
            return r;
        }
    }
    return NULL;
}

static int method_allowed(struct evhttp_request *req, int methods) {
    return ((methods & M_POST) && evhttp_request_get_command(req) == EVHTTP_REQ_POST) ||
           ((methods & M_GET) && is_get(req));
}

void route(struct evhttp_request *req, void *arg) {
    server *s = arg;
    req_info ri = {EP_OTHER, now_ms(), NULL, 0, 0};
    char path[1024];
    request_path(req, path, sizeof path);
    enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
    struct evhttp_connection *evcon = evhttp_request_get_connection(req);
    if (evcon && connlimit_answered(&s->loop.conns, evcon))
        return; /* answered 503 (body budget) already; freed with its connection */
    if (evcon) connlimit_busy(&s->loop.conns, evcon);
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
    const char *rest = "";
    const route_entry *r = find_route(path, &rest);
    if (!r) {
        job_kind kind = strncmp(path, "/v1/", 4) == 0 ? JOB_COMPAT : JOB_DETECT;
        send_error(s, req, &ri, kind, 404, "not_found", "no such endpoint");
        return;
    }
    ri.ep = r->ep;
    if (!method_allowed(req, r->methods)) {
        method_not_allowed(s, req, &ri, r->kind, r->methods & M_POST);
        return;
    }
    r->fn(s, req, &ri, rest);
}
