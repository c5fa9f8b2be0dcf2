/* Worker threads: take a job from the queue, decode + detect on this worker's engine
 * context for the job's model, build the reply body, hand the job back to the loop.
 * A worker never touches the evhttp request: the loop owns it. */
#include <event2/buffer.h>
#include <event2/event.h>
#include <malloc.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sbuf.h"
#include "server.h"

double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

void json_error_body(sbuf *b, job_kind kind, int status, const char *code, const char *message) {
    if (kind == JOB_COMPAT) {
        /* DeepStack / CodeProject.AI clients read `success` and `error`. */
        sb_puts(b, "{\"success\":false,\"error\":");
        sb_json_str(b, message);
        sb_printf(b, ",\"code\":%d}", status);
    } else {
        sb_puts(b, "{\"error\":{\"code\":");
        sb_json_str(b, code);
        sb_puts(b, ",\"message\":");
        sb_json_str(b, message);
        sb_puts(b, "}}");
    }
}

static void job_fail(job *j, int status, const char *code, const char *message) {
    sbuf b;
    sb_init(&b);
    json_error_body(&b, j->kind, status, code, message);
    j->status = b.oom ? 500 : status;
    j->content_type = "application/json";
    j->resp = b.data;
    j->resp_len = b.len;
}

static void job_fail_engine(job *j, effdet_status st, const effdet_error *e) {
    char msg[600];
    snprintf(msg, sizeof msg, "%s", e->msg[0] ? e->msg : effdet_status_name(st));
    if (st == EFFDET_ERR_IMAGE)
        job_fail(j, 400, "invalid_image", msg);
    else if (st == EFFDET_ERR_TOO_LARGE)
        job_fail(j, 413, "image_too_large", msg);
    else if (st == EFFDET_ERR_NOMEM)
        job_fail(j, 503, "out_of_memory", msg);
    else
        job_fail(j, 500, "internal", msg);
}

static int ctx_reserve(worker *w, int extra) {
    if (w->nctx + extra <= w->ctx_cap) return 0;
    int cap = w->ctx_cap ? w->ctx_cap : 4;
    while (cap < w->nctx + extra) cap *= 2;
    ctx_entry *n = realloc(w->ctx, (size_t)cap * sizeof *w->ctx);
    if (!n) return -1;
    w->ctx = n;
    w->ctx_cap = cap;
    return 0;
}

/* Take the contexts the loader warmed up for this worker. */
static void adopt_inbox(worker *w) {
    server *s = w->srv;
    pthread_mutex_lock(&s->mu);
    ctx_entry *in = w->inbox;
    int n = w->ninbox;
    w->inbox = NULL;
    w->ninbox = 0;
    pthread_mutex_unlock(&s->mu);
    if (n && ctx_reserve(w, n) == 0) {
        memcpy(w->ctx + w->nctx, in, (size_t)n * sizeof *in);
        w->nctx += n;
    } else {
        for (int i = 0; i < n; i++) {
            effdet_context_free(in[i].ctx);
            model_entry_unref(in[i].model);
        }
    }
    free(in);
}

/* This worker's context for model m: normally warmed up by the loader (workers_prepare),
 * else created here on first use. Contexts are sized for their model at creation, so
 * one per (worker, model). */
static effdet_context *context_for(worker *w, model_entry *m, effdet_error *e, effdet_status *st) {
    adopt_inbox(w);
    for (int i = 0; i < w->nctx; i++)
        if (w->ctx[i].model == m) return w->ctx[i].ctx;
    if (ctx_reserve(w, 1)) {
        *st = EFFDET_ERR_NOMEM;
        snprintf(e->msg, sizeof e->msg, "out of memory");
        return NULL;
    }
    effdet_context *ctx = NULL;
    *st = effdet_context_create(m->model, w->srv->threads, &ctx, e);
    if (*st != EFFDET_OK) return NULL;
    w->ctx[w->nctx].model = model_entry_ref(m);
    w->ctx[w->nctx].ctx = ctx;
    w->nctx++;
    return ctx;
}

/* Free contexts of models a reload dropped. (Not "models outside the current set": the
 * loader warms up contexts of the next set before the loop swaps it in.) */
static void prune_contexts(worker *w) {
    int freed = 0;
    for (int i = 0; i < w->nctx;) {
        if (!atomic_load(&w->ctx[i].model->retired)) {
            i++;
            continue;
        }
        effdet_context_free(w->ctx[i].ctx);
        model_entry_unref(w->ctx[i].model);
        w->ctx[i] = w->ctx[--w->nctx];
        freed = 1;
    }
#ifdef __GLIBC__
    /* glibc raises its mmap threshold after the first large free, so later arenas come
     * from the heap and stay in the process when freed: hand them back. */
    if (freed) malloc_trim(0);
#else
    (void)freed;
#endif
}

static const char *label_of(const model_entry *m, int class_id, char *buf, size_t cap) {
    const char *l = effdet_model_label(m->model, class_id - 1);
    if (l) return l;
    snprintf(buf, cap, "class_%d", class_id);
    return buf;
}

static double clampd(double v, double lo, double hi) {
    return v < lo ? lo : v > hi ? hi : v;
}

static void write_detect_json(job *j, const effdet_result *r, const effdet_detection *d, int n, sbuf *b) {
    char lb[32];
    sb_puts(b, "{\"model\":");
    sb_json_str(b, j->model->name);
    sb_printf(b, ",\"image\":{\"width\":%d,\"height\":%d},\"count\":%d,\"detections\":[", r->image_w,
              r->image_h, n);
    for (int i = 0; i < n; i++) {
        sb_puts(b, i ? ",{\"label\":" : "{\"label\":");
        sb_json_str(b, label_of(j->model, d[i].class_id, lb, sizeof lb));
        sb_printf(b, ",\"class_id\":%d,\"score\":", d[i].class_id);
        sb_json_num(b, d[i].score, 6);
        sb_printf(b, ",\"box\":{\"x1\":%.2f,\"y1\":%.2f,\"x2\":%.2f,\"y2\":%.2f}}", d[i].x1, d[i].y1, d[i].x2,
                  d[i].y2);
    }
    sb_printf(b,
              "],\"timings_ms\":{\"queue\":%.3f,\"decode\":%.3f,\"inference\":%.3f,\"postprocess\":%.3f,"
              "\"total\":%.3f}}",
              j->t_start_ms - j->t_arrive_ms, j->decode_ms, j->infer_ms, j->post_ms,
              j->t_end_ms - j->t_arrive_ms);
}

/* DeepStack / CodeProject.AI shape: integer pixel boxes, confidence 0..1, sorted by
 * confidence, at most compat_max predictions. */
static void write_compat_json(job *j, const effdet_result *r, const effdet_detection *d, int n, sbuf *b) {
    char lb[32];
    sb_puts(b, "{\"success\":true,\"message\":");
    if (n == 0)
        sb_json_str(b, "No objects found");
    else {
        sbuf m;
        sb_init(&m);
        sb_puts(&m, "Found ");
        for (int i = 0; i < n && i < 5; i++) {
            if (i) sb_puts(&m, ", ");
            sb_puts(&m, label_of(j->model, d[i].class_id, lb, sizeof lb));
        }
        if (n > 5) sb_puts(&m, "...");
        sb_json_str(b, m.oom ? "Found objects" : m.data);
        sb_free(&m);
    }
    sb_printf(b, ",\"count\":%d,\"predictions\":[", n);
    for (int i = 0; i < n; i++) {
        sb_puts(b, i ? ",{\"label\":" : "{\"label\":");
        sb_json_str(b, label_of(j->model, d[i].class_id, lb, sizeof lb));
        sb_puts(b, ",\"confidence\":");
        sb_json_num(b, d[i].score, 6);
        sb_printf(b, ",\"x_min\":%ld,\"y_min\":%ld,\"x_max\":%ld,\"y_max\":%ld}",
                  lround(clampd(d[i].x1, 0, r->image_w)), lround(clampd(d[i].y1, 0, r->image_h)),
                  lround(clampd(d[i].x2, 0, r->image_w)), lround(clampd(d[i].y2, 0, r->image_h)));
    }
    double infer = j->decode_ms + j->infer_ms + j->post_ms, process = j->t_end_ms - j->t_arrive_ms;
    sb_printf(b,
              "],\"duration\":%ld,\"inferenceMs\":%ld,\"processMs\":%ld,\"analysisRoundTripMs\":%ld,"
              "\"moduleId\":\"effdetd\",\"moduleName\":\"effdetd\",\"command\":\"detect\",\"code\":200}",
              lround(infer), lround(j->infer_ms), lround(process), lround(process));
}

/* X-Detections header of a rendered reply: compact JSON, capped so the header stays
 * well under common client header limits. */
static char *detections_header(job *j, const effdet_detection *d, int n) {
    enum { MAX_IN_HEADER = 50 };
    char lb[32];
    sbuf b;
    sb_init(&b);
    sb_printf(&b, "{\"model\":");
    sb_json_str(&b, j->model->name);
    sb_printf(&b, ",\"count\":%d,\"detections\":[", n);
    for (int i = 0; i < n && i < MAX_IN_HEADER; i++) {
        sb_puts(&b, i ? ",{\"label\":" : "{\"label\":");
        sb_json_str(&b, label_of(j->model, d[i].class_id, lb, sizeof lb));
        sb_printf(&b, ",\"score\":%.4f,\"box\":[%.1f,%.1f,%.1f,%.1f]}", d[i].score, d[i].x1, d[i].y1, d[i].x2,
                  d[i].y2);
    }
    sb_printf(&b, "],\"truncated\":%s}", n > MAX_IN_HEADER ? "true" : "false");
    if (b.oom) sb_free(&b);
    return b.data;
}

static void run_job(worker *w, job *j) {
    effdet_error e = {{0}};
    effdet_status st = EFFDET_ERR_INTERNAL;
    effdet_image img = {0};
    j->t_start_ms = now_ms();
    if (atomic_load(&j->cancelled)) return; /* the loop discards it */
    if (j->t_start_ms > j->deadline_ms) {
        job_fail(j, 504, "deadline_exceeded", "the request waited in the queue past its deadline");
        return;
    }
    effdet_context *ctx = context_for(w, j->model, &e, &st);
    if (!ctx) {
        job_fail_engine(j, st, &e);
        return;
    }
    const effdet_info *info = j->model->info;
    /* An annotated image is drawn at the file's size, so render jobs decode unscaled. */
    int render = j->kind == JOB_DETECT && j->dp.render == RENDER_JPEG;
    effdet_decode_opts dopt = {j->max_pixels, j->allow_dct && !render, info->input_w, info->input_h};
    double t0 = now_ms();
    st = effdet_image_decode_jpeg(j->image, j->image_len, &dopt, &img, &e);
    j->decode_ms = now_ms() - t0;
    if (st != EFFDET_OK) {
        job_fail_engine(j, st, &e);
        return;
    }
    effdet_detect_opts o;
    effdet_detect_opts_default(&o);
    if (j->kind == JOB_COMPAT) {
        o.score_threshold = (float)j->min_confidence;
        o.max_detections = j->compat_max;
    } else {
        o.score_threshold = (float)j->dp.threshold;
        o.max_detections = j->dp.max_detections;
        o.nms = j->dp.nms ? EFFDET_NMS_SOFT : EFFDET_NMS_HARD;
        o.class_mask = j->class_mask;
    }
    effdet_result r;
    st = effdet_detect_image(ctx, &img, &o, &r, &e);
    if (st != EFFDET_OK) {
        job_fail_engine(j, st, &e);
        goto done;
    }
    j->infer_ms = r.preprocess_ms + r.forward_ms;
    j->post_ms = r.postprocess_ms;
    /* r.dets are sorted by score, highest first, and stay valid until ctx's next call. */
    const effdet_detection *dets = r.dets;
    int n = r.count;
    j->detections = n;
    j->t_end_ms = now_ms();
    if (render) {
        effdet_image_draw_detections(&img, j->model->model, dets, n);
        uint8_t *jpg = NULL;
        size_t len = 0;
        st = effdet_image_encode_jpeg(&img, j->render_quality, &jpg, &len, &e);
        if (st != EFFDET_OK) {
            job_fail_engine(j, st, &e);
            goto done;
        }
        j->x_detections = detections_header(j, dets, n);
        j->resp = (char *)jpg;
        j->resp_len = len;
        j->content_type = "image/jpeg";
        j->status = 200;
        goto done;
    }
    sbuf b;
    sb_init(&b);
    if (j->kind == JOB_COMPAT)
        write_compat_json(j, &r, dets, n, &b);
    else
        write_detect_json(j, &r, dets, n, &b);
    if (b.oom) {
        sb_free(&b);
        job_fail(j, 503, "out_of_memory", "out of memory");
        goto done;
    }
    j->resp = b.data;
    j->resp_len = b.len;
    j->content_type = "application/json";
    j->status = 200;
done:
    effdet_image_free(&img);
}

static void *worker_main(void *arg) {
    worker *w = arg;
    server *s = w->srv;
    void *item;
    unsigned kicks = 0;
    int r;
    while ((r = queue_pop_or_kick(&s->queue, &item, &kicks)) >= 0) {
        if (r == 0) { /* a reload retired models: free their contexts now, not at the next job */
            adopt_inbox(w);
            prune_contexts(w);
            continue;
        }
        job *j = item;
        atomic_fetch_add(&s->busy, 1);
        run_job(w, j);
        if (!j->t_end_ms) j->t_end_ms = now_ms();
        atomic_fetch_sub(&s->busy, 1);
        job_done(s, j);
        prune_contexts(w);
    }
    for (int i = 0; i < w->nctx; i++) {
        effdet_context_free(w->ctx[i].ctx);
        model_entry_unref(w->ctx[i].model);
    }
    free(w->ctx);
    return NULL;
}

typedef struct {
    server *srv;
    worker *w;
    model_set *set, *old;
    int warmup;
} prepare_arg;

static int set_has(const model_set *s, const model_entry *m) {
    for (int i = 0; s && i < s->count; i++)
        if (s->models[i] == m) return 1;
    return 0;
}

/* One detection on a mid-grey image: the first inference of a fresh context pays for
 * faulting in its arena; without this the first request on each worker is several
 * times slower than the rest (and Frigate's 0.1 s client timeout fires). */
static void *prepare_main(void *arg) {
    prepare_arg *a = arg;
    ctx_entry *made = calloc((size_t)a->set->count, sizeof *made);
    int n = 0;
    for (int i = 0; made && i < a->set->count; i++) {
        model_entry *m = a->set->models[i];
        effdet_context *ctx = NULL;
        if (set_has(a->old, m) || effdet_context_create(m->model, a->srv->threads, &ctx, NULL) != EFFDET_OK)
            continue;
        if (a->warmup) {
            effdet_image img = {.rgb = NULL, .width = m->info->input_w, .height = m->info->input_h};
            size_t bytes = (size_t)img.width * (size_t)img.height * 3;
            if ((img.rgb = malloc(bytes)) != NULL) {
                memset(img.rgb, 128, bytes);
                effdet_detect_opts o;
                effdet_detect_opts_default(&o);
                effdet_result r;
                effdet_detect_image(ctx, &img, &o, &r, NULL);
                free(img.rgb);
            }
        }
        made[n].model = model_entry_ref(m);
        made[n].ctx = ctx;
        n++;
    }
    pthread_mutex_lock(&a->srv->mu);
    ctx_entry *in = n ? realloc(a->w->inbox, (size_t)(a->w->ninbox + n) * sizeof *in) : NULL;
    if (in) {
        memcpy(in + a->w->ninbox, made, (size_t)n * sizeof *made);
        a->w->inbox = in;
        a->w->ninbox += n;
        n = 0;
    }
    pthread_mutex_unlock(&a->srv->mu);
    for (int i = 0; i < n; i++) { /* could not hand them over: the worker creates its own */
        effdet_context_free(made[i].ctx);
        model_entry_unref(made[i].model);
    }
    free(made);
    return NULL;
}

void workers_prepare(server *s, model_set *set, model_set *old, int warmup) {
    prepare_arg *args = calloc((size_t)s->nworkers, sizeof *args);
    pthread_t *t = calloc((size_t)s->nworkers, sizeof *t);
    int *started = calloc((size_t)s->nworkers, sizeof *started);
    if (!args || !t || !started) goto done; /* workers create contexts on first use */
    for (int i = 0; i < s->nworkers; i++) {
        args[i] = (prepare_arg){s, &s->workers[i], set, old, warmup};
        started[i] = pthread_create(&t[i], NULL, prepare_main, &args[i]) == 0;
    }
    for (int i = 0; i < s->nworkers; i++)
        if (started[i]) pthread_join(t[i], NULL);
done:
    free(args);
    free(t);
    free(started);
}

int workers_start(server *s, char *err, size_t errlen) {
    s->workers = calloc((size_t)s->nworkers, sizeof *s->workers);
    if (!s->workers) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (int i = 0; i < s->nworkers; i++) {
        s->workers[i].srv = s;
        s->workers[i].index = i;
        if (pthread_create(&s->workers[i].thread, NULL, worker_main, &s->workers[i]) != 0) {
            snprintf(err, errlen, "cannot start worker thread %d", i);
            queue_close(&s->queue);
            for (int k = 0; k < i; k++) pthread_join(s->workers[k].thread, NULL);
            free(s->workers);
            s->workers = NULL;
            return -1;
        }
    }
    return 0;
}

void workers_join(server *s) {
    queue_close(&s->queue);
    for (int i = 0; s->workers && i < s->nworkers; i++) pthread_join(s->workers[i].thread, NULL);
    for (int i = 0; s->workers && i < s->nworkers; i++) {
        worker *w = &s->workers[i];
        for (int k = 0; k < w->ninbox; k++) {
            effdet_context_free(w->inbox[k].ctx);
            model_entry_unref(w->inbox[k].model);
        }
        free(w->inbox);
    }
    free(s->workers);
    s->workers = NULL;
}

void job_done(server *s, job *j) {
    pthread_mutex_lock(&s->mu);
    j->next = NULL;
    if (s->done_tail)
        s->done_tail->next = j;
    else
        s->done_head = j;
    s->done_tail = j;
    pthread_mutex_unlock(&s->mu);
    event_active(s->done_ev, EV_READ, 0);
}

void job_free(job *j) {
    if (!j) return;
    if (j->deadline_ev) event_free(j->deadline_ev);
    if (j->watch_ev) event_free(j->watch_ev);
    if (j->body) evbuffer_free(j->body);
    model_set_unref(j->set);
    free(j->class_mask);
    free(j->resp);
    free(j->x_detections);
    free(j);
}
