/* Detection intake on the loop thread: request -> job. Every check that can refuse the
 * request runs here, before the job is queued, and fills one `reject`. */
#include <event2/buffer.h>
#include <event2/http.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"
#include "multipart.h"

typedef struct {
    param_list params;
    const uint8_t *image;
    size_t image_len;
} intake;

static int out_of_memory(reject *r) {
    return reject_with(r, 503, "out_of_memory", "out of memory");
}

/* The image and form fields of a multipart/form-data body: one `image` part, form fields
 * bounded like query parameters. */
static int read_multipart(server *s, const char *ct, const uint8_t *body, size_t len, intake *in, reject *r) {
    char boundary[MP_MAX_BOUNDARY + 1];
    if (multipart_boundary(ct, boundary, sizeof boundary, r->message, sizeof r->message))
        return reject_as(r, 400, "bad_multipart");
    int max_parts = s->cfg.max_parts, n = 0;
    mp_part *parts = calloc((size_t)max_parts, sizeof *parts);
    if (!parts) return out_of_memory(r);
    int status = 0;
    if (multipart_parse(body, len, boundary, parts, max_parts, &n, r->message, sizeof r->message)) {
        status = reject_as(r, 400, "bad_multipart");
        goto done;
    }
    for (int i = 0; i < n; i++) {
        if (strcmp(parts[i].name, "image") == 0) {
            if (in->image) {
                status = reject_with(r, 400, "bad_multipart", "multipart: more than one `image` field");
                goto done;
            }
            in->image = parts[i].data;
            in->image_len = parts[i].len;
        } else if (!parts[i].has_filename) {
            if (parts[i].len > 4096 || params_add(&in->params, parts[i].name, strlen(parts[i].name),
                                                  (const char *)parts[i].data, parts[i].len)) {
                status = reject_with(r, 400, "invalid_parameter",
                                     "multipart: form field '%.64s' too long, binary or too many fields",
                                     parts[i].name);
                goto done;
            }
        }
    }
    if (!in->image || in->image_len == 0)
        status =
            reject_with(r, 400, "no_image", "no image: multipart/form-data needs a non-empty `image` field");
done:
    free(parts);
    return status;
}

/* Pull the image and form fields out of the body: raw image/jpeg or octet-stream, or
 * multipart/form-data with one `image` part. Query parameters come first. */
static int read_body(server *s, struct evhttp_request *req, job *j, intake *in, reject *r) {
    params_init(&in->params);
    const char *q = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req));
    if (q && params_parse_urlencoded(&in->params, q, strlen(q), r->message, sizeof r->message))
        return reject_as(r, 400, "invalid_parameter");
    if (!(j->body = evbuffer_new())) return out_of_memory(r);
    /* Move (not copy) the body out of the request: the request may be freed by libevent
     * when the client goes away, while a worker still reads the image. */
    evbuffer_add_buffer(j->body, evhttp_request_get_input_buffer(req));
    size_t len = evbuffer_get_length(j->body);
    if (len == 0) return reject_with(r, 400, "no_image", "no image: the request body is empty");
    const uint8_t *body = evbuffer_pullup(j->body, -1);
    if (!body) return out_of_memory(r);
    const char *ct = evhttp_find_header(evhttp_request_get_input_headers(req), "Content-Type");
    if (!ct || content_type_is(ct, "image/jpeg") || content_type_is(ct, "image/jpg") ||
        content_type_is(ct, "image/pjpeg") || content_type_is(ct, "application/octet-stream")) {
        in->image = body;
        in->image_len = len;
        return 0;
    }
    if (!content_type_is(ct, "multipart/form-data"))
        return reject_with(
            r, 415, "unsupported_media_type",
            "Content-Type %.80s is not supported: send image/jpeg, application/octet-stream or "
            "multipart/form-data with an `image` field",
            ct);
    return read_multipart(s, ct, body, len, in, r);
}

static const char *label_cb(const void *arg, int cls) {
    return effdet_model_label(arg, cls);
}

/* The request's parameters into j; *model_name is the model asked for. */
static int read_params(server *s, struct evhttp_request *req, job *j, const intake *in,
                       const char **model_name, reject *r) {
    if (j->kind == JOB_COMPAT) {
        char api_key[256];
        if (compat_params_parse(&in->params, s->cfg.compat_min_confidence, &j->min_confidence, api_key,
                                sizeof api_key, r->message, sizeof r->message))
            return reject_as(r, 400, "invalid_parameter");
        return 0;
    }
    detect_params d = {0};
    d.threshold = s->cfg.threshold;
    d.max_detections = s->cfg.max_detections;
    if (detect_params_parse(&in->params, &d, &j->dp, r->message, sizeof r->message))
        return reject_as(r, 400, "invalid_parameter");
    *model_name = j->dp.model;
    /* Content negotiation: a client that asks for a JPEG gets the annotated image. */
    const char *accept = evhttp_find_header(evhttp_request_get_input_headers(req), "Accept");
    if (!params_get(&in->params, "render", NULL) && accept && content_type_is(accept, "image/jpeg"))
        j->dp.render = RENDER_JPEG;
    return 0;
}

/* The model, the image's size from its header, the class mask. */
static int check_image(server *s, job *j, const char *model_name, const intake *in, reject *r) {
    if (!(j->set = server_models(s))) return reject_with(r, 503, "not_ready", "models are still loading");
    if (!(j->model = model_set_find(j->set, model_name)))
        return reject_with(r, 404, "model_not_found",
                           "model '%.128s' is not loaded (GET /v1/models lists them)", model_name);
    int w = 0, h = 0;
    effdet_error e = {{0}};
    effdet_status st = effdet_image_probe_jpeg(in->image, in->image_len, &w, &h, &e);
    if (st != EFFDET_OK)
        return reject_with(r, 400, "invalid_image", "invalid image: %s",
                           e.msg[0] ? e.msg : effdet_status_name(st));
    if ((long long)w * h > s->cfg.max_pixels)
        return reject_with(r, 413, "image_too_large",
                           "image is %dx%d = %lld pixels; the limit is %lld (max_pixels)", w, h,
                           (long long)w * h, s->cfg.max_pixels);
    if (j->kind == JOB_DETECT && j->dp.classes[0]) {
        int nc = j->model->info->num_classes;
        if (!(j->class_mask = malloc((size_t)nc))) return out_of_memory(r);
        if (classes_to_mask(j->dp.classes, nc, label_cb, j->model->model, j->class_mask, r->message,
                            sizeof r->message))
            return reject_as(r, 400, "invalid_parameter");
    }
    return 0;
}

void handle_detection(server *s, struct evhttp_request *req, req_info *ri, job_kind kind,
                      const char *model_name) {
    reject r = {0};
    if (s->drain.active) {
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
    int status = read_body(s, req, j, &in, &r);
    /* The API key first: a client without it learns nothing about its request. The key
     * may be a query parameter or a form field, so the body is parsed before. */
    if (!authorized(s, req, params_get(&in.params, "api_key", NULL)))
        status = reject_with(&r, 401, "unauthorized", "missing or wrong API key");
    if (status || read_params(s, req, j, &in, &model_name, &r)) goto fail;
    int checked = check_image(s, j, model_name, &in, &r);
    if (j->model) ri->model = j->model->name;
    if (checked) goto fail;
    j->image = in.image;
    j->image_len = in.image_len;
    j->compat_max = s->cfg.compat_max_predictions;
    j->render_quality = s->cfg.render_quality;
    j->max_pixels = s->cfg.max_pixels;
    j->allow_dct = s->cfg.allow_dct_scaling;
    j->deadline_ms = j->t_arrive_ms + s->cfg.deadline_ms;
    j->req = req;
    if (job_enqueue(s, j, &r) == 0) return;
fail:
    job_free(j);
    send_reject(s, req, ri, kind, &r);
}
